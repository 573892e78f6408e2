#!/usr/bin/env bash
# Sets up what is missing, then runs the whole test suite (as root: it drives real namespaces,
# cgroups, mounts, runc and conmon). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/python -m pytest "$@"
