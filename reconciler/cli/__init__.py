"""The `pcompose` command: argv -> calls -> terminal output. Each verb group lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

from reconciler.cli import common

# Verb modules, in the order of `pcompose --help`, and the verbs each one adds. Only the module
# that owns the verb given is imported: a verb must not pay for the imports of every other one.
VERB_MODULES = {
    "compose": ("up", "down", "ps", "logs", "exec", "run", "stop", "start", "restart", "kill",
                "pause", "unpause", "top", "stats", "events", "port", "ls"),
    "compose_cp": ("cp",),
    "stack": ("config", "version"),
    "images": ("pull", "images", "image", "login", "logout"),
    "networks": ("network",),
    "volumes": ("volume",),
    "inspect": ("inspect",),
    "agent": ("agent",),
}

# Global options that take a value as the next word (common.add_global_options).
_VALUED = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file",
           "--project-directory", "--root", "--run-dir", "--host-netns"}


# Verbs that set up logging themselves when they need it: the agent logs its own way, and the
# quick verbs do not pay for importing structlog (compose_base.context quiets it when they
# act in-process after all: attached `up`, `ps` without an agent).
_OWN_LOGGING = {"agent", "up", "down", "version", "ps", "ls", "stop", "start", "restart",
                "kill", "pause", "unpause"}


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
    parser = build_parser(_verb_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    if args.verb not in _OWN_LOGGING:
        common.quiet_logs()
    try:
        return int(args.handler(args) or 0)
    except common.UserFacingError as err:
        common.print_error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
