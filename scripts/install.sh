#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for pcompose: the runtime's Debian packages
# and a venv (.venv) with pcompose and its test tools. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# With their recommends, as on the machines the suite was run on. containers-common ships
# the seccomp profile every container gets (runtime/oci/seccomp.py).
PACKAGES=(runc conmon busybox-static nftables iproute2 skopeo docker-registry tini catatonit
          etcd-server etcd-client apache2-utils openssl mount
          golang-github-containers-common)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# docker-registry's package starts a system service on :5000; tests run their own on free ports.
if systemctl is-active --quiet docker-registry 2>/dev/null; then systemctl stop docker-registry || true; fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import reconciler, pytest, hypothesis' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/pip install -q --upgrade pip
    # A path entry rather than setuptools' import finder: every pcompose command starts
    # ~50 ms sooner. The mode is transitional in setuptools; without it, the default works.
    .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat 2>/dev/null \
        || .venv/bin/pip install -q -e '.[test]'
    touch .venv/.installed
fi
