"""What a container's /etc/resolv.conf and /etc/hosts say, and where they are written."""

from __future__ import annotations

from pathlib import Path


def render_resolv(
    nameservers: tuple[str, ...], search: tuple[str, ...] = (), options: tuple[str, ...] = ()
) -> str:
    lines = [f"nameserver {ns}" for ns in nameservers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def render_hosts(
    hostname: str | None, addresses: tuple[str, ...], extra_hosts: tuple[tuple[str, str], ...] = ()
) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if hostname:
        lines += [f"{ip}\t{hostname}" for ip in addresses] or [f"127.0.1.1\t{hostname}"]
    lines += [f"{ip}\t{name}" for name, ip in extra_hosts]
    return "\n".join(lines) + "\n"


def host_resolvers(resolv: Path = Path("/etc/resolv.conf")) -> tuple[str, ...]:
    """The nameservers the host itself uses (the upstreams a user would expect)."""
    try:
        text = resolv.read_text()
    except FileNotFoundError:
        return ()
    return tuple(
        parts[1] for parts in (line.split() for line in text.splitlines())
        if len(parts) >= 2 and parts[0] == "nameserver"
    )


def directory(run_dir: Path, container: str) -> Path:
    return Path(run_dir) / "net" / "files" / container


def write(run_dir: Path, container: str, resolv: str, hosts: str) -> tuple[Path, Path]:
    """Write both files in place (a bind mount pins the inode, so a rename would not reach the
    container); returns their paths."""
    folder = directory(run_dir, container)
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "resolv.conf", folder / "hosts")
    for file, text in zip(paths, (resolv, hosts), strict=True):
        file.write_text(text)
    return paths


def remove(run_dir: Path, container: str) -> None:
    folder = directory(run_dir, container)
    for name in ("resolv.conf", "hosts"):
        (folder / name).unlink(missing_ok=True)
    if folder.exists():
        folder.rmdir()
