"""`pcompose volume ls|create|rm|inspect|prune`: docker's volume verbs over this agent's volumes.

They act on the state root in this process, as the image verbs do: a volume is a directory
with its metadata, which the agent only reads back for the stacks that use it.
"""

from __future__ import annotations

import argparse
import sys

from reconciler.cli import common, compose_base, listing

LS_FILTERS = ("dangling", "driver", "label", "name")
PRUNE_FILTERS = ("label", "label!", "all")
WARNING_ANONYMOUS = ("WARNING! This will remove anonymous local volumes not used by at least "
                     "one container.")
WARNING_ALL = "WARNING! This will remove all local volumes not used by at least one container."


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    volume = verbs.add_parser("volume", help="Manage volumes").add_subparsers(
        dest="volume_verb", metavar="COMMAND")

    for name in ("ls", "list"):
        p = volume.add_parser(name, help="List volumes")
        p.add_argument("-f", "--filter", action="append", default=[], metavar="FILTER",
                       help="Filter output (dangling, driver, label, name)")
        p.add_argument("--format", default="table", help="table, json or a Go template")
        p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
        p.set_defaults(handler=ls)

    p = volume.add_parser("create", help="Create a volume")
    p.add_argument("name", nargs="?", metavar="VOLUME")
    p.add_argument("--name", dest="name_flag", metavar="VOLUME", help="Specify volume name")
    p.add_argument("-d", "--driver", default="local", help="Specify volume driver name (local)")
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Set driver specific options (type, o, device)")
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.set_defaults(handler=create)

    for name in ("rm", "remove"):
        p = volume.add_parser(name, help="Remove one or more volumes")
        p.add_argument("volumes", nargs="+", metavar="VOLUME")
        p.add_argument("-f", "--force", action="store_true",
                       help="Do not error if the volume does not exist")
        p.set_defaults(handler=rm)

    p = volume.add_parser("inspect", help="Display detailed information on one or more volumes")
    p.add_argument("volumes", nargs="+", metavar="VOLUME")
    p.add_argument("-f", "--format", help="json (default) or a Go template")
    p.set_defaults(handler=inspect)

    p = volume.add_parser("prune", help="Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="FILTER",
                   help='Provide filter values (e.g. "label=<label>")')
    p.set_defaults(handler=prune)


def _controller():
    from controllers import volumes
    return volumes


def _volume_error(error: Exception) -> common.UserFacingError:
    return common.UserFacingError(str(error).strip())


# -- ls
def ls(args: argparse.Namespace) -> int:
    filters = listing.parse_filters(args.filter, LS_FILTERS)
    volumes = _controller()
    ctx = compose_base.context(args)
    found = volumes.volumes.list_all(ctx.root)
    used = volumes.users(ctx) if "dangling" in filters else {}
    found = sorted((v for v in found if _matches(v, filters, used)),
                   key=lambda v: listing.natural_key(v.name))
    if args.quiet:
        sys.stdout.write("".join(f"{v.name}\n" for v in found))
        return 0
    listing.write_list(args.format, [_row(v) for v in found],
                       [("Driver", "DRIVER"), ("Name", "VOLUME NAME")])
    return 0


def _matches(vol, filters: dict[str, list[str]], used: dict) -> bool:
    for key, values in filters.items():
        if key == "label" and not listing.labels_match(dict(vol.labels), values):
            return False
        if key == "name" and not listing.pattern_match(vol.name, values):
            return False
        if key == "driver" and vol.driver not in values:
            return False
        if key == "dangling" and listing.as_bool(key, values) != (vol.name not in used):
            return False
    return True


def _row(vol) -> dict:
    """One line of `volume ls --format json`: the keys of docker's volume formatter."""
    return {"Availability": "N/A", "Driver": vol.driver, "Group": "N/A",
            "Labels": listing.labels_text(dict(vol.labels)), "Links": "N/A",
            "Mountpoint": str(vol.mountpoint), "Name": vol.name, "Scope": "local",
            "Size": "N/A", "Status": "N/A"}


# -- create
def create(args: argparse.Namespace) -> int:
    if args.name and args.name_flag and args.name != args.name_flag:
        raise common.UserFacingError("conflicting options: cannot specify a volume-name "
                                     "through both --name and as a positional arg")
    if args.driver != "local":
        raise common.UserFacingError(f"volume driver {args.driver!r} is not supported "
                                     "(only 'local')")
    volumes = _controller()
    try:
        vol = volumes.create(compose_base.context(args), args.name or args.name_flag,
                             driver=args.driver, options=listing.key_values(args.opt),
                             labels=listing.key_values(args.label))
    except volumes.volumes.VolumeError as err:
        raise _volume_error(err) from None
    print(vol.name)
    return 0


# -- rm
def rm(args: argparse.Namespace) -> int:
    volumes = _controller()
    ctx = compose_base.context(args)
    errors = []
    for name in args.volumes:
        try:
            volumes.remove_unused(ctx, name, force=args.force)
        except volumes.volumes.VolumeError as err:
            errors.append(str(err).strip())
            continue
        print(name, flush=True)
    for message in errors:  # docker names the ones it could not remove after the others
        common.print_error(message)
    return 1 if errors else 0


# -- inspect
def inspect(args: argparse.Namespace) -> int:
    volumes = _controller()
    root = compose_base.context(args).root
    found, missing = [], []
    for name in args.volumes:
        try:
            vol = volumes.volumes.get(root, name)
        except volumes.volumes.VolumeError as err:
            missing.append(str(err))
            continue
        if vol is None:
            missing.append(f"get {name}: no such volume")
        else:
            found.append(vol)
    listing.write_inspect(args.format, [_inspect(v) for v in found])
    for message in missing:
        common.print_error(message)
    return 1 if missing else 0


def _inspect(vol) -> dict:
    """docker's volume object (its keys are alphabetical)."""
    return {"CreatedAt": listing.rfc3339(int(vol.created_at * 1e9)), "Driver": vol.driver,
            "Labels": dict(vol.labels), "Mountpoint": str(vol.mountpoint), "Name": vol.name,
            "Options": dict(vol.driver_opts), "Scope": "local"}


# -- prune
def prune(args: argparse.Namespace) -> int:
    filters = listing.parse_filters(args.filter, PRUNE_FILTERS)
    if "all" in filters and args.all:
        raise common.UserFacingError("conflicting options: cannot specify both --all and "
                                     "--filter all=1")
    all_named = args.all or ("all" in filters and listing.as_bool("all", filters["all"]))
    if not args.force and not listing.confirm(WARNING_ALL if all_named else WARNING_ANONYMOUS):
        return 0
    volumes = _controller()

    def keep(vol) -> bool:
        labels = dict(vol.labels)
        return (not listing.labels_match(labels, filters.get("label", []))
                or not listing.labels_exclude(labels, filters.get("label!", [])))

    gone = volumes.prune(compose_base.context(args), all_named=all_named, keep=keep)
    if gone:
        sys.stdout.write("Deleted Volumes:\n" + "".join(f"{name}\n" for name, _ in gone) + "\n")
    print(f"Total reclaimed space: {listing.human_size(sum(size for _, size in gone))}")
    return 0
