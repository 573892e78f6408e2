"""Manifests, indexes and image configs of OCI and Docker v2 schema 2: parsing, platform choice, chain ids."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform as host_platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
GZIP_LAYERS = (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_FOREIGN,
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")
ZSTD_LAYERS = (OCI_LAYER_ZSTD, "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
PLAIN_LAYERS = (OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar",
                "application/vnd.oci.image.layer.nondistributable.v1.tar")


class ManifestError(ValueError):
    """A manifest, index or config that cannot be used; says which and why."""


@dataclasses.dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None


@dataclasses.dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclasses.dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """What a container takes from its image (docker inspect's .Config), plus the rootfs diff ids."""
    architecture: str = ""
    os: str = ""
    created: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""
    healthcheck_test: tuple[str, ...] = ()
    diff_ids: tuple[str, ...] = ()


def host() -> Platform:
    machine = host_platform.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "aarch64": ("arm64", ""),
        "arm64": ("arm64", ""), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
        "i686": ("386", ""), "i386": ("386", ""), "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
    }.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """`linux/arm64/v8` -> Platform; the form `--platform` takes."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ManifestError(f"invalid platform {text!r}: expected os/arch[/variant]")
    return Platform(*parts)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _load(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise ManifestError(f"{what} is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{what} is not a JSON object (found {json_kind(doc)})")
    return doc


# -- shapes: every field read from a document is checked here, so that a hostile or broken one is a
# ManifestError naming the field, never a TypeError further on. A null counts as absent, as in Go.
def json_kind(value: object) -> str:
    """How JSON names the type of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _wrong(where: str, expected: str, value: object) -> ManifestError:
    return ManifestError(f"{where}: expected {expected}, found {json_kind(value)}")


def obj(value: object, where: str) -> dict:
    """An object, or {} for null or absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(where, "an object", value)
    return value


def string(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _wrong(where, "a string", value)
    return value


def strings(value: object, where: str) -> tuple[str, ...]:
    """A list of strings, or () for null or absent."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _wrong(where, "a list of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong(f"{where}[{i}]", "a string", item)
    return tuple(value)


def _command(value: object, where: str) -> tuple[str, ...]:
    """Cmd and Entrypoint: a list of strings, or one string as a one-word command (docker's StrSlice)."""
    return (value,) if isinstance(value, str) else strings(value, where)


def _keys(value: object, where: str) -> tuple[str, ...]:
    """ExposedPorts and Volumes: an object whose keys are the values."""
    return tuple(sorted(obj(value, where)))


def _string_map(value: object, where: str) -> tuple[tuple[str, str], ...]:
    items = obj(value, where)
    for key, item in items.items():
        if not isinstance(item, str):
            raise _wrong(f"{where}[{key!r}]", "a string", item)
    return tuple(sorted(items.items()))


def _size(value: object, where: str) -> int:
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _wrong(where, "a size in bytes", value)
    return value


def media_type_of(data: bytes, header_type: str = "") -> str:
    doc = _load(data, "manifest")
    found = string(doc.get("mediaType"), "manifest.mediaType") or header_type
    if not found:
        found = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else ""
    if doc.get("schemaVersion") == 1 or found.startswith(DOCKER_SCHEMA1.split("+")[0]):
        raise ManifestError("Docker schema 1 manifests are not supported; push the image again "
                            "with a current client")
    if found not in INDEX_TYPES + MANIFEST_TYPES:
        raise ManifestError(f"unsupported manifest media type {found!r}")
    return found


def descriptor(raw: object, where: str) -> Descriptor:
    """A content descriptor (mediaType, digest, size, platform) checked field by field."""
    if not isinstance(raw, dict):
        raise _wrong(where, "a descriptor object", raw)
    if raw.get("digest") is None:
        raise ManifestError(f"{where}: has no digest")
    plat = raw.get("platform")
    platform = None
    if plat is not None:
        plat = obj(plat, f"{where}.platform")
        platform = Platform(string(plat.get("os"), f"{where}.platform.os"),
                            string(plat.get("architecture"), f"{where}.platform.architecture"),
                            string(plat.get("variant"), f"{where}.platform.variant"))
    return Descriptor(
        media_type=string(raw.get("mediaType"), f"{where}.mediaType"),
        digest=_checked_digest(raw["digest"], f"{where}.digest"),
        size=_size(raw.get("size"), f"{where}.size"),
        platform=platform,
    )


def _checked_digest(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _wrong(where, "a digest string", value)
    hexpart = value.removeprefix("sha256:")
    if (not value.startswith("sha256:") or len(hexpart) != 64
            or any(c not in "0123456789abcdef" for c in hexpart)):
        raise ManifestError(f"{where}: unsupported digest {value[:80]!r} (only sha256)")
    return value


def _list(value: object, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong(where, "a list", value)
    return value


def parse_index(data: bytes) -> tuple[Descriptor, ...]:
    doc = _load(data, "index")
    return tuple(descriptor(m, f"index.manifests[{i}]")
                 for i, m in enumerate(_list(doc.get("manifests"), "index.manifests")))


def parse_manifest(data: bytes) -> Manifest:
    doc = _load(data, "manifest")
    media_type = media_type_of(data)
    if media_type in INDEX_TYPES:
        raise ManifestError(f"expected an image manifest, found an index ({media_type})")
    if doc.get("config") is None:
        raise ManifestError("manifest has no config")
    layers = tuple(descriptor(layer, f"manifest.layers[{i}]")
                   for i, layer in enumerate(_list(doc.get("layers"), "manifest.layers")))
    for i, layer in enumerate(layers):
        if layer.media_type not in GZIP_LAYERS + ZSTD_LAYERS + PLAIN_LAYERS:
            raise ManifestError(f"manifest.layers[{i}]: unsupported layer media type {layer.media_type!r}")
    return Manifest(media_type, descriptor(doc["config"], "manifest.config"), layers)


def choose(manifests: tuple[Descriptor, ...], want: Platform) -> Descriptor:
    """The index entry for `want`: exact variant first, then any variant of the architecture."""
    candidates = [(m, m.platform) for m in manifests if m.platform and m.platform.os == want.os
                  and m.platform.architecture == want.architecture]
    for m, platform in candidates:
        if not want.variant or platform.variant == want.variant:
            return m
    if candidates:
        return candidates[0][0]
    offered = ", ".join(str(m.platform) for m in manifests if m.platform) or "none"
    raise ManifestError(f"no image for platform {want} in the index (offered: {offered})")


def parse_config(data: bytes) -> ImageConfig:
    doc = _load(data, "image config")
    cfg = obj(doc.get("config"), "config.config")
    rootfs = obj(doc.get("rootfs"), "config.rootfs")
    diff_ids = tuple(_checked_digest(d, f"config.rootfs.diff_ids[{i}]")
                     for i, d in enumerate(_list(rootfs.get("diff_ids"), "config.rootfs.diff_ids")))
    health = obj(cfg.get("Healthcheck"), "config.config.Healthcheck")
    return ImageConfig(
        architecture=string(doc.get("architecture"), "config.architecture"),
        os=string(doc.get("os"), "config.os"),
        created=string(doc.get("created"), "config.created"),
        entrypoint=_command(cfg.get("Entrypoint"), "config.config.Entrypoint"),
        cmd=_command(cfg.get("Cmd"), "config.config.Cmd"),
        # docker refuses a string here too (Env is a []string): split, it would be one variable per letter
        env=strings(cfg.get("Env"), "config.config.Env"),
        working_dir=string(cfg.get("WorkingDir"), "config.config.WorkingDir"),
        user=string(cfg.get("User"), "config.config.User"),
        exposed_ports=_keys(cfg.get("ExposedPorts"), "config.config.ExposedPorts"),
        volumes=_keys(cfg.get("Volumes"), "config.config.Volumes"),
        labels=_string_map(cfg.get("Labels"), "config.config.Labels"),
        stop_signal=string(cfg.get("StopSignal"), "config.config.StopSignal"),
        healthcheck_test=strings(health.get("Test"), "config.config.Healthcheck.Test"),
        diff_ids=diff_ids,
    )


def chain_ids(diff_ids: tuple[str, ...]) -> tuple[str, ...]:
    """OCI ChainID per layer: the first is its diff id, then sha256(parent + " " + diff id)."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(chain_id(chain[-1] if chain else None, diff_id))
    return tuple(chain)


def chain_id(parent: str | None, diff_id: str) -> str:
    """The ChainID of a layer above the chain `parent` (None: at the bottom)."""
    return digest_of(f"{parent} {diff_id}".encode()) if parent else diff_id
