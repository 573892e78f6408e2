"""The `pcompose` command: argv -> calls -> terminal output. Each verb group lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from reconciler.cli import common, progress

# Verb modules, in the order of `pcompose --help`, and the verbs each one adds. Only the module
# that owns the verb given is imported: a verb must not pay for the imports of every other one.
VERB_MODULES = {
    "compose": ("up", "down", "ps", "logs", "exec", "run", "stop", "start", "restart", "kill",
                "pause", "unpause", "top", "stats", "events", "port", "ls"),
    "compose_verbs": ("create", "rm", "scale", "wait", "attach", "volumes"),
    "compose_cp": ("cp",),
    "build": ("build",),
    "stack": ("config", "version"),
    "images": ("pull", "push", "images", "image", "login", "logout"),
    "networks": ("network",),
    "volumes": ("volume",),
    "system": ("system",),
    "nodes": ("node",),
    "cluster": ("cluster",),
    "inspect": ("inspect",),
    "agent": ("agent",),
}

# Global options that take a value as the next word (common.add_global_options).
_VALUED = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file",
           "--project-directory", "--root", "--run-dir", "--host-netns", "--progress",
           "--ansi", "-H", "--host", "--tlscacert", "--tlscert", "--tlskey", "--token-file"}


# Verbs that set up logging themselves when they need it: the agent logs its own way, and the
# quick verbs do not pay for importing structlog (compose_base.context quiets it when they
# act in-process after all: attached `up`, `ps` without an agent).
_OWN_LOGGING = {"agent", "up", "down", "version", "ps", "ls", "stop", "start", "restart",
                "kill", "pause", "unpause", "create", "rm", "scale", "wait", "attach", "volumes",
                "build"}


# Verbs a user other than root may run: they read the stack file and print, nothing more.
_WITHOUT_ROOT = {"config", "version"}

# Why the others need root, by verb or else by the module that owns it: said in the one line
# a user gets.
_WHY_ROOT = {
    "compose": "it drives the agent, whose socket and state are root's only",
    "compose_verbs": "it drives the agent, whose socket and state are root's only",
    "attach": "it attaches to a container's conmon socket under the run dir, root's only",
    "wait": "it reads containers' exits under the run dir, which is root's only",
    "volumes": "volumes live under the state root, which is root's only",
    "compose_cp": "it copies into and out of containers' roots and namespaces",
    "build": "the agent builds as root: RUN steps are containers, layers go to the state root",
    "images": "the image store under the state root is root's only",
    "networks": "networks are bridges, nftables rules and records under the state root",
    "system": "containers, images and volumes under the state root are root's only",
    "inspect": "containers' bundles and records under the state root are root's only",
    "agent": "the agent runs containers through runc, mounts, cgroups and network namespaces",
    "nodes": "it asks the agent, whose socket is root's only, for the cluster's nodes",
    "cluster": "the cluster's keys are root's only",
    "login": "the agent, which runs as root, pulls with root's credentials",
    "logout": "the agent, which runs as root, pulls with root's credentials",
}


def _root_refusal(argv: list[str], verb: str | None) -> str | None:
    """The one line for a verb that needs root run by another user; None when it may run.
    Decided before the verb's module is imported, so that no import error or traceback of
    a half-working run comes first."""
    if os.geteuid() == 0 or verb is None or verb in _WITHOUT_ROOT:
        return None
    owner = next((m for m, owned in VERB_MODULES.items() if verb in owned), None)
    words = argv[:argv.index("--")] if "--" in argv else argv
    if owner is None or "-h" in words or "--help" in words:
        return None  # argparse says what is wrong with the words, or prints the help
    why = _WHY_ROOT.get(verb) or _WHY_ROOT.get(owner) or "the state root is root's only"
    return f"must be run as root ({verb}: {why})"


def _verb_of(argv: list[str]) -> str | None:
    """The first word of argv that is not a global option or its value."""
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcompose",
        description="Define and run multi-container applications from Compose files.",
    )
    common.add_global_options(parser)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")
    owners = [m for m, owned in VERB_MODULES.items() if verb in owned] or list(VERB_MODULES)
    for name in owners:
        importlib.import_module(f"reconciler.cli.{name}").register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = _verb_of(argv)
    refusal = _root_refusal(argv, verb)
    if refusal is not None:
        common.print_error(refusal)
        return 1
    parser = build_parser(verb)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    if args.verb not in _OWN_LOGGING:
        common.quiet_logs()
    progress.configure(args.progress, args.ansi, args.verb)
    try:
        try:
            return int(args.handler(args) or 0)
        finally:
            progress.close_all()  # the final block stays on screen, above any error
    except common.UserFacingError as err:
        common.print_error(str(err))
        return err.exit_code
    except PermissionError as err:
        if os.geteuid() == 0:
            raise  # root refused: a fault worth its traceback
        # A verb that runs without root (`config -o FILE`) denied a file by its mode.
        common.print_error(f"permission denied: {err.filename or err.strerror}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
