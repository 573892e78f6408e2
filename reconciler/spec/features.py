"""Which parsed attributes pcompose does not apply yet: each one present gets a warning."""

from __future__ import annotations

from reconciler.spec import errors, model

NOT_APPLIED = "parsed but not applied by pcompose yet"
CLUSTER_ONLY = "applied in cluster mode (an agent with --cluster), not on a single host"

# Service attributes of tiers L (later) and W (platform/Swarm specific), and those the
# runtime does not apply yet (logging drivers).
SERVICE_ATTRIBUTES = (
    "annotations", "attach", "cgroup", "cgroup_parent", "cpu_count",
    "cpu_percent", "cpu_rt_period", "cpu_rt_runtime",
    "credential_spec", "develop", "device_cgroup_rules", "external_links", "gpus", "group_add",
    "isolation", "logging", "mem_swappiness", "models", "oom_kill_disable",
    "oom_score_adj", "platform", "post_start", "pre_start", "pre_stop", "provider",
    "pull_refresh_after", "runtime", "storage_opt", "use_api_socket", "userns_mode",
    "volumes_from",
)
DEPLOY_ATTRIBUTES = ("rollback_config", "endpoint_mode", "restart_policy")
# deploy attributes the cluster applies (placement, rolling updates) and a single host does not.
CLUSTER_DEPLOY_ATTRIBUTES = ("update_config", "placement")
BUILD_ATTRIBUTES = ("entitlements", "ssh", "cache_from", "cache_to", "no_cache_filter",
                    "provenance", "sbom", "isolation", "privileged", "ulimits")


NETWORK_DRIVERS = ("bridge", "overlay", "host", "none", "macvlan", "ipvlan")
# Options of a service's attachment to a network that the runtime does not apply yet.
ATTACHMENT_ATTRIBUTES = ("interface_name", "ipv6_address", "link_local_ips", "driver_opts",
                         "gw_priority")
# security_opt keys that are applied (`key`, `key=value` or docker's older `key:value`):
# seccomp (unconfined or a profile file), and apparmor where the host has AppArmor. SELinux
# `label` and docker's `systempaths` are not.
SECURITY_OPTS = ("no-new-privileges", "seccomp", "apparmor")
APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"


def warnings_for(stack: model.Stack, enabled: tuple[str, ...], place_of) -> list[errors.Warning]:
    out: list[errors.Warning] = []
    for name in enabled:
        svc = stack.services[name]
        base = ("services", name)
        for attr in SERVICE_ATTRIBUTES:
            if _present(getattr(svc, attr)):
                out.append(errors.Warning(NOT_APPLIED, place_of(base + (attr,))))
        for key, attachment in svc.networks.items():
            for attr in ATTACHMENT_ATTRIBUTES:
                if attachment is not None and _present(getattr(attachment, attr)):
                    out.append(errors.Warning(NOT_APPLIED,
                                              place_of(base + ("networks", key, attr))))
        for i, option in enumerate(svc.security_opt):
            problem = _security_opt_problem(option)
            if problem:
                out.append(errors.Warning(f'"{option}" is {problem}',
                                          place_of(base + ("security_opt", i))))
        if svc.deploy is not None:
            for attr in (*DEPLOY_ATTRIBUTES, *CLUSTER_DEPLOY_ATTRIBUTES):
                if _present(getattr(svc.deploy, attr)):
                    why = CLUSTER_ONLY if attr in CLUSTER_DEPLOY_ATTRIBUTES else NOT_APPLIED
                    out.append(errors.Warning(why, place_of(base + ("deploy", attr))))
        if svc.build is not None:
            for attr in BUILD_ATTRIBUTES:
                if _present(getattr(svc.build, attr)):
                    out.append(errors.Warning(NOT_APPLIED, place_of(base + ("build", attr))))
    if stack.models:
        out.append(errors.Warning(NOT_APPLIED, place_of(("models",))))
    for key, net in stack.networks.items():
        if not net.external and net.driver not in (None, *NETWORK_DRIVERS):
            out.append(errors.Warning(f'driver "{net.driver}" is not supported by pcompose yet',
                                      place_of(("networks", key, "driver"))))
    for key, vol in stack.volumes.items():
        if not vol.external and vol.driver not in (None, "local"):
            out.append(errors.Warning(f'driver "{vol.driver}" is not supported by pcompose yet',
                                      place_of(("volumes", key, "driver"))))
    return out


def _security_opt_problem(option: str) -> str | None:
    """Why a security_opt value is not applied, or None when it is."""
    key, sep, value = option.partition("=")
    if not sep:
        key, sep, value = option.partition(":")
    key, value = key.strip(), value.strip()
    if key not in SECURITY_OPTS:
        return NOT_APPLIED
    if key == "no-new-privileges":
        return None if value in ("", "true", "false") else NOT_APPLIED
    if not value:
        return NOT_APPLIED
    if key == "apparmor" and not _apparmor_enabled():
        return "not applied: AppArmor is not enabled on this host"
    return None


def _apparmor_enabled() -> bool:
    try:
        with open(APPARMOR_ENABLED) as file:
            return file.read().strip() == "Y"
    except OSError:
        return False


def _present(value) -> bool:
    return value is not None and value != [] and value != {}
