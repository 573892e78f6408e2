"""A minimal busybox container under runc for network tests: its own rootfs, our netns by path,
resolv.conf and hosts bind-mounted, a private runc root and an absolute cgroup path; removed
completely (container, state, cgroup dirs) by `cleanup`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support import busybox

CAPS = ["CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL"]
CGROUP_ROOT = Path("/sys/fs/cgroup")


class Runc:
    def __init__(self, workdir: Path, cgroup_parent: str):
        self.workdir = workdir
        self.root = workdir / "runc-root"
        self.cgroup_parent = cgroup_parent  # absolute, e.g. /pcompose-test/<unique>
        self.made: list[str] = []

    def bundle(self, name: str, args: list[str], netns: Path, files: Path, hostname: str) -> Path:
        bundle = self.workdir / "bundles" / name
        busybox.make_rootfs(bundle / "rootfs")
        (bundle / "rootfs" / "www").mkdir(exist_ok=True)
        (bundle / "rootfs" / "www" / "index.html").write_text(f"hello from {hostname}\n")
        bind = ["rbind", "ro"]
        config = {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
                "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": True,
                "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")},
            },
            "root": {"path": "rootfs"},
            "hostname": hostname,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/resolv.conf", "type": "bind", "source": str(files / "resolv.conf"), "options": bind},
                {"destination": "/etc/hosts", "type": "bind", "source": str(files / "hosts"), "options": bind},
            ],
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")]
                + [{"type": "network", "path": str(netns)}],
                "cgroupsPath": f"{self.cgroup_parent}/{name}",
            },
        }
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def _runc(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runc", "--root", str(self.root), *args], **kw)

    def start(self, name: str, bundle: Path) -> None:
        """`runc run -d`: the container keeps running after this returns."""
        self.made.append(name)
        self._runc("run", "-d", "-b", str(bundle), name, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)

    def run(self, name: str, bundle: Path, timeout: float = 20) -> tuple[int, str]:
        """`runc run` in the foreground: (exit code, stdout)."""
        self.made.append(name)
        done = self._runc("run", "-b", str(bundle), name, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout

    def cleanup(self) -> None:
        for name in self.made:
            self._runc("delete", "-f", name, capture_output=True)
        for controller in CGROUP_ROOT.iterdir():
            parent = controller / self.cgroup_parent.lstrip("/")
            for d in sorted(parent.glob("*"), reverse=True) if parent.is_dir() else ():
                if d.is_dir():
                    os.rmdir(d)
            if parent.is_dir():
                os.rmdir(parent)
            top = parent.parent
            if top.is_dir() and top != controller and not any(p.is_dir() for p in top.iterdir()):
                try:
                    os.rmdir(top)
                except OSError:
                    pass  # another test's cgroups are still there
