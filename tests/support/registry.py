"""A throwaway OCI registry (Debian's docker-registry) on 127.0.0.1, and pushing test images into it."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

REGISTRY_BIN = "/usr/bin/docker-registry"


@dataclasses.dataclass(frozen=True)
class Registry:
    host: str                     # 127.0.0.1:PORT, the reference prefix
    storage: Path                 # the registry's filesystem storage root
    user: str | None = None
    password: str | None = None

    def push(self, layout: Path, tag: str, dest: str, all_platforms: bool = False) -> None:
        """Copy `oci:layout:tag` to `docker://host/dest` with skopeo."""
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if all_platforms:
            cmd.append("--all")
        if self.user:
            cmd.append(f"--dest-creds={self.user}:{self.password}")
        subprocess.run([*cmd, f"oci:{layout}:{tag}", f"docker://{self.host}/{dest}"],
                       check=True, capture_output=True, timeout=120)


    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes (to corrupt it on purpose)."""
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(workdir: Path, user: str | None = None, password: str | None = None) -> Iterator[Registry]:
    """Start docker-registry with storage in `workdir` (and htpasswd auth if `user`); stop it by PID."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if user:
        subprocess.run(["htpasswd", "-Bbc", str(workdir / "htpasswd"), user, password],
                       check=True, capture_output=True)
        auth = f"auth:\n  htpasswd:\n    realm: pcompose-test\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: pcompose-test\n" + auth)
    log = open(workdir / "registry.log", "wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, proc, workdir)
        yield Registry(f"127.0.0.1:{port}", workdir / "data", user, password)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(port: int, proc: subprocess.Popen, workdir: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(workdir / 'registry.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not answer within 15 s")
