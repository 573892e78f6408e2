"""Compose files -> a validated, normalized Stack (pydantic); imports nothing else of pcompose."""
