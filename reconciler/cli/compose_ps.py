"""Verbs that look at a stack: ps, ls, port, top, stats, events."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path

from reconciler.cli import common, compose_base, render


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _format(text: str) -> str:
    if text not in ("table", "json"):
        raise common.UserFacingError(f"--format {text}: expected table or json")
    return text


# -- ps
def ps(args: argparse.Namespace) -> int:
    fmt = _format(args.format)
    views = _ps_views(args)
    wanted = list(args.status)
    for text in args.filter:
        key, _, value = text.partition("=")
        if key != "status" or not value:
            raise common.UserFacingError(f"--filter {text}: only status=STATUS is supported")
        wanted.append(value)
    if wanted:
        views = [v for v in views if v.state in wanted]
    elif not args.all:
        views = [v for v in views if v.state in ("running", "paused")]
    now, trunc = _now(), not args.no_trunc
    if args.list_services:
        out = "".join(f"{s}\n" for s in sorted({v.service for v in views}))
    elif args.quiet:
        out = "".join(f"{v.id}\n" for v in views)
    elif fmt == "json":
        out = "".join(json.dumps(render.ps_json(v, now, trunc), ensure_ascii=False) + "\n"
                      for v in views)
    else:
        out = render.ps_table(views, now, trunc)
    sys.stdout.write(out)
    return 0


def _ps_views(args: argparse.Namespace) -> list:
    """The project's containers (one-off ones too) from the agent, which has the stack's
    loader and the runtime warm; read here when no agent answers."""
    from reconciler.agent import wire
    from reconciler.cli import cluster, compose_up

    body = {"project": args.project_name} if args.project_name \
        else {"load": compose_up.load_request(args)}
    if cluster.remote(args) and not args.project_name:  # the files are here, not there
        body = {"project": compose_base.project_name(args)[0]}
    try:
        with cluster.agent_client(args, timeout=60.0) as agent:
            answer = agent.call("POST", "/v1/ps", body)
    except wire.AgentUnavailable as error:
        if cluster.remote(args):
            raise common.UserFacingError(str(error)) from None
        name, project = compose_base.project_name(args)
        compose_base.check_services(project, args.services)
        return compose_base.run(compose_base.containers(
            compose_base.context(args), name, args.services, oneoff=None))
    except wire.ApiError as error:
        raise common.UserFacingError(str(error)) from None
    for service in args.services:
        if answer["services"] is not None and service not in answer["services"]:
            raise common.UserFacingError(f"no such service: {service}")
    for node in answer.get("unreachable") or ():
        common.print_warning(f"node {node} did not answer: its containers are not listed")
    views = (_view(v) for v in answer["containers"])
    return sorted((v for v in views if not args.services or v.service in args.services),
                  key=lambda v: v.name)


def _view(data: dict):
    """A container view as the agent sends it, with the attributes render.ps_* read."""
    import types

    times = {k: dt.datetime.fromisoformat(data[k]) if data[k] else None
             for k in ("created", "started", "finished")}
    return types.SimpleNamespace(**{**data, **times, "command": tuple(data["command"]),
                                    "ports": tuple(map(tuple, data["ports"])),
                                    "networks": tuple(data["networks"])})


# -- ls
def ls(args: argparse.Namespace) -> int:
    fmt = _format(args.format)
    rows = _projects(args)
    if not args.all:
        rows = [r for r in rows if "running" in r["Status"] or "paused" in r["Status"]]
    if args.quiet:
        sys.stdout.write("".join(f"{r['Name']}\n" for r in rows))
    elif fmt == "json":
        print(json.dumps(rows))
    else:
        sys.stdout.write(render.ls_table(rows))
    return 0


def _projects(args) -> list[dict]:
    """`ls`'s rows from the agent; read here when no agent answers."""
    from reconciler.agent import plainclient, wire

    try:
        with plainclient.PlainClient(Path(args.run_dir), timeout=30.0) as agent:
            found = agent.call("GET", "/v1/ls")
    except wire.AgentUnavailable:
        found = compose_base.run(_projects_here(args))
    except wire.ApiError as error:
        raise common.UserFacingError(str(error)) from None
    return [{"Name": p["name"], "Status": render.project_status(p["states"]) or p["status"],
             "ConfigFiles": ",".join(p["config_files"])} for p in found]


async def _projects_here(args) -> list[dict]:
    """The projects that have containers on this machine, as GET /v1/ls lists them."""
    from controllers import services as svc

    states: dict[str, list[str]] = {}
    for view in await svc.list_containers(compose_base.context(args), project=None, all=True):
        states.setdefault(view.project, []).append(view.state)
    return [{"name": n, "status": "", "config_files": [], "states": s}
            for n, s in sorted(states.items())]


# -- port
def port(args: argparse.Namespace) -> int:
    target, _, proto = args.private_port.partition("/")
    proto = proto or args.protocol
    if not target.isdigit():
        raise common.UserFacingError(f"invalid port: {args.private_port}")
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, [args.service], containers=True)
    views = compose_base.run(compose_base.containers(compose_base.context(args), name,
                                                     [args.service], refs=True,
                                                     declared=project))
    if views and all(v.service != args.service for v in views):
        view = views[0]  # SERVICE named a container (its name, ID or ID prefix)
    else:
        view = next((v for v in views if v.replica == args.index), None)
    if view is None:
        raise common.UserFacingError(f"service \"{args.service}\" is not running "
                                     f"(no replica {args.index})")
    for host_ip, published, port_, protocol in view.ports:
        if port_ == int(target) and protocol == proto and published:
            print(f"{host_ip or '0.0.0.0'}:{published}")
            return 0
    raise common.UserFacingError(f"no port {target}/{proto} for container {view.name}")


# -- top
def top(args: argparse.Namespace) -> int:
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, args.services, containers=True)
    from reconciler.cli import cluster  # in a cluster: every node's, through the agent

    if cluster.top(args, name) is None:
        compose_base.run(_top(args, name, project))
    return 0


async def _top(args, name: str, project=None) -> None:
    from reconciler.agent import peers
    from runtime.oci import observe

    ctx = compose_base.context(args)
    views = [v for v in await compose_base.containers(ctx, name, args.services, refs=True,
                                                      declared=project)
             if v.state in ("running", "paused")]
    for view in views:
        pids = await observe.top(ctx.layout, view.id)
        rows = [r for r in map(peers.process_row, sorted(pids)) if r]
        print(view.name)
        sys.stdout.write(render.table(
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], rows))
        print()


# -- stats
def stats(args: argparse.Namespace) -> int:
    fmt = _format(args.format)
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, args.services)
    return compose_base.run(_stats(args, name, fmt)) or 0


async def _stats(args, name: str, fmt: str) -> int:
    ctx = compose_base.context(args)
    previous = await _sample(ctx, name, args.services)
    live = not args.no_stream and sys.stdout.isatty()
    while True:
        await asyncio.sleep(0.5 if args.no_stream else 1.0)
        current = await _sample(ctx, name, args.services)
        rows = [_stats_row(view, sample, previous.get(view.name))
                for view, sample in current.values()]
        previous = current
        if fmt == "json":
            text = "".join(json.dumps(r) + "\n" for r in rows)
        else:
            text = render.table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                                 "NET I/O", "BLOCK I/O", "PIDS"],
                                [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"],
                                  r["NetIO"], r["BlockIO"], r["PIDs"]] for r in rows])
        sys.stdout.write(("\x1b[2J\x1b[H" if live else "") + text)
        sys.stdout.flush()
        if args.no_stream:
            return 0


async def _sample(ctx, name: str, services) -> dict:
    from runtime.oci import observe

    out = {}
    for view in await compose_base.containers(ctx, name, services):
        if view.state not in ("running", "paused"):
            continue
        try:
            sample = await observe.stats(ctx.layout, view.id)
        except LookupError:
            continue
        out[view.name] = (view, (time.monotonic(), sample, _net_io(view.pid)))
    return out


def _net_io(pid: int) -> tuple[int, int]:
    """Bytes received and sent on every interface but lo, in the container's netns."""
    rx = tx = 0
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        iface, _, data = line.partition(":")
        if iface.strip() != "lo":
            values = data.split()
            rx, tx = rx + int(values[0]), tx + int(values[8])
    return rx, tx


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _stats_row(view, sample, before) -> dict:
    when, st, (rx, tx) = sample
    cpu = 0.0
    if before:
        then, old, _ = before[1]
        cpu = max(0, st.cpu_usage_ns - old.cpu_usage_ns) / 1e9 / max(when - then, 1e-6) * 100
    limit = st.memory_limit or _mem_total()
    block = f"{render.size(st.io_read_bytes)} / {render.size(st.io_write_bytes)}"
    # docker stats' short ID (12 hex digits); Container: what it names the container by.
    return {"BlockIO": block, "CPUPerc": f"{cpu:.2f}%", "Container": view.name,
            "ID": view.id[:12], "MemPerc": f"{st.memory_usage / limit * 100 if limit else 0:.2f}%",
            "MemUsage": f"{render.size(st.memory_usage)} / {render.size(limit)}",
            "Name": view.name, "NetIO": f"{render.size(rx)} / {render.size(tx)}",
            "PIDs": str(st.pids_current)}


# -- events
def events(args: argparse.Namespace) -> int:
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, args.services)
    return compose_base.run(_events(args, name)) or 0


async def _events(args, name: str) -> int:
    from reconciler.agent import client
    from reconciler.cli import compose_up

    await compose_up.ensure_agent(args)
    try:
        async with client.AgentClient(Path(args.run_dir), timeout=10.0) as agent:
            listening = f"Listening for events of {name}"
            async for event in agent.events(name, subscribed=lambda: print(
                    listening, file=sys.stderr, flush=True)):
                if event.type != "container":
                    continue  # the agent's own (submitted, step done) are on GET /v1/events
                service = event.attributes.get("service", "")
                if args.services and service not in args.services:
                    continue
                print(render.container_event(event, service, args.json), flush=True)
    except client.AgentUnavailable as error:
        raise common.UserFacingError(str(error)) from None
    return 0
