"""The stack verbs of docker compose (up, down, ps, logs, exec, run, stop, ...): their flags.

Registration imports nothing but argparse: each verb's module is imported when that verb
runs, so `pcompose up -d` pays only for what it uses. compose_up: up, down (the agent loads
and converges the stack); compose_attach: attached `up` and `--watch`; compose_ps: ps, ls,
port, top, stats, events;
compose_logs: logs; compose_ctl: exec, run, stop, start, restart, kill, pause, unpause;
render: what they print.
"""

from __future__ import annotations

import argparse
import importlib


def _handler(module: str, function: str):
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"reconciler.cli.{module}"), function)(args)
    return run


def _services(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    _register_up_down(verbs)
    _register_inspect(verbs)
    _register_exec_run(verbs)
    _register_lifecycle(verbs)


def _register_up_down(verbs) -> None:
    p = verbs.add_parser("up", help="Create and start containers")
    p.add_argument("-d", "--detach", action="store_true", help="Run containers in the background")
    p.add_argument("--wait", action="store_true",
                   help="Wait for services to be running|healthy; implies detached mode")
    p.add_argument("--wait-timeout", type=float, default=None, metavar="SECONDS")
    p.add_argument("-w", "--watch", action="store_true",
                   help="Watch the stack files and submit every valid change")
    p.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM")
    p.add_argument("--force-recreate", action="store_true")
    p.add_argument("--no-recreate", action="store_true")
    p.add_argument("--remove-orphans", action="store_true")
    p.add_argument("--build", action="store_true", help="Build images before starting containers")
    p.add_argument("--no-build", action="store_true", help="Don't build an image, even if it's missing")
    p.add_argument("--no-color", action="store_true", help="Produce monochrome output")
    p.add_argument("--no-log-prefix", action="store_true")
    p.add_argument("-t", "--timeout", type=float, default=None, metavar="SECONDS",
                   help="Shutdown timeout for containers it recreates or removes, and on "
                   "Ctrl-C")
    _services(p)
    p.set_defaults(handler=_handler("compose_up", "up"))

    p = verbs.add_parser("down", help="Stop and remove containers, networks")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove named volumes too")
    p.add_argument("--remove-orphans", action="store_true")
    p.add_argument("-t", "--timeout", type=float, default=None, metavar="SECONDS")
    p.set_defaults(handler=_handler("compose_up", "down"))


def _register_inspect(verbs) -> None:
    p = verbs.add_parser("ps", help="List containers")
    p.add_argument("-a", "--all", action="store_true", help="Show all stopped containers")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display IDs")
    p.add_argument("--services", dest="list_services", action="store_true",
                   help="Display services")
    p.add_argument("--format", default="table", help="table or json")
    p.add_argument("--status", action="append", default=[],
                   choices=("paused", "restarting", "removing", "running", "dead", "created",
                            "exited"))
    p.add_argument("--filter", action="append", default=[], metavar="status=STATUS",
                   help="Filter by a property (only status is supported, as in docker compose)")
    p.add_argument("--no-trunc", action="store_true")
    _services(p)
    p.set_defaults(handler=_handler("compose_ps", "ps"))

    p = verbs.add_parser("logs", help="View output from containers")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all", metavar="N")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--since", metavar="T", help="RFC3339 time or relative (42m)")
    p.add_argument("--no-color", action="store_true")
    p.add_argument("--no-log-prefix", action="store_true")
    p.add_argument("--index", type=int, default=None)
    _services(p)
    p.set_defaults(handler=_handler("compose_logs", "logs"))

    p = verbs.add_parser("top", help="Display the running processes")
    _services(p)
    p.set_defaults(handler=_handler("compose_ps", "top"))

    p = verbs.add_parser("stats", help="Display a live stream of container resource usage")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--format", default="table", help="table or json")
    p.add_argument("-a", "--all", action="store_true")
    _services(p)
    p.set_defaults(handler=_handler("compose_ps", "stats"))

    p = verbs.add_parser("events", help="Receive real time events from containers")
    p.add_argument("--json", action="store_true", help="Output events as a stream of json objects")
    _services(p)
    p.set_defaults(handler=_handler("compose_ps", "events"))

    p = verbs.add_parser("port", help="Print the public port for a port binding")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("private_port", metavar="PRIVATE_PORT")
    p.add_argument("--protocol", default="tcp", choices=("tcp", "udp"))
    p.add_argument("--index", type=int, default=1)
    p.set_defaults(handler=_handler("compose_ps", "port"))

    p = verbs.add_parser("ls", help="List running compose projects")
    p.add_argument("-a", "--all", action="store_true", help="Show all stopped projects")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", default="table", help="table or json")
    p.set_defaults(handler=_handler("compose_ps", "ls"))


def _register_exec_run(verbs) -> None:
    p = verbs.add_parser("exec", help="Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true",
                   help="Disable pseudo-TTY allocation")
    p.add_argument("-i", "--interactive", action="store_true", default=True)
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", default="")
    p.add_argument("-w", "--workdir", default="")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VAL")
    p.add_argument("--index", type=int, default=1)
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(handler=_handler("compose_ctl", "exec_"))

    p = verbs.add_parser("run", help="Run a one-off command on a service")
    p.add_argument("--build", action="store_true", help="Build image before starting container")
    p.add_argument("--rm", action="store_true", help="Remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VAL")
    p.add_argument("--entrypoint", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true", default=True)
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(handler=_handler("compose_ctl", "run"))


def _register_lifecycle(verbs) -> None:
    for verb, text in (("stop", "Stop services"), ("start", "Start services"),
                       ("restart", "Restart service containers"),
                       ("pause", "Pause services"), ("unpause", "Unpause services")):
        p = verbs.add_parser(verb, help=text)
        if verb in ("stop", "restart"):
            p.add_argument("-t", "--timeout", type=float, default=None, metavar="SECONDS")
        _services(p)
        p.set_defaults(handler=_handler("compose_ctl", verb))
    p = verbs.add_parser("kill", help="Force stop service containers")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("--remove-orphans", action="store_true")
    _services(p)
    p.set_defaults(handler=_handler("compose_ctl", "kill"))
