"""Where the project's shared material lies: ../shared beside the checkout, wherever it was cloned."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3] / "shared"
COMPOSE_FIXTURES = ROOT / "compose-fixtures"  # valid/ and invalid/ stacks from real projects
SCHEMA = ROOT / "reference" / "compose-spec.json"  # the Compose specification's JSON schema
