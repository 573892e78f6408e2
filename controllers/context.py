"""Where one agent's resources live: the state root, the run dir and what follows from them.

Every controller, the agent and the CLI derive the same paths, cgroup parent and network
identity from `--root` and `--run-dir`, so several agents share one machine without meeting.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from runtime import statefiles
from runtime.images import store as image_store
from runtime.net import model as net_model
from runtime.oci import layout

# Container markers beside conmon's files: what a user did, read back by every observer.
STOPPED_BY_USER = "stopped-by-user"
RESTARTS = "restarts.json"
HEALTH = "health.json"


@dataclass(frozen=True)
class Context:
    root: Path
    run_dir: Path
    agent: str
    cgroup_parent: str
    netns: Path | None = None  # the host namespace of a simulated host; None: the machine's
    upstreams: tuple[str, ...] = ()  # DNS servers for names outside the stack
    _images: list = field(default_factory=list, compare=False, repr=False)
    # Who hears how a pull goes (the agent: its event bus), each called with (project, image,
    # images.Progress) for every layer's step; nobody by default.
    pull_listeners: list = field(default_factory=list, compare=False, repr=False)

    @property
    def layout(self) -> layout.Layout:
        return layout.Layout(root=self.root, run_dir=self.run_dir, cgroup_parent=self.cgroup_parent)

    @property
    def net_host(self) -> net_model.Host:
        return net_model.Host(agent=self.agent, state_root=self.root, run_dir=self.run_dir,
                              netns=self.netns, upstreams=self.upstreams)

    @property
    def images(self) -> image_store.Store:
        if not self._images:  # one Store per context: it opens directories once
            self._images.append(image_store.Store(self.root))
        return self._images[0]

    def pull_progress(self, project: str, image: str):
        """The progress callback for pulling `image` for `project`, or None when nobody hears."""
        if not self.pull_listeners:
            return None
        listeners = list(self.pull_listeners)

        def report(step) -> None:
            for listener in listeners:
                listener(project, image, step)

        return report

    def container_dir(self, cid: str) -> Path:
        return self.layout.container_dir(cid)


def make(root: str | os.PathLike, run_dir: str | os.PathLike, *, netns: str | None = None,
         cgroup_parent: str | None = None, upstreams: tuple[str, ...] = ()) -> Context:
    """The context of the agent that owns `root`: its identity is a hash of the root's path,
    so its bridges, nft table and cgroups differ from those of any other agent here."""
    root, run_dir = Path(root).resolve(), Path(run_dir).resolve()
    agent = hashlib.sha256(str(root).encode()).hexdigest()[:6]
    if cgroup_parent is None:
        cgroup_parent = "/pcompose" if str(root) == "/var/lib/pcompose" else f"/pcompose-{agent}"
    return Context(root=root, run_dir=run_dir, agent=agent, cgroup_parent=cgroup_parent,
                   netns=Path(netns) if netns else None, upstreams=upstreams)


def mark_stopped_by_user(ctx: Context, cid: str, stopped: bool) -> None:
    """`pcompose stop` and `kill` set this so restart policies leave the container alone;
    `start`, `restart` and `up` clear it (docker's unless-stopped semantics)."""
    marker = ctx.container_dir(cid) / STOPPED_BY_USER
    if stopped:
        statefiles.private_dir(marker.parent)
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


def stopped_by_user(ctx: Context, cid: str) -> bool:
    return (ctx.container_dir(cid) / STOPPED_BY_USER).exists()


def stopped_by_user_at(ctx: Context, cid: str) -> float | None:
    """When `stop` or `kill` last marked it (the mark's mtime), None when unmarked."""
    try:
        return (ctx.container_dir(cid) / STOPPED_BY_USER).stat().st_mtime
    except FileNotFoundError:
        return None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a reader never sees half a file. 0600: a health log or limits
    are the container's business only."""
    statefiles.write(path, json.dumps(data))


def health_of(ctx: Context, cid: str) -> dict:
    """{status: starting|healthy|unhealthy, failing_streak, log: [...]} or {} without a check."""
    return read_json(ctx.container_dir(cid) / HEALTH)


# State root -> the containers known to have a healthcheck: the health monitor looks at these
# only, so its cost does not grow with the containers that have none. Filled by services when
# it writes a check, and from disk when the monitor starts (a restarted agent).
_HEALTH_TRACKED: dict[str, set[str]] = {}


def health_tracked(ctx: Context) -> set[str]:
    """The set itself: the monitor drops a container whose check went."""
    return _HEALTH_TRACKED.setdefault(str(ctx.root), set())
