"""Desired state carries each service's image ID as the image store resolves it now: a tag
that moved is a different ID at once, a missing image is no ID (nothing to compare)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from reconciler.agent import desired
from tests.unit.agent.test_desired import load, record


@dataclasses.dataclass
class Found:
    id: str


class FakeImages:
    """The two things the translator reads of an image store: refs.json and resolve()."""

    def __init__(self, folder: Path) -> None:
        self.refs_file = folder / "refs.json"
        self.tags: dict[str, str] = {}
        self.asked = 0

    def move(self, ref: str, image_id: str) -> None:
        self.tags[ref] = image_id
        # Replaced whole by a rename, as the store does: a new inode each time.
        fresh = self.refs_file.with_suffix(".tmp")
        fresh.write_text(json.dumps(self.tags))
        os.replace(fresh, self.refs_file)

    def resolve(self, ref: str) -> Found | None:
        self.asked += 1
        return Found(self.tags[ref]) if ref in self.tags else None


def test_a_moved_tag_is_a_new_image_id_and_a_missing_image_none(tmp_path: Path):
    rec = record(load(tmp_path))
    images = FakeImages(tmp_path)
    translator = desired.Translator(images)  # type: ignore[arg-type]
    assert {s.name: s.image_id for s in translator.desired(rec).services} == \
        {"db": None, "web": None}
    images.move("busybox", "sha256:aaa")
    assert {s.image_id for s in translator.desired(rec).services} == {"sha256:aaa"}
    asked = images.asked
    translator.desired(rec)
    assert images.asked == asked  # refs.json unchanged: each pass does not read the store
    images.move("busybox", "sha256:bbb")
    assert {s.image_id for s in translator.desired(rec).services} == {"sha256:bbb"}


def test_without_a_store_nothing_is_resolved(tmp_path: Path):
    state = desired.Translator().desired(record(load(tmp_path)))
    assert {s.image_id for s in state.services} == {None}
