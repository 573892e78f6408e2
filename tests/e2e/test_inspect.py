"""`pcompose inspect` through the CLI: docker's container object for real containers, checked
against what the stack asked and what the machine and the container itself show."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

STACK = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo kept > /data/note; exec sleep 100000"]
    stop_signal: SIGKILL
    environment:
      GREETING: hello there
    labels:
      team: blue
    mem_limit: 64m
    restart: on-failure:3
    cap_add: [NET_ADMIN]
    volumes:
      - data:/data
    ports:
      - "127.0.0.1:18080:80"
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
    networks:
      front:
        aliases: [www]
      back: {}
  worker:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    init: true
volumes:
  data: {}
networks:
  front: {}
  back: {}
"""


def shown(stack, *argv: str) -> list:
    return json.loads(stack.pc(*argv).stdout)


def addresses_inside(stack, service: str) -> dict[str, tuple[str, str]]:
    """address -> (prefix length, MAC) of each interface but lo, as `ip` shows them inside."""
    text = stack.pc("exec", "-T", service, "ip", "-o", "addr", "show").stdout
    links = stack.pc("exec", "-T", service, "ip", "-o", "link", "show").stdout
    macs = {}
    for line in links.splitlines():
        words = line.split()
        if "link/ether" in words:
            macs[words[1].rstrip(":").split("@")[0]] = words[words.index("link/ether") + 1]
    out = {}
    for line in text.splitlines():
        words = line.split()
        if words[2] == "inet" and words[1] != "lo":
            iface = ipaddress.ip_interface(words[3])
            out[str(iface.ip)] = (iface.network.prefixlen, macs[words[1]])
    return out


def test_inspect_shows_a_container_as_docker_does_from_what_runs(stack):
    p = stack.project
    stack.write(STACK)
    stack.pc("up", "-d", "--wait")
    name = f"{p}-web-1"

    text = stack.pc("inspect", name).stdout
    assert text.startswith("[\n    {\n        \"Id\": ")  # docker's four-space indent
    [web] = json.loads(text)
    assert web["Name"] == f"/{name}"
    assert [c["Name"] for c in shown(stack, "inspect", web["Id"])] == [f"/{name}"]

    state = web["State"]
    assert state["Status"] == "running" and state["Running"] is True
    assert state["Paused"] is False and state["ExitCode"] == 0
    assert state["StartedAt"].endswith("Z") and state["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert b"sleep" in Path(f"/proc/{state['Pid']}/cmdline").read_bytes()
    assert state["Health"]["Status"] == "healthy"
    assert state["Health"]["Log"] and state["Health"]["Log"][-1]["ExitCode"] == 0

    script = "echo kept > /data/note; exec sleep 100000"
    assert web["Path"] == "sh" and web["Args"] == ["-c", script]
    config = web["Config"]
    assert config["Cmd"] == ["sh", "-c", script]
    assert config["Entrypoint"] is None and config["Image"] == "busybox"
    assert web["Image"].startswith("sha256:")
    assert "GREETING=hello there" in config["Env"]
    inside = stack.pc("exec", "-T", "web", "hostname").stdout.strip()
    assert config["Hostname"] == inside and config["StopSignal"] == "SIGKILL"
    labels = config["Labels"]
    assert labels["team"] == "blue"
    assert labels["com.docker.compose.project"] == p
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert not [k for k in labels if k.startswith("io.pcompose.")]

    host = web["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["MemorySwap"] == 2 * host["Memory"]
    limit = stack.pc("exec", "-T", "web", "cat",
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    assert int(limit) == host["Memory"]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["CapAdd"] == ["NET_ADMIN"] and host["Privileged"] is False
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    assert host["NetworkMode"] in (f"{p}_front", f"{p}_back")

    [mount] = web["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Destination"], mount["RW"]) == \
        ("volume", f"{p}_data", "/data", True)
    [volume] = shown(stack, "volume", "inspect", f"{p}_data")
    assert mount["Source"] == volume["Mountpoint"]
    assert (Path(mount["Source"]) / "note").read_text() == "kept\n"  # what the container wrote
    assert host["Binds"] == [f"{p}_data:/data:rw"]

    settings = web["NetworkSettings"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    networks = settings["Networks"]
    assert set(networks) == {f"{p}_front", f"{p}_back"}
    seen = addresses_inside(stack, "web")
    assert {n["IPAddress"] for n in networks.values()} == set(seen)
    for net_name, net in networks.items():
        assert (net["IPPrefixLen"], net["MacAddress"]) == seen[net["IPAddress"]]
        [made] = shown(stack, "network", "inspect", net_name)
        assert net["NetworkID"] == made["Id"]
        assert net["Gateway"] == made["IPAM"]["Config"][0]["Gateway"]
        assert ipaddress.ip_address(net["IPAddress"]) in \
            ipaddress.ip_network(made["IPAM"]["Config"][0]["Subnet"])
        assert name in net["DNSNames"] and "web" in net["Aliases"]
    assert "www" in networks[f"{p}_front"]["Aliases"]
    assert "www" not in networks[f"{p}_back"]["Aliases"]


def test_inspect_formats_names_prefixes_and_unknown_names(stack):
    p = stack.project
    stack.write(STACK)
    stack.pc("up", "-d")
    web, worker = f"{p}-web-1", f"{p}-worker-1"

    assert stack.pc("inspect", "-f", "{{.State.Status}}", web).stdout == "running\n"
    labels = json.loads(stack.pc("inspect", "-f", "{{json .Config.Labels}}", web).stdout)
    assert labels == shown(stack, "inspect", web)[0]["Config"]["Labels"]
    address = stack.pc("inspect", "-f", f"{{{{.NetworkSettings.Networks.{p}_front.IPAddress}}}}",
                       web).stdout.strip()
    assert address in addresses_inside(stack, "web")
    both = stack.pc("inspect", "--type", "container", "-f",
                    '{{.Name}} {{index .Config.Labels "com.docker.compose.service"}}',
                    web, worker).stdout
    assert both == f"/{web} web\n/{worker} worker\n"

    # An id prefix names the one container whose id starts with it (two that share one are
    # ambiguous: tests/e2e/test_container_ids.py).
    web_id = stack.pc("inspect", "-f", "{{.Id}}", web).stdout.strip()
    assert stack.pc("inspect", "-f", "{{.Name}}", web_id[:-3]).stdout == f"/{web}\n"

    missing = stack.pc("inspect", web, "nope", check=False)
    assert missing.returncode == 1
    assert [c["Name"] for c in json.loads(missing.stdout)] == [f"/{web}"]
    assert missing.stderr == "Error: No such object: nope\n"
    typed = stack.pc("inspect", "--type", "container", "nope", check=False)
    assert typed.returncode == 1 and typed.stderr == "Error: No such container: nope\n"

    # An init runs first; the command is the one the stack gave, as docker shows it.
    [running] = shown(stack, "inspect", worker)
    assert (running["Path"], running["Args"]) == ("sleep", ["100000"])
    assert running["HostConfig"]["Init"] is True and running["Config"]["Entrypoint"] is None

    # A stopped container: its exit as the machine recorded it.
    stack.pc("stop", "worker")
    [stopped] = shown(stack, "inspect", worker)
    assert stopped["State"]["Status"] == "exited" and stopped["State"]["Running"] is False
    assert stopped["State"]["Pid"] == 0 and stopped["State"]["ExitCode"] == 137
    assert stopped["State"]["FinishedAt"] != "0001-01-01T00:00:00Z"
    assert "Health" not in stopped["State"]

    # ps --format json carries every label of the container, as docker's does.
    rows = [json.loads(line) for line in stack.pc("ps", "--format", "json").stdout.splitlines()]
    [row] = [r for r in rows if r["Name"] == web]
    assert "team=blue" in row["Labels"].split(",")
