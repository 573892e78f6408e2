"""The `pcompose` command: argv -> calls -> terminal output. Each verb group lives in its own module."""

from __future__ import annotations

import argparse
import sys

from reconciler.cli import agent, common, images, stack

# Each module adds its verbs to the parser; order is the order of `pcompose --help`.
VERB_MODULES = (stack, images, agent)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcompose",
        description="Define and run multi-container applications from Compose files.",
    )
    common.add_global_options(parser)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for module in VERB_MODULES:
        module.register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args) or 0)
    except common.UserFacingError as err:
        common.print_error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
