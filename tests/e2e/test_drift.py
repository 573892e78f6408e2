"""Drift made by hand on a running stack comes back by itself: each test breaks one thing the
agent made (a bridge, a veth, the nft table or one of its rules, a cgroup limit, the DNS
sockets), waits for the agent to put it back, and checks that the stack serves again and
that no container was restarted for it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from controllers import context
from runtime.cgroups import drivers
from runtime.net import names, records
from runtime.oci import observe
from tests.support import oci_image
from tests.support.waiting import wait_for

REPAIR_PATIENCE = 30.0  # the agent repairs within ~2 s; this only bounds a failing test

STACK = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /srv; echo served > /srv/index.html; exec httpd -f -p 80 -h /srv"]
    stop_signal: SIGKILL
    ports: ["8080:80"]
    mem_limit: 64m
    pids_limit: 50
  other:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
"""


def up(stack) -> dict[str, tuple[int, str]]:
    stack.write(STACK)
    stack.pc("up", "-d")
    wait_for(lambda: page(stack) == "served\n", 30, "the page through the published port")
    return starts(stack)


def starts(stack) -> dict[str, tuple[int, str]]:
    """Each container's PID and start time, as `inspect` shows them: a restart changes both."""
    rows = [json.loads(line) for line in stack.pc("ps", "-a", "--format", "json").stdout.splitlines()
            if line.strip()]
    found = json.loads(stack.pc("inspect", *[r["Name"] for r in rows]).stdout)
    return {c["Name"].lstrip("/"): (c["State"]["Pid"], c["State"]["StartedAt"]) for c in found}


def in_host(stack, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", stack.host_netns, *argv], capture_output=True,
                          text=True, timeout=20, check=check)


def page(stack) -> str:
    # The host's busybox wget crashes with -T: timeout(1) bounds a dead port instead.
    return in_host(stack, "timeout", "3", "busybox", "wget", "-qO-", "http://127.0.0.1:8080/",
                   check=False).stdout


def link(stack, name: str) -> dict | None:
    done = subprocess.run(["ip", "-n", stack.host_netns, "-j", "-d", "addr", "show", "dev", name],
                          capture_output=True, text=True, check=False)
    return json.loads(done.stdout)[0] if done.returncode == 0 else None


def ctx(stack) -> context.Context:
    return context.make(stack.root, stack.run_dir)


def bridge_of(stack) -> str:
    return names.bridge(ctx(stack).agent, f"{stack.project}_default")


def veth_of(stack, name: str) -> str:
    return records.attachments(stack.root)[name].endpoints[0].host_ifname


def table_of(stack) -> str:
    return names.table(ctx(stack).agent)


def gateway_mac_cached(stack, gateway: str) -> str:
    """The MAC `other`'s ARP cache holds for its gateway, after a DNS query made it ask."""
    stack.pc("exec", "-T", "other", "timeout", "3", "nslookup", "web", gateway, check=False)
    arp = stack.pc("exec", "-T", "other", "cat", "/proc/net/arp").stdout
    return next((row.split()[3] for row in arp.splitlines()[1:] if row.split()[0] == gateway), "")


def served_again_and_nothing_restarted(stack, before: dict) -> None:
    wait_for(lambda: page(stack) == "served\n", REPAIR_PATIENCE, "the page served again")
    assert starts(stack) == before
    assert stack.pc("ps", "--services").stdout == "other\nweb\n"


def test_a_deleted_bridge_comes_back_with_its_address_mtu_and_the_veths(stack):
    before = up(stack)
    bridge = bridge_of(stack)
    gateway = records.networks(stack.root)[f"{stack.project}_default"].gateway
    veths = [veth_of(stack, f"{stack.project}-{s}-1") for s in ("web", "other")]
    mac = (link(stack, bridge) or {})["address"]
    assert gateway_mac_cached(stack, gateway) == mac
    subprocess.run(["ip", "-n", stack.host_netns, "link", "del", bridge], check=True)

    def back():
        found = link(stack, bridge)
        return found and gateway in [a["local"] for a in found["addr_info"]] and \
            found["mtu"] == 1500 and all((link(stack, v) or {}).get("master") == bridge
                                         for v in veths)
    wait_for(back, REPAIR_PATIENCE, "the bridge with its gateway, MTU and both veths")
    # Made again with its MAC: what the containers' ARP caches hold for their gateway is right.
    assert (link(stack, bridge) or {})["address"] == mac
    served_again_and_nothing_restarted(stack, before)
    assert gateway_mac_cached(stack, gateway) == mac
    # The containers reach each other again through it.
    assert stack.pc("exec", "-T", "other", "timeout", "3", "wget", "-qO-", "http://web/").stdout == \
        "served\n"


def test_a_deleted_veth_is_made_again_with_the_same_address(stack):
    before = up(stack)
    name = f"{stack.project}-web-1"
    address = records.attachments(stack.root)[name].endpoints[0].ipv4
    veth = veth_of(stack, name)
    subprocess.run(["ip", "-n", stack.host_netns, "link", "del", veth], check=True)
    wait_for(lambda: (link(stack, veth) or {}).get("master") == bridge_of(stack),
             REPAIR_PATIENCE, "the veth back on its bridge")
    served_again_and_nothing_restarted(stack, before)
    inside = stack.pc("exec", "-T", "web", "ip", "-4", "addr", "show", "eth0").stdout
    assert f"inet {address}/" in inside


def test_the_deleted_nft_table_is_applied_again(stack):
    before = up(stack)
    in_host(stack, "nft", "delete", "table", "ip", table_of(stack))
    assert page(stack) != "served\n"
    served_again_and_nothing_restarted(stack, before)


def test_a_flushed_chain_of_the_table_is_applied_again(stack):
    before = up(stack)
    in_host(stack, "nft", "flush", "chain", "ip", table_of(stack), "publish")
    assert page(stack) != "served\n"
    served_again_and_nothing_restarted(stack, before)


def test_a_removed_published_port_comes_back(stack):
    before = up(stack)
    in_host(stack, "nft", "delete", "element", "ip", table_of(stack), "publish_tcp", "{ 8080 }")
    assert page(stack) != "served\n"
    served_again_and_nothing_restarted(stack, before)


def _limit_file(stack, name: str, v1_file: str, v2_file: str) -> Path:
    """The control file of a container's limit, where the cgroup driver the runtime detects
    keeps it (a v2 machine reads v2's files, never a v1 path that is not there)."""
    found = asyncio.run(observe.list_containers(ctx(stack).layout, stack.project))
    path = next(o.cgroups_path for o in found if o.service == name)
    driver = drivers.detect()
    if driver.version == 1:
        controller = v1_file.split(".")[0]
        return driver.dir(controller, path) / v1_file  # type: ignore[attr-defined]
    return driver.dir(path) / v2_file  # type: ignore[attr-defined]


def test_limits_changed_by_hand_are_written_back(stack):
    before = up(stack)
    memory = _limit_file(stack, "web", "memory.limit_in_bytes", "memory.max")
    pids = _limit_file(stack, "web", "pids.max", "pids.max")
    assert int(memory.read_text()) == 64 << 20 and pids.read_text().strip() == "50"
    memory.write_text(str(128 << 20))
    pids.write_text("max")
    wait_for(lambda: memory.read_text().strip() == str(64 << 20) and
             pids.read_text().strip() == "50", REPAIR_PATIENCE, "the limits written back")
    served_again_and_nothing_restarted(stack, before)


def test_dns_sockets_destroyed_by_the_kernel_are_opened_again(stack):
    before = up(stack)
    gateway = records.networks(stack.root)[f"{stack.project}_default"].gateway

    def listening() -> bool:
        shown = in_host(stack, "ss", "-Htln", "src", gateway, "sport", "=", "53").stdout
        return bool(shown.strip())
    assert listening()
    in_host(stack, "ss", "-K", "-a", "src", gateway, "sport", "=", "53")
    assert not listening()
    wait_for(listening, REPAIR_PATIENCE, "the DNS server listening again")
    resolved = stack.pc("exec", "-T", "other", "nslookup", "web").stdout
    address = records.attachments(stack.root)[f"{stack.project}-web-1"].endpoints[0].ipv4
    assert address in resolved
    served_again_and_nothing_restarted(stack, before)


def test_a_moved_tag_recreates_its_containers_on_the_next_up_only(stack):
    before = up(stack)
    rootfs = stack.dir / "rootfs.tar"
    rootfs.write_bytes(oci_image.busybox_layer().tar)
    stack.pc("image", "import", "-c", "ENV MOVED=1", str(rootfs), "busybox:latest")
    moved = stack.pc("image", "inspect", "-f", "{{.Id}}", "busybox:latest").stdout.strip()
    # A pass of the agent's own (a drift repair), not a submission: the tag moved, and the
    # containers stay as they are, as docker compose leaves them until `up`.
    veth = veth_of(stack, f"{stack.project}-other-1")
    subprocess.run(["ip", "-n", stack.host_netns, "link", "del", veth], check=True)
    wait_for(lambda: link(stack, veth), REPAIR_PATIENCE, "the veth repaired by a pass")
    served_again_and_nothing_restarted(stack, before)
    stack.pc("up", "-d", "--no-recreate")
    assert starts(stack) == before
    stack.pc("up", "-d")
    after = starts(stack)
    assert set(after) == set(before) and all(after[n] != before[n] for n in before)
    images = {c["Name"].lstrip("/"): c["Image"]
              for c in json.loads(stack.pc("inspect", *sorted(after)).stdout)}
    assert set(images.values()) == {moved}
