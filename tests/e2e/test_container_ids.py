"""Container IDs as docker's: a random 64-hex ID per container instance, apart from its name,
taken by every verb that names a container (name, full ID or unambiguous prefix)."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.e2e import conftest

STACK = """\
services:
  web:
    image: busybox
    stop_signal: SIGKILL  # sleep as PID 1 ignores SIGTERM: no grace period to wait out
    command: ["sh", "-c", "echo hello from web; exec sleep 1000"]
    environment:
      GREETING: {greeting}
  named:
    image: busybox
    stop_signal: SIGKILL
    hostname: chosen
    command: ["sleep", "1000"]
"""

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def stack(busybox_archive):
    made = conftest.make_stack(busybox_archive, "i" + uuid.uuid4().hex[:7])
    try:
        yield made
    finally:
        conftest.remove_stack(made)


def ps_json(stack) -> dict[str, dict]:
    out = stack.pc("ps", "-a", "--format", "json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {row["Name"]: row for row in rows}


def test_each_container_has_a_64_hex_id_that_only_a_change_renews(stack):
    p = stack.project
    stack.write(STACK.format(greeting="hi"))
    stack.pc("up", "-d")
    first = ps_json(stack)
    assert set(first) == {f"{p}-web-1", f"{p}-named-1"}
    ids = {name: row["ID"] for name, row in first.items()}
    assert all(HEX64.fullmatch(i) for i in ids.values()), ids
    assert len(set(ids.values())) == 2
    quiet = stack.pc("ps", "-q").stdout.split()
    assert sorted(quiet) == sorted(ids.values())
    # The table shows names, as docker compose's does.
    table = stack.pc("ps").stdout
    assert f"{p}-web-1" in table and ids[f"{p}-web-1"] not in table

    stack.pc("up", "-d")  # nothing changed: both kept
    assert {n: r["ID"] for n, r in ps_json(stack).items()} == ids
    stack.pc("restart", "web")  # a restart keeps the container, and so its ID
    assert ps_json(stack)[f"{p}-web-1"]["ID"] == ids[f"{p}-web-1"]

    stack.write(STACK.format(greeting="changed"))
    stack.pc("up", "-d")  # web changed: a new container, with a new ID; named kept
    after = {n: r["ID"] for n, r in ps_json(stack).items()}
    assert HEX64.fullmatch(after[f"{p}-web-1"])
    assert after[f"{p}-web-1"] != ids[f"{p}-web-1"]
    assert after[f"{p}-named-1"] == ids[f"{p}-named-1"]


def test_verbs_take_a_name_a_full_id_or_a_prefix_and_the_hostname_is_the_short_id(stack):
    p = stack.project
    stack.write(STACK.format(greeting="hi"))
    stack.pc("up", "-d")
    rows = ps_json(stack)
    web = rows[f"{p}-web-1"]["ID"]
    named = rows[f"{p}-named-1"]["ID"]
    for ref in (f"{p}-web-1", web, web[:12], web[:5]):
        shown = stack.pc("inspect", "-f", "{{.Id}} {{.Name}}", ref).stdout.strip()
        assert shown == f"{web} /{p}-web-1", ref
        assert stack.pc("exec", "-T", ref, "sh", "-c", "echo $GREETING").stdout == "hi\n", ref
        assert "hello from web" in stack.pc("logs", ref).stdout, ref
    # docker's default hostname is the short ID; `hostname:` wins over it.
    assert stack.pc("exec", "-T", "web", "hostname").stdout.strip() == web[:12]
    assert stack.pc("exec", "-T", named[:8], "hostname").stdout.strip() == "chosen"
    assert stack.pc("inspect", "-f", "{{.Config.Hostname}}", web).stdout.strip() == web[:12]
    # Names still resolve between containers (the DNS knows names, not IDs).
    stack.pc("exec", "-T", "named", "ping", "-c", "1", "-W", "5", f"{p}-web-1")
    # The lifecycle verbs and top take one as well, and act on that container only.
    assert f"Container {p}-web-1  Stopped" in stack.pc("stop", web[:10]).stderr
    states = {n: r["State"] for n, r in ps_json(stack).items()}
    assert states == {f"{p}-web-1": "exited", f"{p}-named-1": "running"}
    assert f"Container {p}-web-1  Started" in stack.pc("start", web).stderr
    assert stack.pc("top", web[:7]).stdout.splitlines()[0] == f"{p}-web-1"
    assert ps_json(stack)[f"{p}-web-1"]["ID"] == web  # a restart keeps the ID


def test_a_prefix_of_two_ids_is_refused_as_docker_refuses_it(stack):
    # 17 IDs: two of them start with the same hex digit, whatever the random draw.
    stack.write("services:\n  job:\n    image: busybox\n    network_mode: none\n"
                "    stop_signal: SIGKILL\n    command: [sleep, '1000']\n")
    stack.pc("up", "-d", "--scale", "job=17")
    ids = [row["ID"] for row in ps_json(stack).values()]
    assert len(ids) == 17
    digit = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) > 1)
    refused = stack.pc("inspect", digit, check=False)
    assert refused.returncode == 1
    assert f"multiple IDs found with provided prefix: {digit}" in refused.stderr
    refused = stack.pc("exec", "-T", digit, "true", check=False)
    assert refused.returncode == 1
    assert f"multiple IDs found with provided prefix: {digit}" in refused.stderr
    unknown = stack.pc("inspect", "f" * 64, check=False)
    assert unknown.returncode == 1 and "No such object" in unknown.stderr


OLD = """\
services:
  web:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
    environment:
      GREETING: {greeting}
  peer:
    image: busybox
    stop_signal: SIGKILL
    command: ["sleep", "1000"]
"""


def make_the_old_way(stack, service: str) -> str:
    """A container of `service` made as pcompose made them before IDs: runc's id is its name,
    and nothing beside it says otherwise. Made in this process, with the agent stopped, as
    that agent's own would have been."""
    import asyncio
    from unittest import mock

    from controllers import context, services
    from reconciler import spec
    from reconciler.agent import desired
    from runtime.oci import model

    project = spec.load([str(stack.dir / "compose.yaml")], project_name=stack.project)
    name = f"{stack.project}-{service}-1"
    ctx = context.make(stack.root, stack.run_dir, netns=f"/run/netns/{stack.host_netns}")
    with mock.patch.object(model, "new_id", lambda: name):
        made = asyncio.run(services.run_container(
            ctx, project.stack, stack.project, service,
            config_hash=desired.hashes(project)[service]))
    assert made == name
    ctx.layout.name_file(name).unlink()  # no name file then: the id was the name
    return name


def test_a_container_made_before_ids_is_adopted_and_kept_working(stack):
    p = stack.project
    stack.write(OLD.format(greeting="hi"))
    stack.pc("up", "-d", "peer")  # the network, and a container made with an ID
    stack.pc("agent", "--stop")
    old = make_the_old_way(stack, "web")
    stack.pc("up", "-d")  # a new agent: the old container is the one it wants, kept
    rows = ps_json(stack)
    assert rows[old]["ID"] == old and rows[old]["State"] == "running"
    assert HEX64.fullmatch(rows[f"{p}-peer-1"]["ID"])
    assert stack.pc("exec", "-T", old, "sh", "-c", "echo $GREETING").stdout == "hi\n"
    assert stack.pc("exec", "-T", "web", "hostname").stdout.strip() == old
    stack.pc("exec", "-T", "peer", "ping", "-c", "1", "-W", "5", old)  # its DNS name
    stack.pc("stop", "web")
    assert ps_json(stack)[old]["State"] == "exited"
    stack.pc("start", "web")
    assert ps_json(stack)[old]["State"] == "running"
    # A change recreates it as any container: the new one has an ID of its own.
    stack.write(OLD.format(greeting="changed"))
    stack.pc("up", "-d")
    new = ps_json(stack)[old]
    assert HEX64.fullmatch(new["ID"]) and new["State"] == "running"
    assert stack.pc("exec", "-T", "web", "sh", "-c", "echo $GREETING").stdout == "changed\n"
    stack.pc("down")
    assert conftest.leftovers(stack) == []


ORDERED = """\
services:
  db:
    image: busybox
    command: ["sh", "-c", "trap 'echo db >> /out/order; exit 0' TERM; while :; do sleep 0.1; done"]
    volumes: ["./out:/out"]
  web:
    image: busybox
    depends_on: [db]
    command: ["sh", "-c", "trap 'echo web >> /out/order; exit 0' TERM; while :; do sleep 0.1; done"]
    volumes: ["./out:/out"]
"""


def test_down_stops_dependents_first_with_docker_compose_lines(stack):
    p = stack.project
    (stack.dir / "out").mkdir()
    stack.write(ORDERED)
    stack.pc("up", "-d")
    lines = stack.pc("down").stderr.splitlines()
    # Each got its stop signal (TERM) and ended on it, web before the db it depends on.
    assert (stack.dir / "out" / "order").read_text() == "web\ndb\n"
    mine = [line.strip() for line in lines if line.strip().startswith("Container ")]
    for name in (f"{p}-web-1", f"{p}-db-1"):
        assert [w for w in ("Stopping", "Stopped", "Removing", "Removed")
                if f"Container {name}  {w}" in mine] == ["Stopping", "Stopped", "Removing",
                                                         "Removed"], lines
    assert mine.index(f"Container {p}-web-1  Stopped") < \
        mine.index(f"Container {p}-db-1  Stopping")
    assert conftest.leftovers(stack) == []


def test_system_prune_removes_a_stopped_container_and_its_project_stops_wanting_it(stack):
    p = stack.project
    stack.write(STACK.format(greeting="hi"))
    stack.pc("up", "-d")
    web = ps_json(stack)[f"{p}-web-1"]["ID"]
    stack.pc("stop", "web")
    pruned = stack.pc("system", "prune", "-f").stdout
    assert f"Deleted Containers:\n{web}\n" in pruned
    # The agent took it out of what the project wants: a pass of the project (the `up` of
    # another service converges it) does not make it again.
    stack.pc("up", "-d", "named")
    assert set(ps_json(stack)) == {f"{p}-named-1"}
    stack.pc("up", "-d")  # asked for again: a new container, with a new ID
    again = ps_json(stack)[f"{p}-web-1"]
    assert again["State"] == "running" and again["ID"] != web
