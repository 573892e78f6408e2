"""Where the project's shared material lies: ../shared beside the checkout, wherever it was
cloned (PCOMPOSE_TEST_SHARED names another place, as the check that it is missing does)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("PCOMPOSE_TEST_SHARED") or Path(__file__).resolve().parents[3] / "shared")
COMPOSE_FIXTURES = ROOT / "compose-fixtures"  # valid/ and invalid/ stacks from real projects
SCHEMA = ROOT / "reference" / "compose-spec.json"  # the Compose specification's JSON schema
