"""Resolve a compose `user:` (name or id, optional group) against the image's /etc/passwd and /etc/group."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime import safepath

MAX_DB = 16 << 20  # a larger /etc/passwd is a hostile image's, not a user database


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


class UserError(ValueError):
    pass


def parse_passwd(text: str) -> list[tuple[str, int, int, str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdigit() and parts[3].isdigit():
            rows.append((parts[0], int(parts[2]), int(parts[3]), parts[5]))
    return rows


def parse_group(text: str) -> list[tuple[str, int, tuple[str, ...]]]:
    rows = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit():
            members = tuple(m for m in parts[3].split(",") if m)
            rows.append((parts[0], int(parts[2]), members))
    return rows


def resolve(spec: str, passwd: str, group: str) -> User:
    """Docker's rules: empty is root; a numeric uid need not exist; a name must; the
    group defaults to the user's primary group, plus the groups listing the user."""
    spec = spec.strip()
    if not spec:
        spec = "0"
    user_part, _, group_part = spec.partition(":")
    users = parse_passwd(passwd)
    groups = parse_group(group)
    entry = _find_user(user_part, users)
    if entry is None:
        if not user_part.isdigit():
            raise UserError(f"user {user_part!r}: no such user in the image's /etc/passwd")
        name, uid, gid, home = "", int(user_part), 0, "/"
    else:
        name, uid, gid, home = entry
    if group_part:
        gid = _find_group(group_part, groups)
        extra: tuple[int, ...] = ()
    else:
        extra = tuple(g for (_, g, members) in groups if name and name in members and g != gid)
    return User(uid=uid, gid=gid, additional_gids=extra, home=home)


def resolve_in_rootfs(spec: str, rootfs: str | Path) -> User:
    return resolve(spec, _read(rootfs, "/etc/passwd"), _read(rootfs, "/etc/group"))


def _read(rootfs: str | Path, path: str) -> str:
    """The image's file as the container sees it: a symlinked /etc or /etc/passwd resolves
    inside the root, never to the host's. Missing or not a regular file: empty, as docker."""
    try:
        return safepath.read_bytes(rootfs, path, limit=MAX_DB).decode(errors="replace")
    except OSError:
        return ""


def _find_user(part: str, users: list[tuple[str, int, int, str]]) -> tuple[str, int, int, str] | None:
    for row in users:
        if row[0] == part or (part.isdigit() and row[1] == int(part)):
            return row
    return None


def _find_group(part: str, groups: list[tuple[str, int, tuple[str, ...]]]) -> int:
    for name, gid, _ in groups:
        if name == part or (part.isdigit() and gid == int(part)):
            return gid
    if part.isdigit():
        return int(part)
    raise UserError(f"group {part!r}: no such group in the image's /etc/group")
