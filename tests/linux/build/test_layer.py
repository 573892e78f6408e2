"""An overlay upper dir becomes an OCI layer: whiteouts and opaque dirs as entries, no overlay xattrs."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

from runtime.build import layer, snapshot
from runtime.images import manifest, unpack


def _members(store, digest: str) -> dict[str, tarfile.TarInfo]:
    data = store.read_blob(digest)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_deleted_and_replaced_entries_become_whiteouts(where, base, store):
    with snapshot.Snapshot(where, (base,)) as snap:
        os.unlink(snap.merged / "etc" / "group")
        shutil.rmtree(snap.merged / "home")
        (snap.merged / "home").mkdir()
        (snap.merged / "home" / "fresh").write_text("new\n")
        (snap.merged / "new.txt").write_text("hello\n")
        committed = snap.commit()
    assert committed is not None
    made, chain = committed
    members = _members(store, made.digest)
    assert "etc/.wh.group" in members and members["etc/.wh.group"].size == 0
    assert "home/.wh..wh..opq" in members
    assert "home/fresh" in members and "new.txt" in members
    assert "home/app" not in members  # under the opaque dir only what the step made
    for m in members.values():
        assert not any(k.startswith("SCHILY.xattr.trusted.overlay.") for k in m.pax_headers), m.name
        assert m.uname == "" and m.gname == ""
    # the upper dir became the layer's dir as it was: whiteouts and opaque kept, nothing else of overlay's
    diff = store.layer_dir(chain) / "diff"
    assert os.stat(diff / "etc" / "group", follow_symlinks=False).st_rdev == 0
    assert os.getxattr(diff / "home", "trusted.overlay.opaque") == b"y"
    for path in [diff, *diff.rglob("*")]:
        names = os.listxattr(path, follow_symlinks=False)
        kept = [n for n in names if n.startswith("trusted.overlay.") and n != "trusted.overlay.opaque"]
        assert not kept, path


def test_the_same_upper_gives_the_same_digest(where, base, store, tmp_path):
    upper = tmp_path / "upper"
    (upper / "a" / "b").mkdir(parents=True)
    (upper / "a" / "b" / "f").write_bytes(b"x" * 5000)
    (upper / "a" / "link").symlink_to("b/f")
    os.link(upper / "a" / "b" / "f", upper / "a" / "hard")
    os.mknod(upper / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    os.setxattr(upper / "a", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "a", "user.keep", b"1")
    first, second = layer.write(store, upper), layer.write(store, upper)
    assert first == second
    members = _members(store, first.digest)
    linked = {(m.name, m.linkname) for m in members.values() if m.islnk()}
    assert linked in ({("a/hard", "a/b/f")}, {("a/b/f", "a/hard")})
    assert members["a/link"].issym() and members["a/link"].linkname == "b/f"
    assert ".wh.gone" in members and "a/.wh..wh..opq" in members
    assert members["a"].pax_headers.get("SCHILY.xattr.user.keep") == "1"
    chain = manifest.chain_id(base, first.diff_id)  # unpacked as a pulled layer would be
    unpack.ensure_layer(store, chain, first.diff_id, store.blob_path(first.digest))
    diff = store.layer_dir(chain) / "diff"
    assert (diff / "a" / "b" / "f").read_bytes() == b"x" * 5000
    assert os.getxattr(diff / "a", "trusted.overlay.opaque") == b"y"


def test_an_untouched_root_makes_no_layer(where, base):
    with snapshot.Snapshot(where, (base,)) as snap:
        assert snap.commit() is None
