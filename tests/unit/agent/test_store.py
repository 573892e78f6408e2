"""The SQLite desired-state store: generations, removal, options, two writers at once."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from reconciler.agent import store
from reconciler.plan import model


def record(name="shop", stack=None, **kw) -> store.ProjectRecord:
    return store.ProjectRecord(name, json.dumps(stack or {"services": {}}),
                               ("/srv/shop/compose.yaml",), "/srv/shop", **kw)


def test_put_counts_generations_and_reads_back(tmp_path: Path):
    st = store.Store(tmp_path)
    first = st.put(record())
    options = model.DiffOptions(remove_orphans=True, scale=(("web", 3),))
    second = st.put(record(options=options))
    assert (first.generation, second.generation) == (1, 2)
    again = store.Store(tmp_path).get("shop")
    assert again.options == options
    assert again.config_files == ("/srv/shop/compose.yaml",)
    assert [r.name for r in st.list()] == ["shop"]
    assert stat.S_IMODE(st.path.stat().st_mode) == 0o600


def test_applied_generation_never_goes_back_and_survives_a_new_put(tmp_path: Path):
    st = store.Store(tmp_path)
    st.put(record())
    st.set_applied("shop", 1)
    st.set_applied("shop", 0)
    assert st.get("shop").applied_generation == 1
    assert st.put(record()).applied_generation == 1


def test_removal_keeps_the_row_until_deleted(tmp_path: Path):
    st = store.Store(tmp_path)
    st.put(record())
    removing = st.mark_removing("shop", remove_volumes=True)
    assert removing.status == store.REMOVING and removing.generation == 2
    assert removing.options.remove_volumes and removing.options.remove_orphans
    st.set_status("shop", "converged")  # a late status write does not undo the removal
    assert st.get("shop").status == store.REMOVING
    assert st.delete("shop") and st.get("shop") is None
    assert st.mark_removing("shop") is None and not st.delete("shop")


def test_bad_options_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown key.*detach"):
        store.options_from_json({"detach": True})
    with pytest.raises(ValueError, match="options.scale"):
        store.options_from_json({"scale": {"web": -1}})
    with pytest.raises(ValueError, match="options.force_recreate: expected true or false"):
        store.options_from_json({"force_recreate": "yes"})


def _writer(path: str, name: str, count: int) -> None:
    st = store.Store(Path(path))
    for n in range(count):
        st.put(record(name, {"n": n}))


def test_two_writers_in_two_processes_lose_no_generation(tmp_path: Path):
    store.Store(tmp_path).close()
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_writer, args=(str(tmp_path), "shop", 50)) for _ in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(30)
    assert [w.exitcode for w in writers] == [0, 0]
    final = store.Store(tmp_path).get("shop")
    assert final.generation == 100
    assert json.loads(final.stack) == {"n": 49}
