"""What a process inside sees of its config: user, read-only root, capabilities, init, env, files, mounts."""

from __future__ import annotations

import asyncio
import functools
import os
import resource
from pathlib import Path

from runtime.oci import exec as oci_exec, lifecycle, model, observe, runc
from tests.linux.oci import helpers
from tests.support import waiting


async def _run(lay, config) -> tuple[int, str, str]:
    status = await helpers.run_to_exit(lay, config)
    return status.code, helpers.output(lay, config.name), helpers.output(lay, config.name, "stderr")


async def test_user_name_from_the_image_passwd_is_applied(lay, make):
    code, out, _ = await _run(lay, make(command=("id",), user="www-data"))
    assert code == 0
    assert out.startswith("uid=33(www-data) gid=33(www-data)")


async def test_image_user_and_group_override(lay, make):
    image = model.ImageConfig(cmd=("id",), user="app")
    code, out, _ = await _run(lay, make(image=image, user="app:www-data"))
    assert out.startswith("uid=1000(app) gid=33(www-data)")


async def test_read_only_root_refuses_writes_but_tmpfs_accepts(lay, make):
    script = "touch /rootfile; echo root=$?; touch /scratch/f && echo tmpfs=$?"
    code, out, err = await _run(lay, make(command=("sh", "-c", script), read_only=True, tmpfs=("/scratch:size=1m",)))
    assert "root=1" in out and "tmpfs=0" in out
    assert "Read-only file system" in err


async def test_dropped_net_raw_is_really_missing(lay, make):
    probe = "ping -c 1 -W 1 127.0.0.1 >/dev/null 2>/tmp/err; cat /tmp/err; grep CapEff /proc/self/status"
    _, with_default, _ = await _run(lay, make(service="dflt", command=("sh", "-c", probe)))
    _, dropped, _ = await _run(lay, make(service="drop", command=("sh", "-c", probe), cap_drop=("NET_RAW",)))
    net_raw = 1 << 13
    assert int(with_default.split()[-1], 16) & net_raw
    assert not int(dropped.split()[-1], 16) & net_raw
    assert "permission denied" in dropped.lower() or "not permitted" in dropped.lower()
    assert "permission denied" not in with_default.lower()


async def test_cap_add_and_privileged(lay, make):
    probe = ("grep", "CapEff", "/proc/self/status")
    _, added, _ = await _run(lay, make(service="add", command=probe, cap_add=("NET_ADMIN",)))
    _, full, _ = await _run(lay, make(service="priv", command=("sh", "-c", "grep CapEff /proc/self/status; ls /dev"), privileged=True))
    assert int(added.split()[-1], 16) & (1 << 12)  # CAP_NET_ADMIN
    assert int(full.splitlines()[0].split()[-1], 16) == int(_own_caps(), 16)  # everything this host can grant
    host_devices = {p.name for p in Path("/dev").iterdir() if p.is_char_device() and not p.is_symlink()} - {"console", "ptmx"}
    assert host_devices <= set(full.split())  # a privileged container sees the host's devices


async def test_no_new_privileges(lay, make):
    _, out, _ = await _run(lay, make(command=("grep", "NoNewPrivs", "/proc/self/status"), no_new_privileges=True))
    assert out.split() == ["NoNewPrivs:", "1"]


async def test_init_reaps_zombies(lay, make):
    # Orphans are re-parented to PID 1; only a real init waits for them.
    script = "for i in 1 2 3; do (sleep 0.1 &); done; exec sleep 1000"
    zombies = {}
    for init in (True, False):
        config = make(service=f"init{int(init)}", command=("sh", "-c", script), init=init)
        await lifecycle.run(lay, config)
        await waiting.until(functools.partial(_orphans_done, lay, config.name),
                            what="the orphans' end")
        result = await oci_exec.run(lay, config.name, ["sh", "-c", "cat /proc/[0-9]*/stat"])
        zombies[init] = sum(1 for line in result.stdout.decode().splitlines() if line.rsplit(")", 1)[1].split()[0] == "Z")
    assert zombies == {True: 0, False: 3}


async def _orphans_done(lay, cid: str) -> bool:
    """Nothing runs in the container but its main `sleep 1000` (and its init, and this look):
    each orphan has exited, a zombie now or reaped (a zombie's cmdline is empty)."""
    listing = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done"
    result = await oci_exec.run(lay, cid, ["sh", "-c", listing])
    running = [line.strip() for line in result.stdout.decode().splitlines() if line.strip()]
    # The init runs as `<init> -- sh -c <script>`, whichever binary it is.
    others = [c for c in running if not c.startswith(("sh -c for f in", "tr ")) and " -- " not in c]
    return others == ["sleep 1000"]


async def test_init_passes_sigterm_to_the_child(lay, make):
    # busybox sleep as PID 1 ignores SIGTERM; under tini it is a child and dies of it.
    config = make(command=("sleep", "1000"), init=True, stop_grace_period=20)
    await lifecycle.run(lay, config)
    status = await lifecycle.stop(lay, config.name)
    assert status.code == 128 + 15


async def test_entrypoint_command_env_and_workdir(lay, make, state_root):
    env_file = state_root / "app.env"
    env_file.write_text("# comment\nFROM_FILE=file\nOVERRIDE=file\n")
    image = model.ImageConfig(entrypoint=("echo", "image-entrypoint"), cmd=("image-cmd",),
                              env=("PATH=/bin", "FROM_IMAGE=image", "OVERRIDE=image"), working_dir="/tmp")
    code, out, _ = await _run(lay, make(service="a", image=image))
    assert out == "image-entrypoint image-cmd"
    # Setting the entrypoint clears the image's CMD too.
    code, out, _ = await _run(lay, make(service="b", image=image, entrypoint=("sh", "-c", "pwd; env | sort")))
    lines = out.splitlines()
    assert lines[0] == "/tmp"
    assert "FROM_IMAGE=image" in lines and "OVERRIDE=image" in lines and "PATH=/bin" in lines
    config = make(service="c", image=image, entrypoint=("sh", "-c", "pwd; env | sort"), working_dir="/home/app",
                  env_files=(str(env_file),), environment={"OVERRIDE": "service"})
    _, out, _ = await _run(lay, config)
    lines = out.splitlines()
    assert lines[0] == "/home/app"
    assert {"FROM_FILE=file", "FROM_IMAGE=image", "OVERRIDE=service", "HOME=/root"} <= set(lines)


async def test_hostname_domainname_hosts_and_resolv_conf(lay, make):
    script = "hostname; cat /proc/sys/kernel/domainname; cat /etc/hostname /etc/hosts /etc/resolv.conf"
    config = make(command=("sh", "-c", script), hostname="web", domainname="example.test",
                  addresses=("10.9.0.2",), extra_hosts=(("db.local", "10.9.0.3"),),
                  dns=("10.9.0.1",), dns_search=("example.test",), dns_options=("ndots:1",))
    _, out, _ = await _run(lay, config)
    lines = out.splitlines()
    assert lines[:3] == ["web", "example.test", "web"]
    assert "10.9.0.2\tweb.example.test web" in lines and "10.9.0.3\tdb.local" in lines
    assert {"nameserver 10.9.0.1", "search example.test", "options ndots:1"} <= set(lines)
    # The files are the runtime's, kept on the host: the image's own file is only a mount point.
    assert (Path(config.rootfs) / "etc/hostname").read_text() == ""


async def test_sysctls_and_ulimits(lay, make):
    script = "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn; ulimit -c"
    config = make(command=("sh", "-c", script), sysctls={"net.ipv4.ip_forward": "1"},
                  ulimits=(model.Ulimit("nofile", 1024, 500000), model.Ulimit("core", 0, 0)))
    code, out, _ = await _run(lay, config)
    host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert out.splitlines() == ["1", "1024", str(min(500000, host_hard)), "0"]


async def test_bind_mounts_tmpfs_shm_and_devices(lay, make, state_root):
    data = state_root / "data"
    data.mkdir()
    (data / "hello").write_text("from-host\n")
    script = ("cat /data/hello; touch /data/new; echo ro=$?; touch /cache/x; echo tmpfs=$?; "
              "df -k /dev/shm | tail -1; head -c 3 /dev/myzero | od -An -tx1")
    config = make(command=("sh", "-c", script), shm_size=8 * 1024 * 1024,
                  mounts=(model.Mount(target="/data", source=str(data), read_only=True),
                          model.Mount(target="/cache", type="tmpfs", options=("size=1m",))),
                  devices=(model.Device("/dev/zero", "/dev/myzero"),))
    _, out, _ = await _run(lay, config)
    lines = out.splitlines()
    assert lines[0] == "from-host" and "ro=1" in lines and "tmpfs=0" in lines
    assert lines[3].split()[1] == "8192"
    assert lines[4].split() == ["00", "00", "00"]
    assert not (data / "new").exists()


async def test_labels_become_annotations(lay, make):
    config = make(command=("true",), labels={"com.example.tier": "web"},
                  image=model.ImageConfig(labels={"org.opencontainers.image.title": "bb", "com.example.tier": "image"}))
    await lifecycle.create(lay, config)
    notes = (await runc.state(lay.runc, config.name))["annotations"]
    assert notes["com.example.tier"] == "web"
    assert notes["org.opencontainers.image.title"] == "bb"
    assert notes["com.docker.compose.project"] == config.identity.project
    assert notes["com.docker.compose.container-number"] == "1"


async def test_namespaces_shared_by_path_and_host(lay, make, unique):
    first = make(service="first", command=("sleep", "1000"), ipc="shareable")
    await lifecycle.run(lay, first)
    ipc = await observe.namespace_path(lay, first.name, "ipc")
    pid = await observe.namespace_path(lay, first.name, "pid")
    netns = Path("/run/netns") / f"pcompose-{unique}"
    os.makedirs("/run/netns", exist_ok=True)
    await (await asyncio.create_subprocess_exec("ip", "netns", "add", netns.name)).wait()
    try:
        probe = "readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; ps -o comm | grep -c sleep; cat /proc/sys/kernel/hostname"
        second = make(service="second", command=("sh", "-c", probe), ipc=ipc, pid=pid, network=str(netns))
        _, out, _ = await _run(lay, second)
        lines = out.splitlines()
        assert lines[0] == os.readlink(ipc)
        assert lines[1] == f"net:[{os.stat(netns).st_ino}]"
        assert lines[2] == "1"  # sees the first container's sleep
        hosted = make(service="host", command=("sh", "-c", "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc"), pid="host", ipc="host")
        _, out, _ = await _run(lay, hosted)
        assert out.splitlines() == [os.readlink("/proc/self/ns/pid"), os.readlink("/proc/self/ns/ipc")]
    finally:
        await (await asyncio.create_subprocess_exec("ip", "netns", "delete", netns.name)).wait()


def _own_caps() -> str:
    return next(ln.split()[1] for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("CapBnd:"))
