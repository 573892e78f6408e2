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
    except ValueError as err:
        raise ManifestError(f"{what} is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return doc


def media_type_of(data: bytes, header_type: str = "") -> str:
    doc = _load(data, "manifest")
    found = doc.get("mediaType") or header_type
    if not found:
        found = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else ""
    if doc.get("schemaVersion") == 1 or found.startswith(DOCKER_SCHEMA1.split("+")[0]):
        raise ManifestError("Docker schema 1 manifests are not supported; push the image again "
                            "with a current client")
    if found not in INDEX_TYPES + MANIFEST_TYPES:
        raise ManifestError(f"unsupported manifest media type {found!r}")
    return found


def _descriptor(raw: dict, where: str) -> Descriptor:
    try:
        plat = raw.get("platform")
        return Descriptor(
            media_type=str(raw.get("mediaType", "")),
            digest=_checked_digest(raw["digest"], where),
            size=int(raw.get("size", -1)),
            platform=Platform(plat["os"], plat["architecture"], plat.get("variant", "")) if plat else None,
        )
    except (KeyError, TypeError) as err:
        raise ManifestError(f"{where}: missing or malformed field {err}") from None


def _checked_digest(value: object, where: str) -> str:
    text = str(value)
    hexpart = text.removeprefix("sha256:")
    if not text.startswith("sha256:") or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ManifestError(f"{where}: unsupported digest {text!r} (only sha256)")
    return text


def parse_index(data: bytes) -> tuple[Descriptor, ...]:
    doc = _load(data, "index")
    return tuple(_descriptor(m, f"index.manifests[{i}]") for i, m in enumerate(doc.get("manifests", [])))


def parse_manifest(data: bytes) -> Manifest:
    doc = _load(data, "manifest")
    media_type = media_type_of(data)
    if "config" not in doc:
        raise ManifestError("manifest has no config")
    layers = tuple(_descriptor(layer, f"manifest.layers[{i}]") for i, layer in enumerate(doc.get("layers", [])))
    for i, layer in enumerate(layers):
        if layer.media_type not in GZIP_LAYERS + ZSTD_LAYERS + PLAIN_LAYERS:
            raise ManifestError(f"manifest.layers[{i}]: unsupported layer media type {layer.media_type!r}")
    return Manifest(media_type, _descriptor(doc["config"], "manifest.config"), layers)


def choose(manifests: tuple[Descriptor, ...], want: Platform) -> Descriptor:
    """The index entry for `want`: exact variant first, then any variant of the architecture."""
    candidates = [m for m in manifests if m.platform and m.platform.os == want.os
                  and m.platform.architecture == want.architecture]
    for m in candidates:
        if not want.variant or m.platform.variant == want.variant:
            return m
    if candidates:
        return candidates[0]
    offered = ", ".join(str(m.platform) for m in manifests if m.platform) or "none"
    raise ManifestError(f"no image for platform {want} in the index (offered: {offered})")


def parse_config(data: bytes) -> ImageConfig:
    doc = _load(data, "image config")
    cfg = doc.get("config") or {}
    rootfs = doc.get("rootfs") or {}
    diff_ids = tuple(_checked_digest(d, f"config.rootfs.diff_ids[{i}]")
                     for i, d in enumerate(rootfs.get("diff_ids") or []))
    health = cfg.get("Healthcheck") or {}
    return ImageConfig(
        architecture=str(doc.get("architecture", "")),
        os=str(doc.get("os", "")),
        created=str(doc.get("created", "")),
        entrypoint=tuple(cfg.get("Entrypoint") or ()),
        cmd=tuple(cfg.get("Cmd") or ()),
        env=tuple(cfg.get("Env") or ()),
        working_dir=str(cfg.get("WorkingDir") or ""),
        user=str(cfg.get("User") or ""),
        exposed_ports=tuple(sorted(cfg.get("ExposedPorts") or {})),
        volumes=tuple(sorted(cfg.get("Volumes") or {})),
        labels=tuple(sorted((cfg.get("Labels") or {}).items())),
        stop_signal=str(cfg.get("StopSignal") or ""),
        healthcheck_test=tuple(health.get("Test") or ()),
        diff_ids=diff_ids,
    )


def chain_ids(diff_ids: tuple[str, ...]) -> tuple[str, ...]:
    """OCI ChainID per layer: the first is its diff id, then sha256(parent + " " + diff id)."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else digest_of(f"{chain[-1]} {diff_id}".encode()))
    return tuple(chain)
