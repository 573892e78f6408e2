"""Verbs of pcompose for stack."""

from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
