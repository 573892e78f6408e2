"""Image references parsed the way docker reads them: `busybox` is `docker.io/library/busybox:latest`."""

from __future__ import annotations

import dataclasses
import re

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# docker.io is a name; the registry API for it lives on another host.
API_HOSTS = {"docker.io": "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                   r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                   r"|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$")


class ReferenceError(ValueError):
    """A reference that docker would refuse too; the message names the reference and the fault."""


@dataclasses.dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        return API_HOSTS.get(self.registry, self.registry)

    @property
    def object(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form docker prints: `busybox:latest`, `localhost:5000/app:1`."""
        return familiar_name(self.name) + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


def familiar_name(name: str) -> str:
    if name.startswith(DEFAULT_REGISTRY + "/library/"):
        return name[len(DEFAULT_REGISTRY + "/library/"):]
    if name.startswith(DEFAULT_REGISTRY + "/"):
        return name[len(DEFAULT_REGISTRY + "/"):]
    return name


def parse(text: str) -> Reference:
    """Parse `[registry[:port]/]repo[:tag][@sha256:hex]`, filling docker's defaults."""
    if not text or text != text.strip():
        raise ReferenceError(f"invalid reference {text!r}: empty or surrounded by spaces")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError(f"invalid reference {text!r}: digest {digest!r} is not sha256:<64 hex>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise ReferenceError(f"invalid reference {text!r}: bad tag {tag!r}")
    registry, repository = _split_registry(rest, text)
    if len(registry) + 1 + len(repository) > 255:
        raise ReferenceError(f"invalid reference {text!r}: name longer than 255 characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def _split_registry(rest: str, text: str) -> tuple[str, str]:
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _HOST.match(first):
            raise ReferenceError(f"invalid reference {text!r}: bad registry {first!r}")
        registry = "docker.io" if first in ("index.docker.io", "registry-1.docker.io") else first
        repository = remainder
    else:
        registry, repository = DEFAULT_REGISTRY, rest
    if not repository:
        raise ReferenceError(f"invalid reference {text!r}: no repository name")
    if not _REPOSITORY.match(repository):
        raise ReferenceError(f"invalid reference {text!r}: repository {repository!r} must be lowercase "
                             "letters, digits and separators")
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = "library/" + repository
    return registry, repository


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))
