"""AppArmor for containers: docker's `docker-default` profile where the host has AppArmor and
that profile is loaded; a note, once, where it cannot be applied."""

from __future__ import annotations

import functools
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

ENABLED = Path("/sys/module/apparmor/parameters/enabled")
PROFILES = Path("/sys/kernel/security/apparmor/profiles")
DOCKER_DEFAULT = "docker-default"
UNCONFINED = "unconfined"

_noted: set[str] = set()


class ProfileNotLoaded(ValueError):
    """The service names an AppArmor profile the kernel does not have."""


@functools.cache
def enabled() -> bool:
    try:
        return ENABLED.read_text().strip() == "Y"
    except OSError:
        return False


def loaded() -> frozenset[str]:
    """Names of the loaded profiles ("name (mode)" lines); read each time, as an administrator
    may load one while the agent runs."""
    try:
        lines = PROFILES.read_text().splitlines()
    except OSError:
        return frozenset()
    return frozenset(line.rsplit(" (", 1)[0] for line in lines if line)


def profile_for(choice: str, privileged: bool = False) -> str:
    """process.apparmorProfile of a container, "" for none. `choice` is security_opt's
    apparmor value: "" means docker's default (none for a privileged container)."""
    if choice == UNCONFINED or (privileged and not choice):
        return ""
    if not enabled():
        _note_once("apparmor.not_applied", "AppArmor is not enabled on this host: "
                   "containers run without an AppArmor profile")
        return ""
    name = choice or DOCKER_DEFAULT
    if name in loaded():
        return name
    if choice:
        raise ProfileNotLoaded(f"AppArmor profile {choice!r} is not loaded on this host")
    # docker writes and loads docker-default itself; without apparmor_parser we cannot.
    _note_once("apparmor.not_applied", f"AppArmor profile {DOCKER_DEFAULT} is not loaded: "
               "containers run without an AppArmor profile")
    return ""


def _note_once(event: str, reason: str) -> None:
    if reason not in _noted:
        _noted.add(reason)
        log.warning(event, reason=reason)
