"""Verbs of pcompose for the stack file itself: `config` (load, check, print) and `version`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from reconciler.cli import common
from runtime import names as naming

if TYPE_CHECKING:
    from reconciler import spec


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    config = verbs.add_parser("config", help="Parse, resolve and render the compose file")
    config.add_argument("--format", choices=("yaml", "json"), default="yaml")
    config.add_argument("-q", "--quiet", action="store_true", help="Only validate")
    config.add_argument("--services", action="store_true", help="Print the service names")
    config.add_argument("--images", action="store_true", help="Print the image names")
    config.add_argument("--volumes", action="store_true", help="Print the volume names")
    config.add_argument("--networks", action="store_true", help="Print the network names")
    config.add_argument("--profiles", dest="list_profiles", action="store_true",
                        help="Print the profile names")
    config.add_argument("--hash", metavar="SERVICES",
                        help="Print the config hash of services ('*' or a,b)")
    config.add_argument("--no-interpolate", action="store_true",
                        help="Don't interpolate environment variables")
    config.add_argument("--no-consistency", action="store_true",
                        help="Don't check references between services and resources")
    config.add_argument("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout")
    config.add_argument("selected", nargs="*", metavar="SERVICE")
    config.set_defaults(handler=run_config)

    version = verbs.add_parser("version", help="Show the pcompose version")
    version.add_argument("--format", choices=("pretty", "json"), default="pretty")
    version.add_argument("--short", action="store_true")
    version.set_defaults(handler=run_version)


def load_project(args, *, interpolate: bool = True, consistency: bool = True) -> spec.Project:
    """Load the stack named by the global options; warnings go to stderr, errors are one line."""
    from reconciler import spec  # not for `version`

    try:
        project = spec.load(args.files or None, project_name=args.project_name,
                            profiles=tuple(args.profiles), env_files=tuple(args.env_files),
                            project_directory=args.project_directory,
                            interpolate=interpolate, consistency=consistency)
    except spec.SpecError as err:
        raise common.UserFacingError(str(err)) from None
    for warning in project.warnings:
        common.print_warning(str(warning))
    return project


def run_config(args) -> int:
    project = load_project(args, interpolate=not args.no_interpolate,
                           consistency=not args.no_consistency)
    selected = _selected(project, args.selected)
    if args.quiet:
        return 0
    if args.hash:
        wanted = selected if args.hash.strip() == "*" else [s.strip() for s in args.hash.split(",")]
        unknown = [s for s in wanted if s not in project.stack.services]
        if unknown:
            raise common.UserFacingError(f"no such service: {unknown[0]}")
        text = "".join(f"{name} {project.config_hash(name)}\n" for name in sorted(wanted))
    elif args.services:
        text = "".join(f"{name}\n" for name in selected)
    elif args.images:
        text = "".join(f"{_image(project, name)}\n" for name in selected)
    elif args.volumes:
        text = "".join(f"{name}\n" for name in project.stack.volumes)
    elif args.networks:
        text = "".join(f"{name}\n" for name in project.stack.networks)
    elif args.list_profiles:
        text = "".join(f"{name}\n" for name in project.all_profiles())
    else:
        from reconciler.spec import render

        doc = render.document(project, selected)
        text = render.to_json(doc) + "\n" if args.format == "json" else render.to_yaml(doc)
    _write(text, args.output)
    return 0


def _selected(project: spec.Project, names: list[str]) -> list[str]:
    """The services named on the command line (their profiles count as enabled), else all enabled."""
    for name in names:
        if name not in project.stack.services:
            raise common.UserFacingError(f"no such service: {name}")
    if not names:
        return list(project.services_enabled)
    return project.with_dependencies(names)


def _image(project: spec.Project, name: str) -> str:
    """The image a service runs; a built one without `image:` is named <project>-<service>."""
    return project.stack.services[name].image or naming.image(project.name, name)


def _write(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


def run_version(args) -> int:
    from importlib import metadata

    try:
        version = metadata.version("pcompose")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "0.0.0+unknown"
    if args.short:
        print(version)
    elif args.format == "json":
        print(json.dumps({"version": version}))
    else:
        print(f"pcompose version {version}")
    return 0
