"""The agent: aiohttp API on a unix socket, its client, the desired-state store."""
