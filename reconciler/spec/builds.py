"""Warnings for `build:` sections pcompose cannot build: a remote context, another platform, unknown
names; and for build secrets' uid, gid and mode, which a build does not apply."""

from __future__ import annotations

import platform as host_platform

from reconciler.spec import errors, model

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "armv6l": "arm", "i686": "386", "i386": "386"}


def host_platform_name() -> str:
    machine = host_platform.machine().lower()
    return f"linux/{_ARCH.get(machine, machine)}"


def is_remote(context: str) -> bool:
    """A build context that names a repository or URL, not a local directory."""
    return "://" in context or context.startswith("git@")


def check(stack: model.Stack, enabled: tuple[str, ...], place_of) -> list[errors.Warning]:
    """A warning, at its key, for each build that cannot be made here: the file is valid (config
    and other tools take it), the build itself refuses it when asked."""
    out: list[errors.Warning] = []
    host = host_platform_name()
    for name in enabled:
        svc = stack.services[name]
        b = svc.build
        if b is None:
            continue
        base = ("services", name, "build")
        context = b.context or ""
        if is_remote(context):
            out.append(errors.Warning(f'service "{name}": build context {context} is remote; pcompose '
                                      "builds from a local directory only (builds have no network)",
                                      place_of(base)))
        wanted: list[tuple[str, tuple]] = []
        if svc.platform:
            wanted.append((svc.platform, ("services", name, "platform")))
        wanted += [(p, base + ("platforms", i)) for i, p in enumerate(b.platforms)]
        for value, where in wanted:
            if "/".join(value.split("/")[:2]) != host:
                out.append(errors.Warning(f'service "{name}": platform {value}: only this host\'s '
                                          f"platform ({host}) can be built", place_of(where)))
        for key, given in b.additional_contexts.items():
            value = given or ""
            if value.startswith("service:") and value[8:] not in stack.services:
                out.append(errors.Warning(f'service "{name}": build context {key} refers to undefined '
                                          f"service {value[8:]}",
                                          place_of(base + ("additional_contexts", key))))
        for i, ref in enumerate(b.secrets):
            if ref.source not in stack.secrets:
                out.append(errors.Warning(f'service "{name}" refers to undefined build secret {ref.source}',
                                          place_of(base + ("secrets", i))))
            # a RUN step's secret mount takes its owner and mode from its own uid=, gid=, mode=
            for attr in ("uid", "gid", "mode"):
                if getattr(ref, attr) is not None:
                    out.append(errors.Warning("parsed but not applied to a build (RUN --mount=type=secret "
                                              f"sets its own {attr}=)",
                                              place_of(base + ("secrets", i, attr))))
    return out
