"""A container's id apart from its name: runc, conmon and the state dirs know the id, the name
travels beside it, and the hostname is the short id unless one is given."""

from __future__ import annotations

import re

from runtime.oci import lifecycle, logs, model, observe, runc


def _conmon_argv(lay, cid: str) -> list[str]:
    pid = lifecycle.monitor_pid(lay, cid)
    assert pid is not None
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")]


async def test_an_id_keys_runc_conmon_and_the_state_dirs_and_the_name_stays_the_name(lay, make):
    cid = model.new_id()
    assert re.fullmatch(r"[0-9a-f]{64}", cid) and cid != model.new_id()
    config = make(command=("sh", "-c", "hostname; exec sleep 1000"), id=cid)
    await lifecycle.run(lay, config)
    assert [s["id"] for s in await runc.list_all(lay.runc)] == [cid]
    argv = _conmon_argv(lay, cid)
    assert argv[argv.index("-c") + 1] == cid and argv[argv.index("-u") + 1] == cid
    assert argv[argv.index("-n") + 1] == config.name
    assert lay.container_dir(cid).is_dir() and not lay.container_dir(config.name).exists()
    assert lifecycle.name_of(lay, cid) == config.name
    assert lifecycle.ids_named(lay, config.name) == [cid]
    found = await observe.named(lay, config.name)
    assert found is not None and (found.id, found.name) == (cid, config.name)
    assert await observe.named(lay, "nosuch") is None
    assert [(o.id, o.name) for o in await observe.list_containers(lay)] == [(cid, config.name)]
    assert lay.cgroups_path(config.identity.project, cid) == found.cgroups_path

    async for line in logs.follow(lay.log_path(cid), done=lambda: True):
        assert line.text == cid[:12]  # docker's default hostname: the short id
        break
    assert (lay.etc_dir(cid) / "hostname").read_text() == cid[:12] + "\n"

    await lifecycle.remove(lay, cid)
    assert not lay.container_dir(cid).exists() and not lay.exit_file(cid).exists()
    assert await observe.named(lay, config.name) is None


async def test_a_given_hostname_wins_and_a_container_keyed_by_its_name_keeps_it(lay, make):
    named = make(service="named", hostname="chosen", id=model.new_id(), command=("true",))
    plain = make(service="plain", command=("true",))  # no id: keyed by its name, as before
    for config in (named, plain):
        await lifecycle.create(lay, config)
    assert (lay.etc_dir(named.id) / "hostname").read_text() == "chosen\n"
    assert (lay.etc_dir(plain.name) / "hostname").read_text() == plain.name + "\n"
    assert lifecycle.name_of(lay, plain.name) == plain.name
    lay.name_file(plain.name).unlink()  # as a container made before ids: no name file
    assert lifecycle.name_of(lay, plain.name) == plain.name
    found = await observe.named(lay, plain.name)
    assert found is not None and found.id == found.name == plain.name
