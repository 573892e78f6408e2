"""The cluster's certificates (a CA of its own, a cert per agent and one for clients, made with
openssl) and the TLS contexts the agents' TCP API serves and calls with."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
CERT, KEY = "cert.pem", "key.pem"
CLIENT = "client"
DAYS = 3650
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class TLSError(Exception):
    """A certificate could not be made, or the files given do not make a TLS context."""


@dataclass(frozen=True)
class Files:
    """A party's CA, cert and key (paths)."""

    ca: str
    cert: str
    key: str


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TLSError(f"openssl {args[0]}: {done.stderr.strip() or done.returncode}")


def _key(path: Path) -> None:
    # Made 0600 before openssl writes it: a private key is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path))
    os.chmod(path, 0o600)


def _san(names: list[str]) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"IP:{ipaddress.ip_address(name)}")
        except ValueError:
            parts.append(f"DNS:{name}")
    return ",".join(parts)


def make_ca(directory: Path) -> Files:
    """The cluster's CA in `directory`, made once: an existing one is kept (so that certs made
    later are signed by the CA every agent already trusts)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = directory / CA_CERT, directory / CA_KEY
    if not (cert.exists() and key.exists()):
        _key(key)
        _openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", str(DAYS),
                 "-subj", "/CN=pcompose cluster CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Files(str(cert), str(cert), str(key))


def make_cert(directory: Path, name: str, hosts: list[str]) -> Files:
    """A cert for `name` in directory/name, signed by the CA of `directory`; valid as a server
    (for `hosts`: names and addresses its API is reached at) and as a client, since agents
    call each other with the cert they serve with."""
    if not _NAME.match(name) or name in (".", ".."):
        raise TLSError(f"invalid certificate name {name!r}")
    ca = make_ca(directory)
    home = directory / name
    home.mkdir(exist_ok=True, mode=0o700)
    cert, key = home / CERT, home / KEY
    _key(key)
    with tempfile.TemporaryDirectory() as scratch:
        csr, ext = Path(scratch) / "req.csr", Path(scratch) / "ext.cnf"
        _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        ext.write_text("basicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n"
                       f"subjectAltName={_san(hosts or [name])}\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", ca.cert, "-CAkey", ca.key,
                 "-CAcreateserial", "-out", str(cert), "-days", str(DAYS),
                 "-extfile", str(ext))
    (directory / "ca.srl").unlink(missing_ok=True)
    return Files(ca.cert, str(cert), str(key))


def init(directory: Path, nodes: list[str], hosts: list[str]) -> dict[str, Files]:
    """`pcompose cluster init`: the CA, a cert per node (valid for its name, localhost,
    127.0.0.1 and `hosts`) and the client cert."""
    made = {}
    for node in nodes:
        made[node] = make_cert(directory, node, [node, "localhost", "127.0.0.1", *hosts])
    made[CLIENT] = make_cert(directory, CLIENT, [CLIENT])
    return made


def server_context(files: Files, *, require_cert: bool = True) -> ssl.SSLContext:
    """What the TCP API serves with: a client must show a cert of the cluster's CA (or, with
    `require_cert` false, may show none and then needs the token)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files.ca)
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as error:
        raise TLSError(f"TLS files: {error}") from None
    context.verify_mode = ssl.CERT_REQUIRED if require_cert else ssl.CERT_OPTIONAL
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_context(ca: str | None, cert: str | None = None,
                   key: str | None = None) -> ssl.SSLContext:
    """What a client (a peer agent or the CLI) calls with: the server's cert checked against
    the cluster's CA, and its own cert shown when it has one."""
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise TLSError(f"TLS files: {error}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
