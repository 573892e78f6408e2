#!/usr/bin/env bash
# Sets up what is missing, then loads the example stack and prints it as pcompose sees it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
STACK=specs/examples/web/compose.yaml
.venv/bin/pcompose -f "$STACK" config
