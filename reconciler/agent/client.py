"""The CLI's side of the agent API: JSON calls over the unix socket (aiohttp UnixConnector)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from reconciler.agent import api, events

# Defined with the wire format, so that the standard-library client raises the same ones.
AgentUnavailable = api.AgentUnavailable
ApiError = api.ApiError


class AgentClient:
    """`async with AgentClient(run_dir) as agent: await agent.version()`."""

    def __init__(self, run_dir: Path, timeout: float = 30.0) -> None:
        self.socket = api.socket_path(run_dir)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AgentClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket)),
            base_url="http://agent", timeout=self._timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session:
            await self._session.close()

    async def _call(self, method: str, path: str, **kw):
        assert self._session, "use AgentClient inside `async with`"
        try:
            async with self._session.request(method, path, **kw) as response:
                if response.content_type == "application/json":
                    body = await response.json()
                else:
                    body = await response.text()
                if response.status >= 400:
                    message = body.get("error") if isinstance(body, dict) else body
                    raise ApiError(response.status, str(message).strip())
                return body
        except aiohttp.ClientConnectionError as error:
            raise AgentUnavailable(f"no agent answers on {self.socket}: {error}") from None

    async def ping(self) -> bool:
        try:
            await self.version()
        except (AgentUnavailable, ApiError):
            return False
        return True

    async def version(self) -> api.VersionInfo:
        return api.VersionInfo.from_json(await self._call("GET", "/v1/version"))

    async def projects(self) -> list[api.ProjectInfo]:
        return [api.ProjectInfo.from_json(p) for p in await self._call("GET", "/v1/projects")]

    async def project(self, name: str) -> tuple[api.ProjectInfo, dict]:
        """The project and the normalized stack it was submitted with."""
        body = await self._call("GET", f"/v1/projects/{name}")
        return api.ProjectInfo.from_json(body), body["stack"]

    async def project_steps(self, name: str) -> dict[str, events.Event]:
        """Per resource, the last step the agent ran on it and how it ended."""
        body = await self._call("GET", f"/v1/projects/{name}")
        return {resource: events.Event(**e) for resource, e in body["steps"].items()}

    async def put_project(self, name: str, stack: dict, *, config_files=(), working_dir="",
                          options: dict | None = None,
                          hashes: dict[str, str] | None = None) -> api.ProjectInfo:
        """Submit a desired state; `hashes` (desired.hashes) names the enabled services."""
        body = {"stack": stack, "config_files": list(config_files), "working_dir": working_dir}
        if options is not None:
            body["options"] = options
        if hashes is not None:
            body["hashes"] = hashes
        return api.ProjectInfo.from_json(
            await self._call("PUT", f"/v1/projects/{name}", json=body))

    async def delete_project(self, name: str, *, volumes: bool = False) -> str:
        """The project's status afterwards: `removing` while the agent takes it down."""
        body = await self._call("DELETE", f"/v1/projects/{name}",
                                params={"volumes": "true" if volumes else "false"})
        return body["status"]

    async def wait_applied(self, name: str, generation: int, *, poll: float = 0.1,
                           timeout: float = 60.0) -> api.ProjectInfo:
        """The project once `generation` converged; after a removal, once it is gone (status
        "removed"). Raises ApiError when the agent gave up on it (`up --wait`)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = {p.name: p for p in await self.projects()}
            project = found.get(name)
            if project is None:
                return api.ProjectInfo(name, "removed", (), "", generation, generation, 0.0)
            if project.applied_generation >= generation:
                return project
            if project.status == "failed" and project.generation == generation:
                raise ApiError(409, project.reason or "the agent gave up on this project")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"project {name} did not converge within {timeout:g}s "
                                   f"(status {project.status}: {project.reason})")
            await asyncio.sleep(poll)

    async def metrics(self) -> str:
        return await self._call("GET", "/metrics")

    async def events(self, project: str | None = None,
                     subscribed=None) -> AsyncIterator[events.Event]:
        """Events as they happen, until the agent stops or the caller breaks out;
        `subscribed()` is called once the agent sends every later event to this stream."""
        assert self._session, "use AgentClient inside `async with`"
        params = {"project": project} if project else {}
        try:
            async with self._session.get("/v1/events", params=params,
                                         timeout=aiohttp.ClientTimeout(total=None)) as response:
                if subscribed is not None:
                    subscribed()
                async for line in response.content:
                    if line.strip():
                        yield events.Event.from_json(line)
        except aiohttp.ClientConnectionError as error:
            raise AgentUnavailable(f"no agent answers on {self.socket}: {error}") from None
