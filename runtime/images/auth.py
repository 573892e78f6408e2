"""Registry credentials from docker's config.json, and the WWW-Authenticate challenges registries send."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
from pathlib import Path

from runtime import statefiles

# docker keeps Docker Hub's credentials under its old index address.
HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


class AuthError(Exception):
    """Credentials that were refused or cannot be read."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer" or "basic"
    params: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str = "") -> str:
        return dict(self.params).get(key, default)


_PARAM = re.compile(r'\s*([a-zA-Z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str) -> Challenge:
    """`Bearer realm="https://auth",service="reg",scope="repository:a:pull"` -> Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    params = []
    for m in _PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params.append((m.group(1).lower(), re.sub(r"\\(.)", r"\1", value)))
    return Challenge(scheme.lower(), tuple(params))


def config_path(path: str | os.PathLike | None = None) -> Path:
    """docker's lookup: an explicit path, then $DOCKER_CONFIG/config.json, then ~/.docker/config.json."""
    if path:
        return Path(path)
    if os.environ.get("DOCKER_CONFIG"):
        return Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _keys_for(registry: str) -> tuple[str, ...]:
    if registry in HUB_KEYS:
        return HUB_KEYS
    return (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/")


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise AuthError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise AuthError(f"{path}: expected a JSON object")
    return doc


def load(registry: str, path: str | os.PathLike | None = None) -> Credentials | None:
    """Credentials stored for `registry`, or None. Credential helpers are not consulted."""
    file = config_path(path)
    auths = _read(file).get("auths") or {}
    for key in _keys_for(registry):
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError(f"{file}: auths.{key}.auth is not base64 of user:password") from None
            return Credentials(user, password)
    return None


def save(registry: str, creds: Credentials, path: str | os.PathLike | None = None) -> Path:
    """Store credentials the way `docker login` does; other keys of the file are kept."""
    file = config_path(path)
    doc = _read(file)
    key = HUB_KEYS[0] if registry in HUB_KEYS else registry
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    doc.setdefault("auths", {})[key] = {"auth": token}
    _write(file, doc)
    return file


def remove(registry: str, path: str | os.PathLike | None = None) -> bool:
    """Forget credentials for `registry`; True if there were any."""
    file = config_path(path)
    doc = _read(file)
    auths = doc.get("auths") or {}
    found = [k for k in _keys_for(registry) if k in auths]
    for key in found:
        del auths[key]
    if found:
        _write(file, doc)
    return bool(found)


def _write(file: Path, doc: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    statefiles.write(file, json.dumps(doc, indent="\t"), sync=True)


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
