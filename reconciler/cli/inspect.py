"""`pcompose inspect CONTAINER...`: docker's container object, for the fields pcompose has, as
`docker inspect` prints it: a JSON array indented by four spaces, or a template per container.

Read in this process from the machine (controllers.inspect), as `ps` does without an agent: a
container is what runc, its bundle and the records beside it say. What a container does not
carry in docker's form (the restart policy, which the agent applies; the user, capabilities
and security options as written) comes from the project's stored stack when the container
was made from it (its config hash is the stored one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from reconciler.cli import common, compose_base, listing

# docker inspect's --type values; only containers are pcompose's to inspect here.
_TYPES = ("config", "container", "image", "network", "node", "plugin", "secret", "service",
          "task", "volume")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, for a start or end that never was


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    p = verbs.add_parser("inspect", help="Return low-level information on containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER",
                   help="A container's name, ID or ID prefix")
    p.add_argument("-f", "--format", help="json (default) or a Go template")
    p.add_argument("--type", default="", help="Only container is inspected here")
    p.set_defaults(handler=inspect)


def inspect(args: argparse.Namespace) -> int:
    if args.type not in ("", "container"):
        if args.type not in _TYPES:
            raise common.UserFacingError(f'"{args.type}" is not a valid value for --type')
        hint = f"; use `pcompose {args.type} inspect`" if args.type in ("network", "volume") \
            else ""
        raise common.UserFacingError(f"--type {args.type}: only containers are inspected "
                                     f"by `pcompose inspect`{hint}")
    objects, errors = compose_base.run(_inspect(args))
    listing.write_inspect(args.format, objects)
    sys.stdout.flush()
    for message in errors:  # after the ones found, as docker prints them
        print(message, file=sys.stderr)
    return 1 if errors else 0


async def _inspect(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    from controllers import inspect as inspecting, services

    ctx = compose_base.context(args)
    views = await services.list_containers(ctx, project=None, all=True)
    chosen, errors = [], []
    for ref in args.containers:
        try:
            view = inspecting.resolve(views, ref)
        except inspecting.Ambiguous as err:
            errors.append(f"Error response from daemon: {err}")
            continue
        if view is None:
            errors.append(f"Error: No such {args.type or 'object'}: {ref}")
        else:
            chosen.append(view)
    found = await inspecting.details(ctx, chosen)
    stored = _stored_services(ctx, {d.view.project for d in found})
    return [_container(d, *_asked(d.view, stored)) for d in found], errors


def _stored_services(ctx, projects: set[str]) -> dict:
    """project -> (its stored stack, service -> config hash), for the projects the agent was
    given; none when there is no store (no `up` yet) or it cannot be read."""
    from reconciler.agent import store
    from reconciler.spec import model as spec_model

    if not projects or not (ctx.root / store.DB).exists():
        return {}
    out = {}
    try:
        db = store.Store(ctx.root)
    except (store.Damaged, OSError):
        return {}
    try:
        for name in projects:
            record = db.get(name)
            if record is None:
                continue
            try:
                stack = spec_model.Stack.model_validate(json.loads(record.stack))
            except ValueError:
                continue
            out[name] = (stack, dict(record.hashes))
    finally:
        db.close()
    return out


def _asked(view, stored: dict) -> tuple:
    """(the service as the stack wrote it, when the container was made from it; the restart
    policy the agent applies to it)."""
    from reconciler.plan import model

    stack, hashes = stored.get(view.project, (None, {}))
    svc = stack.services.get(view.service) if stack is not None and not view.oneoff else None
    try:
        policy = model.RestartPolicy.parse((svc.restart if svc else None) or "no")
    except ValueError:
        policy = model.RestartPolicy()
    made_from = svc if svc is not None and view.config_hash \
        and hashes.get(view.service) == view.config_hash else None
    return made_from, policy


def _time(when: dt.datetime | None) -> str:
    """RFC 3339 in UTC with the fraction Go keeps (trailing zeros cut), as the daemon writes."""
    if when is None:
        return _ZERO_TIME
    when = when.astimezone(dt.UTC)
    fraction = f".{when.microsecond:06d}".rstrip("0").rstrip(".")
    return f"{when:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def _unix_time(seconds: float) -> str:
    return _time(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _container(d, svc, policy) -> dict:
    """docker's ContainerJSON, in its key order, for what pcompose has."""
    v, p = d.view, d.process
    return {
        "Id": v.id,
        "Created": _time(v.created),
        "Path": p.args[0] if p.args else "",
        "Args": list(p.args[1:]),
        "State": _state(d),
        "Image": v.image_id,
        "ResolvConfPath": f"{d.etc_dir}/resolv.conf",
        "HostnamePath": f"{d.etc_dir}/hostname",
        "HostsPath": f"{d.etc_dir}/hosts",
        "LogPath": d.log_path,
        "Name": f"/{v.name}",
        "RestartCount": d.restart_count,
        "AppArmorProfile": p.apparmor,
        "HostConfig": _host_config(d, svc, policy),
        "Mounts": [_mount(m) for m in d.mounts],
        "Config": _config(d, svc),
        "NetworkSettings": _network_settings(d),
    }


def _state(d) -> dict:
    v = d.view
    state = {
        "Status": v.state, "Running": v.state in ("running", "paused"),
        "Paused": v.state == "paused", "Restarting": False, "OOMKilled": v.oom_killed,
        "Dead": False, "Pid": v.pid, "ExitCode": v.exit_code or 0, "Error": "",
        "StartedAt": _time(v.started), "FinishedAt": _time(v.finished),
    }
    if d.health is not None:
        state["Health"] = {
            "Status": d.health.status, "FailingStreak": d.health.failing_streak,
            "Log": [{"Start": _unix_time(r.start), "End": _unix_time(r.end),
                     "ExitCode": r.exit_code, "Output": r.output} for r in d.health.log]}
    return state


def _config(d, svc) -> dict:
    p = d.process
    entrypoint, cmd = _entrypoint_and_cmd(
        p.args, list(svc.entrypoint) if svc is not None and svc.entrypoint else None,
        d.image_entrypoint)
    if svc is not None:
        user = svc.user or ""
    else:  # config.json keeps the ids the name was resolved to
        user = "" if (p.uid, p.gid) == (0, 0) else f"{p.uid}:{p.gid}"
    return {
        "Hostname": d.hostname, "User": user, "Tty": p.terminal,
        "OpenStdin": bool(svc.stdin_open) if svc is not None else False,
        "Env": list(p.env), "Cmd": cmd, "Image": d.view.image, "WorkingDir": p.cwd,
        "Entrypoint": entrypoint, "Labels": dict(d.view.labels), "StopSignal": d.stop_signal,
    }


def _entrypoint_and_cmd(args: tuple[str, ...], asked: list[str] | None,
                        image: tuple[str, ...]) -> tuple[list[str] | None, list[str] | None]:
    """The process's args split as docker keeps them: the entrypoint (the service's, else the
    image's) and the command after it; null for either that is empty, as docker shows them."""
    for entry in (asked, list(image)):
        if entry and list(args[:len(entry)]) == entry:
            return entry, list(args[len(entry):]) or None
    return None, list(args) or None


def _host_config(d, svc, policy) -> dict:
    from runtime.oci import caps

    limits, v, p = d.limits, d.view, d.process
    if svc is not None:
        cap_add, cap_drop = list(svc.cap_add), list(svc.cap_drop)
        security = list(svc.security_opt)
    else:  # what the capability set and config.json show
        have = set(p.capabilities)
        cap_add = [] if d.privileged else sorted(have - set(caps.DEFAULT))
        cap_drop = [] if d.privileged else sorted(set(caps.DEFAULT) - have)
        security = (["no-new-privileges:true"] if p.no_new_privileges else []) + \
            (["seccomp=unconfined"] if not d.seccomp and not d.privileged else [])
    bindings: dict[str, list[dict]] = {}
    for host_ip, published, target, protocol in v.ports:
        if published:
            bindings.setdefault(f"{target}/{protocol}", []).append(
                {"HostIp": host_ip, "HostPort": str(published)})
    return {
        "Binds": [f"{m.name or m.source}:{m.destination}:{'ro' if m.read_only else 'rw'}"
                  for m in d.mounts if m.type != "tmpfs"] or None,
        "NetworkMode": d.network_mode,
        "PortBindings": bindings,
        "RestartPolicy": {"Name": policy.name, "MaximumRetryCount": policy.max_retries},
        "CapAdd": cap_add or None, "CapDrop": cap_drop or None,
        "Privileged": d.privileged, "ReadonlyRootfs": d.read_only,
        "SecurityOpt": security or None, "ShmSize": d.shm_size,
        "CpuShares": limits.cpu_shares, "Memory": limits.memory, "NanoCpus": limits.nano_cpus,
        "CpuPeriod": limits.cpu_period, "CpuQuota": limits.cpu_quota,
        "CpusetCpus": limits.cpuset_cpus, "MemoryReservation": limits.memory_reservation,
        "MemorySwap": limits.memory_swap, "PidsLimit": limits.pids,
        "Init": True if p.init else (svc.init if svc is not None else None),
    }


def _mount(m) -> dict:
    out = {"Type": m.type}
    if m.type == "volume":
        out["Name"] = m.name
    out.update({"Source": m.source, "Destination": m.destination})
    if m.type == "volume":
        out["Driver"] = m.driver
    out.update({"Mode": "" if m.type == "tmpfs" else ("ro" if m.read_only else "rw"),
                "RW": not m.read_only, "Propagation": m.propagation})
    return out


def _network_settings(d) -> dict:
    ports: dict[str, list[dict] | None] = {}
    for host_ip, published, target, protocol in d.view.ports:
        key = f"{target}/{protocol}"
        if published:
            ports[key] = [*(ports.get(key) or []),
                          {"HostIp": host_ip or "0.0.0.0", "HostPort": str(published)}]
        else:
            ports.setdefault(key, None)  # exposed, not published: docker's null
    hostname = [d.hostname] if d.hostname and d.hostname != d.view.name else []
    return {
        "SandboxKey": d.sandbox,
        "Ports": ports,
        "Networks": {ep.network: {
            "Aliases": list(ep.aliases) or None, "MacAddress": ep.mac,
            "NetworkID": ep.network_id, "Gateway": ep.gateway, "IPAddress": ep.ipv4,
            "IPPrefixLen": ep.prefixlen,
            # The names the stack's DNS answers with this address (runtime/net/dns.py).
            "DNSNames": list(dict.fromkeys([d.view.name, *ep.aliases, *hostname])),
        } for ep in d.endpoints},
    }
