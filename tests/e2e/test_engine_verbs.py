"""The engine's own object verbs through the CLI: `pcompose network ...` and `pcompose volume ...`,
as a user without docker runs them beside their stacks."""

from __future__ import annotations

import ipaddress
import json
import os
import re


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def json_rows(text: str) -> list[dict]:
    return [json.loads(line) for line in lines(text)]


def sh(stack, service: str, script: str) -> str:
    return stack.pc("exec", "-T", service, "sh", "-c", script).stdout


SLEEPER = """
  {name}:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
"""


def test_a_network_made_by_network_create_carries_a_stack_as_external(stack):
    made = stack.pc("network", "create", "--subnet", "10.213.7.0/24", "--gateway", "10.213.7.1",
                    "--label", "team=blue", "--attachable", "shared")
    network_id = made.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", network_id)
    again = stack.pc("network", "create", "shared", check=False)
    assert again.returncode == 1 and "network with name shared already exists" in again.stderr

    table = stack.pc("network", "ls").stdout
    assert lines(table)[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert lines(table)[1].split() == [network_id[:12], "shared", "bridge", "local"]

    stack.write("services:" + SLEEPER.format(name="web") + "    networks: [shared]"
                + SLEEPER.format(name="client") + "    networks: [shared]\n"
                + "networks:\n  shared:\n    external: true\n")
    stack.pc("up", "-d")
    address = sh(stack, "web", "ip -4 -o addr show eth0").split()[3]
    assert ipaddress.ip_interface(address).network == ipaddress.ip_network("10.213.7.0/24")
    found = sh(stack, "client", "nslookup web | awk '/^Address/ {a=$2} END {print a}'").strip()
    assert found == address.split("/")[0]

    [shown] = json.loads(stack.pc("network", "inspect", network_id[:8]).stdout)
    assert shown["Name"] == "shared" and shown["Id"] == network_id
    assert shown["Driver"] == "bridge" and shown["Scope"] == "local"
    assert shown["IPAM"]["Config"] == [{"Subnet": "10.213.7.0/24", "Gateway": "10.213.7.1"}]
    assert shown["Labels"] == {"team": "blue"} and shown["Attachable"] is True
    assert shown["Internal"] is False and shown["Created"].endswith("Z")
    members = {c["Name"]: c["IPv4Address"] for c in shown["Containers"].values()}
    assert members[f"{stack.project}-web-1"] == address
    assert set(members) == {f"{stack.project}-web-1", f"{stack.project}-client-1"}

    refused = stack.pc("network", "rm", "shared", check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert ("error while removing network: network shared has 2 active endpoints "
            f"({stack.project}-client-1, {stack.project}-web-1)") in refused.stderr
    assert stack.pc("network", "prune", "-f").stdout == ""
    assert stack.pc("network", "ls", "-q", "--no-trunc").stdout == network_id + "\n"

    # down leaves an external network alone; then nothing holds it and it goes.
    stack.pc("down")
    assert stack.pc("network", "ls", "-q").stdout == network_id[:12] + "\n"
    assert stack.pc("network", "rm", "shared").stdout == "shared\n"
    assert stack.pc("network", "ls", "-q").stdout == ""
    missing = stack.pc("network", "inspect", "shared", check=False)
    assert missing.returncode == 1 and json.loads(missing.stdout) == []
    assert "network shared not found" in missing.stderr
    assert stack.pc("network", "rm", "-f", "shared").returncode == 0


def test_a_stacks_networks_carry_compose_labels_and_list_as_docker_lists_them(stack):
    stack.write("services:" + SLEEPER.format(name="app") + "    networks: [default, front]\n"
                + "networks:\n  front:\n    labels: {tier: edge}\n    internal: true\n")
    stack.pc("up", "-d")
    stack.pc("network", "create", "spare")
    mine = f"label=com.docker.compose.project={stack.project}"

    rows = json_rows(stack.pc("network", "ls", "--filter", mine, "--format", "json").stdout)
    assert [r["Name"] for r in rows] == [f"{stack.project}_default", f"{stack.project}_front"]
    assert set(rows[0]) == {"CreatedAt", "Driver", "ID", "IPv4", "IPv6", "Internal", "Labels",
                            "Name", "Scope"}
    front = rows[1]
    assert front["Internal"] == "true" and front["Driver"] == "bridge"
    assert set(front["Labels"].split(",")) == {
        f"com.docker.compose.project={stack.project}", "com.docker.compose.network=front",
        "tier=edge"}
    assert re.fullmatch(r"[0-9a-f]{12}", front["ID"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+", front["CreatedAt"])

    by_key = stack.pc("network", "ls", "-q", "--filter", mine,
                      "--filter", "label=com.docker.compose.network=front").stdout
    assert by_key == front["ID"] + "\n"
    named = stack.pc("network", "ls", "--filter", "name=spa", "--format", "{{.Name}}").stdout
    assert named == "spare\n"
    bad = stack.pc("network", "ls", "--filter", "colour=red", check=False)
    assert bad.returncode == 1 and "invalid filter 'colour'" in bad.stderr

    # prune takes only what no container uses; it asks first and takes no for an answer.
    kept = stack.pc("network", "prune", input="n\n")
    assert "WARNING! This will remove all custom networks" in kept.stdout
    assert "spare" in stack.pc("network", "ls").stdout
    pruned = stack.pc("network", "prune", input="y\n")
    assert pruned.stdout.endswith("Deleted Networks:\nspare\n\n")
    names = [r["Name"] for r in json_rows(stack.pc("network", "ls", "--format", "json").stdout)]
    assert names == [f"{stack.project}_default", f"{stack.project}_front"]
    assert sh(stack, "app", "echo alive") == "alive\n"

    stack.pc("down")
    assert stack.pc("network", "ls", "-q").stdout == ""


def test_volume_verbs_create_list_refuse_in_use_and_prune_as_docker(stack):
    assert stack.pc("volume", "create", "--label", "keep=yes", "shared").stdout == "shared\n"
    anonymous = stack.pc("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anonymous)
    # A volume a container mounts only a subpath of is in use as much as one it mounts whole.
    stack.pc("volume", "create", "deep")
    deep = json.loads(stack.pc("volume", "inspect", "deep").stdout)[0]["Mountpoint"]
    os.mkdir(os.path.join(deep, "part"))
    stack.write("services:" + SLEEPER.format(name="app")
                + "    volumes:\n      - shared:/shared\n      - cache:/cache\n"
                + "      - {type: volume, source: deep, target: /part, volume: {subpath: part}}\n"
                + "volumes:\n  shared:\n    external: true\n  deep:\n    external: true\n"
                + "  cache: {}\n")
    stack.pc("up", "-d")
    sh(stack, "app", "echo kept > /shared/file")

    table = lines(stack.pc("volume", "ls").stdout)
    assert table[0] == "DRIVER    VOLUME NAME"
    assert sorted(line.split()[1] for line in table[1:]) == sorted(
        [anonymous, "deep", "shared", f"{stack.project}_cache"])
    rows = {r["Name"]: r for r in json_rows(
        stack.pc("volume", "ls", "--format", "json").stdout)}
    assert set(rows["shared"]) == {"Availability", "Driver", "Group", "Labels", "Links",
                                   "Mountpoint", "Name", "Scope", "Size", "Status"}
    assert rows["shared"]["Labels"] == "keep=yes" and rows["shared"]["Driver"] == "local"
    mine = f"label=com.docker.compose.project={stack.project}"
    assert stack.pc("volume", "ls", "-q", "--filter", mine).stdout == f"{stack.project}_cache\n"
    dangling = stack.pc("volume", "ls", "-q", "--filter", "dangling=true").stdout
    assert dangling == anonymous + "\n"

    [shown] = json.loads(stack.pc("volume", "inspect", "shared").stdout)
    assert list(shown) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                           "Scope"]
    assert shown["Labels"] == {"keep": "yes"} and shown["Scope"] == "local"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", shown["CreatedAt"])
    with open(shown["Mountpoint"] + "/file") as file:
        assert file.read() == "kept\n"
    [anon] = json.loads(stack.pc("volume", "inspect", anonymous).stdout)
    assert anon["Labels"] == {"com.docker.volume.anonymous": ""}

    refused = stack.pc("volume", "rm", "shared", anonymous, check=False)
    assert refused.returncode == 1 and refused.stdout == anonymous + "\n"
    app_id = stack.pc("ps", "-q", "app").stdout.strip()  # docker names its users by ID
    assert f"remove shared: volume is in use - [{app_id}]" in refused.stderr
    held = stack.pc("volume", "rm", "deep", check=False)
    assert held.returncode == 1 and "remove deep: volume is in use" in held.stderr

    # Without -a only anonymous volumes go (docker 23 and later); with it every unused one,
    # and never one a container mounts.
    stack.pc("volume", "create")
    assert "Deleted Volumes:\n" in stack.pc("volume", "prune", "-f").stdout
    assert stack.pc("volume", "ls", "-q", "--filter", "dangling=true").stdout == ""
    stack.pc("volume", "create", "idle")
    all_pruned = stack.pc("volume", "prune", "-a", "-f").stdout
    assert all_pruned.startswith("Deleted Volumes:\nidle\n\nTotal reclaimed space: ")
    assert lines(stack.pc("volume", "ls", "-q").stdout) == sorted(
        [f"{stack.project}_cache", "deep", "shared"])

    stack.pc("down")
    assert stack.pc("volume", "rm", "shared").stdout == "shared\n"
    missing = stack.pc("volume", "rm", "shared", check=False)
    assert missing.returncode == 1 and "get shared: no such volume" in missing.stderr
    assert stack.pc("volume", "rm", "-f", "shared").returncode == 0
