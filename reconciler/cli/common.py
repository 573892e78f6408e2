"""Options every verb shares (files, project, profiles, state dirs) and how errors reach the user."""

from __future__ import annotations

import argparse
import os
import sys

from reconciler.cli import progress


class UserFacingError(Exception):
    """An error the user can fix: printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


DEFAULT_ROOT = "/var/lib/pcompose"
DEFAULT_RUN_DIR = "/run/pcompose"


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options docker compose takes before the verb, plus where pcompose keeps its state."""
    parser.add_argument("-f", "--file", dest="files", action="append", default=[],
                        metavar="FILE", help="Compose configuration files (repeatable)")
    parser.add_argument("-p", "--project-name", dest="project_name", metavar="NAME",
                        help="Project name")
    parser.add_argument("--profile", dest="profiles", action="append", default=[],
                        metavar="PROFILE", help="Enable a profile (repeatable)")
    parser.add_argument("--env-file", dest="env_files", action="append", default=[],
                        metavar="FILE", help="Alternate environment file(s)")
    parser.add_argument("--project-directory", dest="project_directory", metavar="DIR",
                        help="Alternate working directory (default: the first file's directory)")
    parser.add_argument("--root", default=os.environ.get("PCOMPOSE_ROOT", DEFAULT_ROOT),
                        help="State root (images, containers, volumes); env PCOMPOSE_ROOT")
    parser.add_argument("--run-dir", dest="run_dir",
                        default=os.environ.get("PCOMPOSE_RUN_DIR", DEFAULT_RUN_DIR),
                        help="Runtime dir (agent socket, runc state, netns); env PCOMPOSE_RUN_DIR")
    parser.add_argument("--host-netns", dest="host_netns",
                        default=os.environ.get("PCOMPOSE_HOST_NETNS") or None,
                        help="Run the agent's bridges, rules and DNS in this network namespace "
                             "(a simulated host); env PCOMPOSE_HOST_NETNS")
    parser.add_argument("--progress", default=os.environ.get("COMPOSE_PROGRESS") or "auto",
                        choices=progress.MODES,
                        help="Type of progress output; env COMPOSE_PROGRESS")
    parser.add_argument("--ansi", default=os.environ.get("COMPOSE_ANSI") or "auto",
                        choices=progress.ANSI,
                        help="Control when to print ANSI control characters; env COMPOSE_ANSI")
    from reconciler.cli import cluster  # -H and the TLS files of a remote agent's API

    cluster.add_client_options(parser)


def print_error(message: str) -> None:
    print(f"pcompose: error: {message}", file=sys.stderr)


def print_warning(message: str) -> None:
    print(f"WARN[0000] {message}", file=sys.stderr)


def quiet_logs() -> None:
    """The runtime's info events would mix with a verb's own output: only warnings, on stderr.
    (The agent configures its own logging.)"""
    import logging

    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
