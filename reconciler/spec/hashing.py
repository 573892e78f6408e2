"""The config hash of a service: what, when it changes, means the container must be recreated.

One rule: `config --hash` prints it and the container carries it (label and annotation). Resource
limits that a running container takes in place (`runc update`) are not in it; the plan compares
those limits themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from reconciler.spec import model

# What docker compose leaves out (pkg/compose/hash.go) plus what is folded in elsewhere:
# env_file/label_file contents are already in environment/labels.
EXCLUDED = {"scale", "depends_on", "profiles", "build", "pull_policy", "extensions",
            "env_file", "label_file"}


# What `runc update` changes on a running container: a change here alone needs no recreate,
# so it stays out of the hash (reconciler.plan compares the limits).
LIVE_UPDATABLE = {"cpus", "cpu_shares", "cpu_quota", "cpu_period", "cpuset", "mem_limit",
                  "mem_reservation", "memswap_limit", "pids_limit"}


def canonical(service: model.Service, stack: model.Stack, environ: Mapping[str, str]) -> dict:
    """The normalized service as hashed: exclusions and live-updatable limits removed,
    secret/config contents added."""
    data = service.model_dump(mode="json", exclude=EXCLUDED | LIVE_UPDATABLE)
    if isinstance(data.get("deploy"), dict):
        data["deploy"].pop("replicas", None)
        resources = data["deploy"].get("resources")
        if isinstance(resources, dict):
            resources.pop("limits", None)
            if isinstance(resources.get("reservations"), dict):
                for key in ("cpus", "memory"):
                    resources["reservations"].pop(key, None)
    data = _prune(data, keep_empty=("command", "entrypoint"))
    contents = {}
    for kind in ("secrets", "configs"):
        table = getattr(stack, kind)
        digests = {}
        for ref in getattr(service, kind):
            definition = table.get(ref.source)
            if definition is not None:
                digests[ref.source] = _content_digest(definition, environ)
        if digests:
            contents[kind] = digests
    if contents:
        data["_contents"] = contents
    return data


def config_hash(service: model.Service, stack: model.Stack, environ: Mapping[str, str]) -> str:
    """sha256 hex of the canonical JSON: equal exactly when the container need not be recreated."""
    text = json.dumps(canonical(service, stack, environ), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _content_digest(definition: model.Secret | model.Config, environ) -> str:
    """sha256 of what the container will see, so editing a secret file recreates its users."""
    if definition.external:
        return "external:" + (definition.name or "")
    content = getattr(definition, "content", None)
    if content is not None:
        payload = content.encode()
    elif definition.environment is not None:
        payload = (environ.get(definition.environment) or "").encode()
    elif definition.file is not None:
        try:
            with open(definition.file, "rb") as fh:
                payload = fh.read()
        except OSError:
            return "unreadable:" + definition.file
    else:
        payload = b""
    return hashlib.sha256(payload).hexdigest()


# Mappings whose keys are the user's names, not attributes: every entry counts, even `key: null`.
FREE_MAPS = {"annotations", "environment", "labels", "sysctls", "extra_hosts", "ulimits",
             "networks", "models", "storage_opt", "driver_opts", "options", "args", "ssh",
             "additional_contexts", "aux_addresses", "_contents", "secrets", "configs"}


def _prune(node, keep_empty=(), free=False):
    """Drop unset attributes (None, empty), so a new optional attribute does not change old hashes."""
    if isinstance(node, dict):
        out = {}
        for key, val in node.items():
            val = _prune(val, free=key in FREE_MAPS and isinstance(val, dict))
            if not free and (val is None or (val in ([], {}) and key not in keep_empty)):
                continue
            out[key] = val
        return out
    if isinstance(node, list):
        return [_prune(v) for v in node]
    return node
