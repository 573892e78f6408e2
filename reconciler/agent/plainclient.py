"""The agent API with the standard library only (http.client over the unix socket).

The CLI's frequent verbs (`up`, `down`) and the launcher use it: a verb that does not import
aiohttp starts in tens of milliseconds. The aiohttp client (client.py) serves the verbs that
stream for long (logs, events) or run beside other asyncio work."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

from reconciler.agent import wire


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("agent", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class PlainClient:
    """`with PlainClient(run_dir) as agent: agent.version()`; `timeout` bounds each read."""

    def __init__(self, run_dir, timeout: float | None = 30.0) -> None:
        self.socket = wire.socket_path(run_dir)
        self._conn: http.client.HTTPConnection = _UnixConnection(str(self.socket), timeout)

    def __enter__(self) -> PlainClient:
        return self

    def __exit__(self, *exc) -> None:
        self._conn.close()

    def _request(self, method: str, path: str, body: dict | None):
        data = json.dumps(body).encode() if body is not None else None
        try:
            self._conn.request(method, path, body=data, headers=(
                {"Content-Type": "application/json"} if data is not None else {}))
            response = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as error:
            self._conn.close()
            raise wire.AgentUnavailable(f"no agent answers on {self.socket}: {error}") from None
        if response.status >= 400:
            payload = _json(response.read())
            message = payload.get("error") if isinstance(payload, dict) else payload
            raise wire.ApiError(response.status, str(message or f"HTTP {response.status}").strip())
        return response

    def call(self, method: str, path: str, body: dict | None = None):
        """One request, its JSON answer; ApiError when refused, AgentUnavailable when no
        agent answers."""
        response = self._request(method, path, body)
        try:
            return _json(response.read())
        except (OSError, http.client.HTTPException) as error:
            raise wire.AgentUnavailable(f"the agent went away: {error}") from None

    def stream(self, method: str, path: str, body: dict | None = None) -> Iterator[dict]:
        """A JSON-lines answer, a line at a time as the agent sends it."""
        response = self._request(method, path, body)
        try:
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        except (OSError, http.client.HTTPException) as error:
            raise wire.AgentUnavailable(f"the agent went away: {error}") from None
        finally:
            response.close()

    def version(self) -> dict:
        """{version, api, pid, root, run_dir, reconciling} (api.VersionInfo's fields)."""
        return self.call("GET", "/v1/version")


def _json(data: bytes):
    try:
        return json.loads(data or b"null")
    except ValueError:
        return data.decode(errors="replace")
