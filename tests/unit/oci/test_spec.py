"""config.json from a ContainerConfig: pure decisions, checked value by value."""

from __future__ import annotations

import dataclasses

import pytest

from runtime import labels
from runtime.cgroups import model as cgroups_model
from runtime.oci import caps, model, spec, users

IMAGE = model.ImageConfig(entrypoint=("/entry",), cmd=("serve", "--port", "80"), env=("PATH=/bin", "A=image"),
                          working_dir="/srv", user="www-data", stop_signal="SIGQUIT", labels={"l": "image"})


def config(**fields) -> model.ContainerConfig:
    base = model.ContainerConfig(name="p-web-1", identity=model.Identity("p", "web", 2, "abc", "img:1"), rootfs="/r", image=IMAGE)
    return dataclasses.replace(base, **fields)


FACTS = spec.HostFacts(user=users.User(33, 33, (4,), "/var/www"), cgroups_path="/pcompose/p/p-web-1", etc_dir="/s/etc")


@pytest.mark.parametrize("fields, args", [
    ({}, ["/entry", "serve", "--port", "80"]),
    ({"command": ("other",)}, ["/entry", "other"]),
    ({"entrypoint": ("/bin/sh", "-c")}, ["/bin/sh", "-c"]),  # entrypoint clears CMD
    ({"entrypoint": ("/bin/sh", "-c"), "command": ("echo hi",)}, ["/bin/sh", "-c", "echo hi"]),
    ({"entrypoint": (), "command": ("ls",)}, ["ls"]),
    ({"init": True, "command": ("x",)}, ["/sbin/docker-init", "--", "/entry", "x"]),
])
def test_process_args_follow_compose(fields, args):
    assert spec.process_args(config(**fields)) == args


def test_no_command_at_all_is_an_error_naming_the_container():
    with pytest.raises(spec.SpecError, match="p-web-1: no command"):
        spec.process_args(config(image=model.ImageConfig()))


def test_environment_precedence_and_defaults():
    facts = dataclasses.replace(FACTS, env_file_env=("A=file", "B=file"))
    env = spec.environment(config(environment={"B": "service", "C": ""}), facts)
    assert env == ["PATH=/bin", "A=file", "B=service", "C=", "HOSTNAME=p-web-1", "HOME=/var/www"]


def test_build_sets_user_cwd_caps_root_and_hostname():
    doc = spec.build(config(read_only=True, no_new_privileges=True, hostname="web"), FACTS)
    assert doc["process"]["user"] == {"uid": 33, "gid": 33, "additionalGids": [4]}
    assert doc["process"]["cwd"] == "/srv"
    assert doc["process"]["noNewPrivileges"] is True
    assert doc["process"]["capabilities"]["bounding"] == [c for c in caps.ALL if c in caps.DEFAULT]
    assert doc["root"] == {"path": "/r", "readonly": True}
    assert doc["hostname"] == "web"
    assert doc["linux"]["cgroupsPath"] == "/pcompose/p/p-web-1"
    etc = {m["destination"]: m["options"] for m in doc["mounts"] if m["destination"].startswith("/etc/")}
    assert set(etc) == {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}
    assert all("ro" in opts for opts in etc.values())  # read-only root: read-only generated files
    assert "/proc/kcore" in doc["linux"]["maskedPaths"]


def test_capabilities_add_drop_and_all():
    assert "CAP_NET_RAW" not in caps.effective((), ("net_raw",), False)
    assert "CAP_NET_ADMIN" in caps.effective(("NET_ADMIN",), (), False)
    assert caps.effective(("CHOWN",), ("ALL",), False) == ("CAP_CHOWN",)
    assert caps.effective(("ALL",), (), False, bounding=("CAP_KILL",)) == tuple(
        c for c in caps.ALL if c in set(caps.DEFAULT) | {"CAP_KILL"})
    assert caps.effective((), (), True, bounding=("CAP_KILL", "CAP_CHOWN")) == ("CAP_CHOWN", "CAP_KILL")
    with pytest.raises(caps.CapabilityError, match="NET_RAWR"):
        caps.effective(("NET_RAWR",), (), False)


def test_privileged_unmasks_and_allows_all_devices():
    doc = spec.build(config(privileged=True), FACTS)
    assert "maskedPaths" not in doc["linux"]
    assert doc["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sysfs = next(m for m in doc["mounts"] if m["destination"] == "/sys")
    assert "rw" in sysfs["options"]


def test_namespace_modes():
    kinds = {n["type"]: n.get("path") for n in spec.namespaces(config())}
    assert kinds == {"mount": None, "cgroup": None, "network": None, "pid": None, "ipc": None, "uts": None}
    kinds = {n["type"]: n.get("path") for n in spec.namespaces(config(network="/run/netns/x", pid="host", ipc="/proc/9/ns/ipc"))}
    assert kinds == {"mount": None, "cgroup": None, "network": "/run/netns/x", "ipc": "/proc/9/ns/ipc", "uts": None}
    with pytest.raises(spec.SpecError, match="ipc mode 'service:db'"):
        spec.namespaces(config(ipc="service:db"))


def test_resources_map_to_oci():
    res = cgroups_model.Resources(memory_limit=100, memory_reservation=50, memory_swap=200, cpus=1.5,
                                  cpu_shares=512, cpuset_cpus="0-1", pids_limit=64, blkio_weight=300)
    assert spec.resources(res) == {
        "memory": {"limit": 100, "reservation": 50, "swap": 200},
        "cpu": {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 64},
        "blockIO": {"weight": 300},
    }
    assert "blockIO" not in spec.resources(res, blkio_weight=False)
    assert spec.resources(cgroups_model.Resources()) == {}


def test_per_device_block_io_limits_map_to_oci():
    devices = (cgroups_model.DeviceLimit("read_bps", 7, 3, 1048576),
               cgroups_model.DeviceLimit("write_iops", 7, 3, 100),
               cgroups_model.DeviceLimit("weight", 7, 3, 200))
    res = cgroups_model.Resources(blkio_devices=devices)
    assert spec.resources(res) == {"blockIO": {
        "throttleReadBpsDevice": [{"major": 7, "minor": 3, "rate": 1048576}],
        "throttleWriteIOPSDevice": [{"major": 7, "minor": 3, "rate": 100}],
        "weightDevice": [{"major": 7, "minor": 3, "weight": 200}]}}
    # A host without a weight keeps the throttles.
    assert list(spec.resources(res, blkio_weight=False)["blockIO"]) == [
        "throttleReadBpsDevice", "throttleWriteIOPSDevice"]


def test_ulimits_are_clamped_to_the_host_with_a_warning():
    limits, warnings = spec.clamp_ulimits((model.Ulimit("nofile", 65536, 65536), model.Ulimit("nproc", 10, 20)), {"nofile": 20000})
    assert limits == (model.Ulimit("nofile", 20000, 20000), model.Ulimit("nproc", 10, 20))
    assert warnings == ["ulimits.nofile: 65536 lowered to the host's hard limit 20000"]
    with pytest.raises(spec.SpecError, match="ulimits.nofiles: unknown"):
        spec.clamp_ulimits((model.Ulimit("nofiles", 1, 1),), {})
    with pytest.raises(spec.SpecError, match="soft limit 5 is above hard limit 1"):
        spec.clamp_ulimits((model.Ulimit("core", 5, 1),), {})


def test_annotations_carry_identity_over_labels():
    doc = spec.build(config(labels={"l": "service", labels.OWN_PROJECT: "spoof"}), FACTS)
    notes = doc["annotations"]
    assert notes["l"] == "service"
    assert notes[labels.OWN_PROJECT] == "p"
    assert (notes[labels.OWN_SERVICE], notes[labels.OWN_REPLICA], notes[labels.OWN_CONFIG_HASH], notes[labels.OWN_IMAGE]) == ("web", "2", "abc", "img:1")
    assert notes[labels.OWN_STOP_SIGNAL] == "SIGQUIT"
    assert notes["com.docker.compose.container-number"] == "2"
    assert notes["com.docker.compose.oneoff"] == "False"
    assert "com.docker.compose.config-hash" not in notes


def test_stop_signal_names():
    assert spec.normalize_signal("term") == "SIGTERM"
    assert spec.normalize_signal("9") == "SIGKILL"
    assert spec.stop_signal(config(stop_signal="SIGINT")) == "SIGINT"
    with pytest.raises(spec.SpecError, match="unknown signal 'SIGNOPE'"):
        spec.normalize_signal("SIGNOPE")


def test_etc_files():
    files = spec.etc_files(config(hostname="web", domainname="ex.test", addresses=("10.0.0.2",),
                                  extra_hosts=(("db", "10.0.0.9"),), dns=("10.0.0.1",), dns_search=("ex.test",)))
    assert files["hostname"] == "web\n"
    assert files["hosts"] == ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                              "10.0.0.2\tweb.ex.test web\n10.0.0.9\tdb\n")
    assert files["resolv.conf"] == "nameserver 10.0.0.1\nsearch ex.test\n"


def test_bad_mount_source_is_refused():
    with pytest.raises(spec.SpecError, match="mount /data: source 'data' must be an absolute host path"):
        spec.build(config(mounts=(model.Mount(target="/data", source="data"),)), FACTS)


def test_tmpfs_shm_and_domainname():
    doc = spec.build(config(tmpfs=("/run:size=1m,mode=1777",), shm_size=1024, domainname="ex.test"), FACTS)
    by_dest = {m["destination"]: m for m in doc["mounts"]}
    assert by_dest["/run"]["type"] == "tmpfs" and "size=1m" in by_dest["/run"]["options"]
    assert "size=1024" in by_dest["/dev/shm"]["options"]
    assert doc["linux"]["sysctl"] == {"kernel.domainname": "ex.test"}
