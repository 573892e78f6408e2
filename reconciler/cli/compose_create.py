"""`create` and `scale`: submissions the agent stores and converges as it does an `up`'s, and
their progress lines. `create` makes the containers and starts none (a later `start` or `up`
does); `scale` sets the replicas of the services it names and touches no other.

Like `up`, neither loads the stack here: the agent does, with this shell's directory and
environment. `create` first has the agent build what has no image yet (as `up` does; every
`build:` service with `--build` or `--pull build`, none with `--no-build`); only `--pull
always|never` reads the stack here, to pull or look for the images before anything is submitted.
"""

from __future__ import annotations

import argparse
import asyncio
import types
from pathlib import Path

from reconciler.agent import plainclient, wire
from reconciler.cli import common, compose_up, render

# docker compose's --pull values; `policy` (each service's own pull_policy) is the default.
PULL_POLICIES = ("always", "missing", "if_not_present", "never", "build")


# -- create
def create(args: argparse.Namespace) -> int:
    if args.build and args.no_build:
        raise common.UserFacingError("--build and --no-build are incompatible")
    if args.force_recreate and args.no_recreate:
        raise common.UserFacingError("--force-recreate and --no-recreate are incompatible")
    if args.pull is not None and args.pull not in PULL_POLICIES:
        raise common.UserFacingError(f'invalid --pull option "{args.pull}"')
    if args.pull == "build" and args.no_build:
        raise common.UserFacingError("--pull build and --no-build are incompatible")
    compose_up.ensure_agent_now(args)
    if not args.no_build:
        from reconciler.cli import build

        build.run(args, services=list(args.services),
                  only_missing=not (args.build or args.pull == "build"))
    progress = render.Progress()
    if args.pull in ("always", "never"):
        _prepare_images(args, progress)
    submit(args, {"services": list(args.services), "scale": list(args.scale),
                  "force_recreate": args.force_recreate, "no_recreate": args.no_recreate,
                  "remove_orphans": args.remove_orphans, "no_start": True}, progress)
    return 0


def _prepare_images(args: argparse.Namespace, progress: render.Progress) -> None:
    """What --pull asks of the images of the services `create` makes: each pulled with `always`,
    with `never` each made sure to be here; those with `build:` were just built instead."""
    from reconciler.cli import stack
    from runtime import images

    project = stack.load_project(args)
    for name in args.services:
        if name not in project.stack.services:
            raise common.UserFacingError(f"no such service: {name}")
    names = project.with_dependencies(list(args.services)) if args.services \
        else list(project.services_enabled)
    services = {name: project.stack.services[name] for name in names
                if project.stack.services[name].build is None}
    refs = list(dict.fromkeys(s.image for s in services.values() if s.image))
    try:
        store = images.Store(args.root)
    except OSError as error:
        raise common.UserFacingError(f"state root {args.root}: {error.strerror}") from None
    if args.pull == "never":
        missing = [ref for ref in refs if images.resolve(store, ref) is None]
        if missing:
            raise common.UserFacingError(f"image {missing[0]} is not in the store and --pull "
                                         "is never")
    elif args.pull == "always":
        for ref in refs:
            progress.line(f"Image {ref}  Pulling")
            try:
                asyncio.run(images.pull(store, ref))
            except (images.StoreError, images.registry.RegistryError,
                    images.reference.ReferenceError) as error:
                progress.line(f"Image {ref}  Error")
                raise common.UserFacingError(f"image {ref}: {error}") from None
            progress.line(f"Image {ref}  Pulled")


# -- scale
def scale(args: argparse.Namespace) -> int:
    wanted = parse_scale(args.pairs)
    services = sorted(wanted)
    compose_up.ensure_agent_now(args)
    progress = render.Progress()
    name = submit(args, {"services": services, "scale": [f"{s}={n}" for s, n in wanted.items()],
                         "no_deps": args.no_deps, "keep_stopped": True}, progress)
    # docker compose then starts the services it scaled: their stopped containers too (what
    # other services have stopped stays so, which is why the submission started nothing).
    act(args, {"verb": "start", "services": services, "project": name}, progress)
    return 0


def parse_scale(pairs: list[str]) -> dict[str, int]:
    """`SERVICE=REPLICAS` words as docker compose reads them; the last of a service wins."""
    out = {}
    for pair in pairs:
        service, eq, value = pair.partition("=")
        if not eq or not service or not value:
            raise common.UserFacingError(f"invalid scale specifier: {pair}")
        if not value.isdigit():
            raise common.UserFacingError(
                f"invalid scale specifier: can't parse replica value as int: {pair}")
        out[service] = int(value)
    return out


# -- talking to the agent
def submit(args: argparse.Namespace, options: dict, progress: render.Progress) -> str:
    """Have the agent load the stack and converge it with `options` (submit.UpOptions),
    printing a line per resource as it goes; the project's name. A container made and not
    started (`create`) is `Created`, not `Started`."""
    body = {"load": compose_up.load_request(args), "options": options,
            "timeout": compose_up.UP_TIMEOUT}
    printed: set[str] = set()
    name, result = "", None
    pulls = render.PullRows(progress)
    with plainclient.PlainClient(Path(args.run_dir), timeout=None) as agent:
        try:
            for line in agent.stream("POST", "/v1/up", body):
                if line["type"] == "accepted":
                    name = line["project"]
                    for warning in line["warnings"]:
                        common.print_warning(warning)
                elif line["type"] == "pull":
                    pulls.line(line)
                elif line["type"] == "step":
                    _step(name, line, options.get("no_start", False), progress, printed)
                elif line["type"] == "result":
                    result = line
        except (wire.ApiError, wire.AgentUnavailable) as error:
            raise common.UserFacingError(str(error)) from None
    if result is None:
        raise common.UserFacingError("the agent stopped before the project converged")
    if not result["ok"]:
        raise common.UserFacingError(f"project {name}: {result['error']}")
    for view in result["containers"]:  # what no step touched, as docker compose shows it
        word = {"running": "Running", "created": "Created"}.get(view["state"])
        if word and f"Container {view['name']}" not in printed:
            progress.line(f"Container {view['name']}  {word}")
    progress.close()
    return name


def _step(name: str, line: dict, no_start: bool, progress: render.Progress,
          printed: set[str]) -> None:
    event = types.SimpleNamespace(**{k: line.get(k, "") for k in (
        "type", "status", "resource", "action", "message", "containers")})
    for text in render.step_lines(name, event, {}):
        if no_start and text.endswith("  Started") and "not started" in event.message:
            continue
        if text not in printed:
            progress.line(text)
            printed.update((text, text.rpartition("  ")[0]))


def act(args: argparse.Namespace, body: dict, progress: render.Progress) -> None:
    """A lifecycle verb through the agent (POST /v1/act), its progress lines as they come;
    UserFacingError with the agent's reason when it failed for a container."""
    result = None
    with plainclient.PlainClient(Path(args.run_dir), timeout=None) as agent:
        try:
            for line in agent.stream("POST", "/v1/act", body):
                if line["type"] == "progress":
                    progress.line(line["line"])
                elif line["type"] == "result":
                    result = line
        except (wire.ApiError, wire.AgentUnavailable) as error:
            raise common.UserFacingError(str(error)) from None
    progress.close()  # what follows (rm's question) goes below the final block
    if result is None:
        raise common.UserFacingError(f"the agent stopped before {body['verb']} ended")
    if not result["ok"]:
        raise common.UserFacingError(result["error"])
