"""A minimal root filesystem from the host's busybox-static, for images and containers in tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """root:x:0:
daemon:x:1:
www-data:x:33:
app:x:1000:
nogroup:x:65534:
"""


def applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def make_rootfs(dest: Path) -> Path:
    """Lay out a busybox root in `dest`: /bin/busybox with a symlink per applet, /etc, /tmp."""
    dest = Path(dest)
    for d in ("bin", "etc", "tmp", "root", "home/app", "var/www", "proc", "sys", "dev", "run"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for name in applets():
        link = dest / "bin" / name
        if name != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    os.chown(dest / "home" / "app", 1000, 1000)
    return dest
