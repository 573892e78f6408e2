"""Seccomp through the CLI: a default container cannot make namespaces and mount in them, as
with docker's default profile; `seccomp=unconfined`, privileged and a custom profile (docker's
format, relative to the project dir) change that."""

from __future__ import annotations

import json

# In a user namespace of its own the container is root again and may mount: the way out
# docker's default profile closes.
ESCAPE = "unshare -U -r -m sh -c 'mount -t tmpfs x /tmp && echo MOUNTED'"
SERVICE = """
  {name}:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
"""


def compose(**services: str) -> str:
    """services: name -> extra YAML lines of that service (indented 4)."""
    return "services:" + "".join(SERVICE.format(name=n) + extra for n, extra in services.items())


def running(stack) -> set[str]:
    done = stack.pc("ps", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {r["Service"] for r in rows if r["State"] == "running"}


def sh(stack, service: str, script: str):
    return stack.pc("exec", "-T", service, "sh", "-c", script, check=False)


def test_a_default_container_cannot_unshare_and_mount_but_unconfined_and_privileged_can(stack, canary):
    stack.write(compose(
        default="",
        unconfined='    security_opt: ["seccomp=unconfined"]\n',
        colon='    security_opt: ["seccomp:unconfined"]\n',
        privileged="    privileged: true\n"))
    stack.pc("up", "-d")
    assert running(stack) == {"default", "unconfined", "colon", "privileged"}

    denied = sh(stack, "default", ESCAPE)
    assert denied.returncode != 0 and "MOUNTED" not in denied.stdout
    assert "Operation not permitted" in denied.stderr
    for other in ("unshare -m true", "unshare -U true", "unshare -n true"):
        assert sh(stack, "default", other).returncode != 0, other
    # A plain fork and threads (clone without namespace flags) still work.
    assert sh(stack, "default", "(echo child) | cat; mkdir /tmp/d && echo ok").stdout == "child\nok\n"

    for service in ("unconfined", "colon", "privileged"):
        allowed = sh(stack, service, ESCAPE)
        assert allowed.returncode == 0 and "MOUNTED" in allowed.stdout, (service, allowed.stderr)
    assert canary.untouched()


def test_a_custom_profile_in_dockers_format_relative_to_the_project_dir_is_applied(stack):
    default = json.load(open("/usr/share/containers/seccomp.json"))
    # docker's own format: names in a rule, errno as a name; mkdir answers EPERM.
    default["syscalls"].insert(0, {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                   "errnoRet": 1, "args": []})
    for rule in default["syscalls"][1:]:
        rule["names"] = [n for n in rule.get("names", []) if n not in ("mkdir", "mkdirat")]
    default["syscalls"] = [r for r in default["syscalls"] if r.get("names")]
    (stack.dir / "profiles").mkdir()
    (stack.dir / "profiles" / "no-mkdir.json").write_text(json.dumps(default))
    stack.write(compose(
        custom='    security_opt: ["seccomp=./profiles/no-mkdir.json"]\n',
        default=""))
    stack.pc("up", "-d")
    assert running(stack) == {"custom", "default"}

    refused = sh(stack, "custom", "mkdir /tmp/x")
    assert refused.returncode != 0 and "Operation not permitted" in refused.stderr
    assert sh(stack, "custom", "test -e /tmp/x").returncode != 0
    assert sh(stack, "default", "mkdir /tmp/x && test -d /tmp/x").returncode == 0
    # The profile is the user's, not docker's default made strict: it allows unshare.
    assert "MOUNTED" in sh(stack, "custom", ESCAPE).stdout


def test_a_missing_profile_file_fails_the_service_with_its_name_and_path(stack):
    stack.write(compose(
        broken='    security_opt: ["seccomp=missing.json"]\n',
        fine=""))
    done = stack.pc("up", "-d", check=False)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "broken" in out and f"{stack.dir}/missing.json" in out
    assert "No such file" in out
    assert running(stack) == {"fine"}
