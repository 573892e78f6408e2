"""A throwaway OCI registry (Debian's docker-registry) on 127.0.0.1, and pushing test images into it."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.parse
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

    def push(self, layout: Path, tag: str, dest: str, all_platforms: bool = False,
             manifest_format: str | None = None, compression: str | None = None) -> None:
        """Copy `oci:layout:tag` to `docker://host/dest` with skopeo (format `v2s2` for Docker manifests)."""
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if all_platforms:
            cmd.append("--all")
        if manifest_format:
            cmd.append(f"--format={manifest_format}")
        if compression:
            cmd += ["--dest-compress", f"--dest-compress-format={compression}"]
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
def running(workdir: Path, user: str | None = None, password: str | None = None,
            auth_section: str | None = None) -> Iterator[Registry]:
    """Start docker-registry with storage in `workdir` (and htpasswd auth if `user`); stop it by PID."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = auth_section or ""
    if user and not auth_section:
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


class TokenServer:
    """The token service of the distribution spec: Basic credentials in, an RS256 JWT the registry trusts out."""

    def __init__(self, workdir: Path, user: str, password: str, service: str = "pcompose-test") -> None:
        import http.server
        import threading

        self.user, self.password, self.service, self.issuer = user, password, service, "pcompose-test-issuer"
        self.key, self.cert = workdir / "token.key", workdir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=pcompose-test-token", "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.issued: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer._answer(self)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def _answer(self, req) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(req.path).query)
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if req.headers.get("Authorization") != expected:
            req.send_response(401)
            req.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else (scope, "", "")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self._sign(access)
        self.issued.append(token)
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _sign(self, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": self.user, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def registry_auth(self) -> str:
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.service}\n"
                f"    issuer: {self.issuer}\n    rootcertbundle: {self.cert}\n")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextlib.contextmanager
def running_with_tokens(workdir: Path, user: str, password: str) -> Iterator[tuple[Registry, TokenServer]]:
    """A registry that sends clients to a token server (bearer auth), both stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = TokenServer(workdir, user, password)
    try:
        with running(workdir, user, password, auth_section=tokens.registry_auth()) as reg:
            yield reg, tokens
    finally:
        tokens.close()
