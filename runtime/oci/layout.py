"""Where a container's files live: state under <root>/containers/<id>/, runc and exits under the run dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.oci import runc


@dataclass(frozen=True)
class Layout:
    root: Path  # the state root (persistent)
    run_dir: Path  # volatile: runc's root, conmon's exit dir, sockets
    cgroup_parent: str = "/pcompose"
    runc_binary: str = runc.RUNC
    conmon_binary: str = "/usr/bin/conmon"
    log_size_max: int = 10 * 1024 * 1024

    @property
    def runc(self) -> runc.Runc:
        return runc.Runc(root=str(self.run_dir / "runc"), binary=self.runc_binary)

    @property
    def exit_dir(self) -> Path:
        """conmon writes <exit_dir>/<id> holding the exit code: watch this dir for exits."""
        return self.run_dir / "exits"

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "sock"

    def container_dir(self, cid: str) -> Path:
        return self.root / "containers" / cid

    def bundle(self, cid: str) -> Path:
        return self.container_dir(cid)

    def log_path(self, cid: str) -> Path:
        return self.container_dir(cid) / "ctr.log"

    def etc_dir(self, cid: str) -> Path:
        return self.container_dir(cid) / "etc"

    def name_file(self, cid: str) -> Path:
        """The container's name beside its id: found by name without reading its bundle."""
        return self.container_dir(cid) / "name"

    def persist_dir(self, cid: str) -> Path:
        return self.container_dir(cid) / "persist"

    def exit_file(self, cid: str) -> Path:
        return self.exit_dir / cid

    def project_cgroup(self, project: str) -> str:
        return f"{self.cgroup_parent.rstrip('/')}/{project}"

    def cgroups_path(self, project: str, cid: str) -> str:
        return f"{self.project_cgroup(project)}/{cid}"
