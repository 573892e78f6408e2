"""Stack files the agent could only refuse once it runs a container, or that would eat its
memory, are refused by `config` and by `up -d` alike, with the file, line, column and path of
what is wrong, and nothing is made: no container, no stored project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import leftovers

BOMB = "services:\n  web: {image: busybox:latest}\nx-l0: &l0 [" + ", ".join(['"lol"'] * 9) \
    + "]\n" + "".join(f"x-l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]\n"
                      for n in range(1, 9))

SERVICE = "services:\n  web:\n    image: busybox:latest\n    command: [sleep, '1000']\n"

# (compose.yaml, line:column, path, words in the message)
BAD = {
    "alias bomb": (BOMB, None, "x-l", "document contains excessive aliasing"),
    "container_name twice": (
        SERVICE + "    container_name: shared\n  cache:\n    image: busybox:latest\n"
                  "    container_name: shared\n",
        "8:5", "services.cache.container_name", 'container name "shared" is already used by'),
    "NUL in environment": (SERVICE + '    environment: {MODE: "a\\0b"}\n', "5:19",
                           "services.web.environment.MODE", "contains a NUL character"),
    "NUL in a command": (SERVICE.replace("'1000'", '"1000\\0"'), "4:22",
                         "services.web.command[1]", "contains a NUL character"),
    "published 70000": (SERVICE + "    ports: [{target: 80, published: 70000}]\n", "5:26",
                        "services.web.ports[0].published", "is not a port"),
    "target 0": (SERVICE + "    ports: [{target: 0}]\n", "5:14", "services.web.ports[0].target",
                 "0 is not a port in 1-65535"),
    "300-character name": (SERVICE + f"    container_name: {'c' * 300}\n", "5:5",
                           "services.web.container_name", "more than the 253 of a DNS name"),
    "hostname over 63": (SERVICE + f"    hostname: {'h' * 64}\n", "5:5", "services.web.hostname",
                         "more than the 63"),
    "volume target /": (SERVICE + "    volumes: ['data:/']\nvolumes:\n  data: {}\n", "5:15",
                        "services.web.volumes[0]", "whole file system"),
    "volume target ../../etc": (SERVICE + "    volumes: ['./conf:../../etc']\n", "5:15",
                                "services.web.volumes[0]", "must be an absolute path"),
    "subpath climbing out": (
        SERVICE + "    volumes:\n      - type: volume\n        source: data\n"
                  "        target: /data\n        volume: {subpath: ../../..}\n"
                  "volumes:\n  data: {}\n",
        "9:18", "services.web.volumes[0].volume.subpath", 'must not contain ".." parts'),
    "secret file a directory": (SERVICE + "    secrets: [pw]\nsecrets:\n  pw:\n    file: ./pw.d\n",
                                "8:5", "secrets.pw.file", "is a directory, not a file"),
    "environment twice": (SERVICE + "    environment: [A=1, B=2, C=3, D=4, A=1]\n", "5:39",
                          "services.web.environment", "array items[0,4] must be unique"),
    "cap_add twice": (SERVICE + "    cap_add: [NET_ADMIN, NET_ADMIN]\n", "5:26",
                      "services.web.cap_add", "array items[0,1] must be unique"),
}


def ps(stack) -> str:
    # -p: `ps` would read the project's name from the file, which is refused
    return stack.pc("-p", stack.project, "ps", "-a", "-q").stdout


def made_nothing(stack) -> bool:
    return json.loads(stack.pc("ls", "-a", "--format", "json").stdout) == [] \
        and not ps(stack) and not leftovers(stack)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_is_refused_by_config_and_up_with_its_place(stack, case):
    text, line_col, path, words = BAD[case]
    stack.pc("-p", stack.project, "down", check=False)  # starts the agent, where `up` loads
    stack.write(text)
    (stack.dir / "pw.d").mkdir()
    (stack.dir / "conf").mkdir()
    agent = stack.agent_pid()
    assert agent is not None
    before = peak_rss_kib(agent)
    for verb in (("config",), ("up", "-d")):
        done = stack.pc(*verb, check=False)
        assert done.returncode == 1, (verb, done.stdout, done.stderr)
        where = f"compose.yaml:{line_col}: {path}" if line_col else "compose.yaml:"
        assert where in done.stderr and words in done.stderr, (verb, done.stderr)
        if line_col is None:  # the bomb: the place is the key holding the alias
            assert f": {path}" in done.stderr
    assert made_nothing(stack)
    # The agent read the file and answered: an alias bomb did not swell it.
    assert peak_rss_kib(agent) - before < 64 * 1024
