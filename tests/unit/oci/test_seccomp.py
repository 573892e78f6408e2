"""Seccomp profiles in docker's format -> linux.seccomp: the real containers-common profile
filtered by capabilities, arch and kernel; errno values; a user's profile file; AppArmor."""

from __future__ import annotations

import dataclasses
import errno
import json
import os

import pytest

from runtime.oci import apparmor, caps, model, seccomp, spec, users

KERNEL = (6, 1)
ADMIN = caps.effective(("SYS_ADMIN",), (), False)


@pytest.fixture(scope="module")
def packaged() -> dict:
    with open(seccomp.DEFAULT_PROFILE) as file:
        return json.load(file)


def default(packaged, capabilities=caps.DEFAULT, arch="amd64", kernel=KERNEL) -> dict:
    return seccomp.translate(seccomp.as_docker_default(packaged), frozenset(capabilities), arch,
                             kernel)


def actions(profile: dict, name: str) -> list[tuple]:
    """(action, errnoRet, args) of every rule that names `name`."""
    return [(r["action"], r.get("errnoRet"), r.get("args")) for r in profile["syscalls"]
            if name in r["names"]]


def test_the_default_refuses_namespaces_and_mounts_without_sys_admin(packaged):
    profile = default(packaged)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == errno.ENOSYS
    for name in ("unshare", "mount", "umount2", "setns", "fsopen", "open_tree", "move_mount"):
        assert actions(profile, name) == [("SCMP_ACT_ERRNO", errno.EPERM, None)], name
    # fork and threads: clone without namespace flags; clone3 makes libc fall back to clone.
    assert actions(profile, "clone") == [("SCMP_ACT_ALLOW", None, [
        {"index": 0, "value": seccomp.CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
         "op": "SCMP_CMP_MASKED_EQ"}])]
    assert actions(profile, "clone3") == [("SCMP_ACT_ERRNO", errno.ENOSYS, None)]
    for name in ("mkdir", "mkdirat", "read", "execve", "chroot"):
        assert actions(profile, name) == [("SCMP_ACT_ALLOW", None, None)], name
    # Rules of the capabilities the container lacks refuse with the profile's own errno.
    assert actions(profile, "open_by_handle_at") == [("SCMP_ACT_ERRNO", errno.EPERM, None)]
    assert actions(profile, "settimeofday") == [("SCMP_ACT_ERRNO", errno.EPERM, None)]


def test_capabilities_choose_the_rules(packaged):
    profile = default(packaged, ADMIN)
    for name in ("unshare", "mount", "setns", "clone", "clone3", "bpf"):
        assert actions(profile, name) == [("SCMP_ACT_ALLOW", None, None)], name
    assert actions(default(packaged, caps.DEFAULT + ("CAP_SYS_TIME",)), "settimeofday") == [
        ("SCMP_ACT_ALLOW", None, None)]
    # chroot is a default capability; dropping it refuses the syscall.
    no_chroot = caps.effective((), ("SYS_CHROOT",), False)
    assert actions(default(packaged, no_chroot), "chroot") == [("SCMP_ACT_ERRNO", errno.EPERM, None)]
    # socket's audit rules depend on CAP_AUDIT_WRITE, which the default set has.
    assert actions(default(packaged), "socket") == [("SCMP_ACT_ALLOW", None, None)]
    no_audit = actions(default(packaged, caps.effective((), ("AUDIT_WRITE",), False)), "socket")
    assert ("SCMP_ACT_ERRNO", errno.EINVAL, [
        {"index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
        {"index": 2, "value": 9, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]) in no_audit


def test_the_host_arch_chooses_architectures_and_rules(packaged):
    amd64, arm64 = default(packaged, arch="amd64"), default(packaged, arch="arm64")
    assert amd64["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert arm64["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert actions(amd64, "arch_prctl") and not actions(arm64, "arch_prctl")
    assert actions(arm64, "arm_fadvise64_64") and not actions(amd64, "arm_fadvise64_64")
    # s390 takes clone's flags as its second argument.
    (rule,) = [r for r in default(packaged, arch="s390x")["syscalls"] if r["names"] == ["clone"]]
    assert rule["args"][0]["index"] == 1
    # An arch the archMap does not name: libseccomp's native arch only.
    assert "architectures" not in default(packaged, arch="riscv64")


def test_an_arch_the_kernel_cannot_run_is_left_out_of_the_filter(packaged):
    profile = seccomp.translate(seccomp.as_docker_default(packaged), frozenset(caps.DEFAULT),
                                "amd64", KERNEL, frozenset({"SCMP_ARCH_X32"}))
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]


def test_x32_is_found_missing_where_the_kernel_was_built_without_it():
    try:
        import gzip
        with gzip.open("/proc/config.gz", "rt") as file:
            built = "CONFIG_X86_X32_ABI=y" in file.read()
    except OSError:
        pytest.skip("the kernel's config is not readable")
    if seccomp.native_arch() != "amd64" or built:
        pytest.skip("x32 is an amd64 ABI; where it is built in, the boot may still turn it off")
    assert "SCMP_ARCH_X32" in seccomp.missing_arches()


def test_min_kernel_errno_names_and_explicit_architectures():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "EPERM",
        "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["old"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.0"}},
            {"name": "kill", "action": "SCMP_ACT_ERRNO", "errno": "EACCES", "errnoRet": None},
            {"names": ["tkill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5, "errno": "EACCES"},
        ]}
    new = seccomp.translate(profile, frozenset(), "amd64", (4, 8))
    assert new["defaultErrnoRet"] == errno.EPERM
    assert new["architectures"] == ["SCMP_ARCH_X86_64"]
    assert new["flags"] == ["SECCOMP_FILTER_FLAG_LOG"]
    assert [r["names"] for r in new["syscalls"]] == [["ptrace"], ["old"], ["kill"], ["tkill"]]
    assert new["syscalls"][2]["errnoRet"] == errno.EACCES
    assert new["syscalls"][3]["errnoRet"] == 5  # the number wins over the name
    older = seccomp.translate(profile, frozenset(), "amd64", (4, 7))
    assert [r["names"] for r in older["syscalls"]] == [["old"], ["kill"], ["tkill"]]
    newer = seccomp.translate(profile, frozenset(), "amd64", (5, 10))
    assert [r["names"] for r in newer["syscalls"]] == [["ptrace"], ["kill"], ["tkill"]]


@pytest.mark.parametrize("profile, words", [
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "'architectures' and 'archMap'"),
    ({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}, "'name' and 'names'"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "defaultAction: unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "ALLOW"}]},
     r"syscalls\[0\].action: unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "EQ"}]}]},
     r"syscalls\[0\].args\[0\].op"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOTANERRNO"}, "unknown errno name"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]},
     "minKernel 'four'"),
])
def test_a_profile_that_runc_could_not_take_is_refused_with_the_reason(profile, words):
    with pytest.raises(seccomp.ProfileError, match=words):
        seccomp.translate(profile, frozenset(), "amd64", KERNEL)


def test_no_rules_and_no_default_action_is_no_filter():
    assert seccomp.translate({}, frozenset(), "amd64", KERNEL) is None


def test_unconfined_and_privileged_have_no_filter():
    assert seccomp.for_container("unconfined", caps.DEFAULT) is None
    assert seccomp.for_container("", caps.ALL, privileged=True) is None
    assert seccomp.for_container("/does/not/matter.json", caps.ALL, privileged=True) is None


def test_the_default_is_translated_once_per_capability_set():
    first = seccomp.for_container("", caps.DEFAULT)
    assert seccomp.for_container("", tuple(reversed(caps.DEFAULT))) is first
    assert seccomp.for_container("", ADMIN) is not first
    assert first["architectures"][0] == seccomp.SECCOMP_ARCH[seccomp.native_arch()]


def test_a_users_profile_file_is_translated_as_written_and_read_again_when_changed(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    got = seccomp.for_container(str(path), caps.DEFAULT)
    assert got == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_LOG", "syscalls": []}))
    os.utime(path, ns=(1, 1))  # another mtime, even within the clock's resolution
    assert seccomp.for_container(str(path), caps.DEFAULT) == {"defaultAction": "SCMP_ACT_LOG"}


@pytest.mark.parametrize("text, words", [
    (None, "No such file"), ("{not json", "not valid JSON"), ("[]", "expected a JSON object"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown action"),
])
def test_a_bad_profile_file_is_an_error_naming_it(tmp_path, text, words):
    path = tmp_path / "bad.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(seccomp.ProfileError, match=f"seccomp profile {path}: .*{words}"):
        seccomp.for_container(str(path), caps.DEFAULT)


def test_kernel_version_is_major_and_minor():
    major, minor = seccomp.kernel_version()
    assert f"{major}.{minor}" in os.uname().release


FACTS = spec.HostFacts(user=users.User(0, 0), cgroups_path="/p/c", etc_dir="/e")
CONFIG = model.ContainerConfig(name="p-web-1", identity=model.Identity("p", "web"), rootfs="/r",
                               command=("sh",))


def test_spec_carries_the_filter_and_the_apparmor_profile():
    assert "seccomp" not in spec.build(CONFIG, FACTS)["linux"]
    assert "apparmorProfile" not in spec.build(CONFIG, FACTS)["process"]
    filtered = dataclasses.replace(FACTS, seccomp={"defaultAction": "SCMP_ACT_ALLOW"},
                                   apparmor_profile="docker-default")
    doc = spec.build(CONFIG, filtered)
    assert doc["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert doc["process"]["apparmorProfile"] == "docker-default"


@pytest.fixture
def host_apparmor(tmp_path, monkeypatch):
    """A host with AppArmor on and the profiles written to the returned file."""
    enabled, profiles = tmp_path / "enabled", tmp_path / "profiles"
    enabled.write_text("Y\n")
    profiles.write_text("docker-default (enforce)\nmine (complain)\n")
    monkeypatch.setattr(apparmor, "ENABLED", enabled)
    monkeypatch.setattr(apparmor, "PROFILES", profiles)
    apparmor.enabled.cache_clear()
    yield profiles
    apparmor.enabled.cache_clear()


def test_apparmor_docker_default_where_it_is_loaded(host_apparmor):
    assert apparmor.profile_for("") == "docker-default"
    assert apparmor.profile_for("", privileged=True) == ""
    assert apparmor.profile_for("mine", privileged=True) == "mine"
    assert apparmor.profile_for("unconfined") == ""
    with pytest.raises(apparmor.ProfileNotLoaded, match="'other' is not loaded"):
        apparmor.profile_for("other")
    host_apparmor.write_text("")
    assert apparmor.profile_for("") == ""  # noted once in the log, not an error


def test_apparmor_on_a_host_without_it_is_no_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(apparmor, "ENABLED", tmp_path / "missing")
    apparmor.enabled.cache_clear()
    try:
        assert apparmor.profile_for("") == "" and apparmor.profile_for("mine") == ""
    finally:
        apparmor.enabled.cache_clear()


def test_the_document_with_a_filter_is_the_same_json_whether_encoded_at_once_or_in_parts():
    doc = spec.build(CONFIG, dataclasses.replace(FACTS, seccomp=seccomp.for_container("", caps.DEFAULT)))
    whole = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert spec.dumps(doc) == whole
    assert spec.dumps(doc) == whole  # the filter's text, now from the cache
    # A label that is the very marker the encoder uses changes nothing.
    tricky = spec.build(dataclasses.replace(CONFIG, labels={"x": spec._SECCOMP_MARK}),
                        dataclasses.replace(FACTS, seccomp={"defaultAction": "SCMP_ACT_ALLOW"}))
    assert json.loads(spec.dumps(tricky)) == tricky
