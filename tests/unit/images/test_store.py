"""The content store keeps only complete, verified blobs and updates references atomically."""

import hashlib

import pytest

from runtime.images import store as store_mod


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_blob_is_stored_under_its_digest(tmp_path):
    s = store_mod.Store(tmp_path)
    d = s.write_blob(b"hello", digest(b"hello"))
    assert d == digest(b"hello")
    assert (tmp_path / "images/blobs/sha256" / d[7:]).read_bytes() == b"hello"
    assert s.has_blob(d)


def test_mismatching_blob_leaves_nothing(tmp_path):
    s = store_mod.Store(tmp_path)
    with pytest.raises(store_mod.DigestMismatch, match=digest(b"other")):
        s.write_blob(b"hello", digest(b"other"))
    assert s.blob_digests() == set()
    assert list(s.ingest_dir.iterdir()) == []


def test_a_writer_that_fails_halfway_leaves_nothing(tmp_path):
    s = store_mod.Store(tmp_path)
    with pytest.raises(RuntimeError):
        with s.writer(digest(b"abc")) as w:
            w.write(b"a")
            raise RuntimeError("connection lost")
    assert s.blob_digests() == set() and list(s.ingest_dir.iterdir()) == []


def test_refs_update_and_drop(tmp_path):
    s = store_mod.Store(tmp_path)
    m = digest(b"m")
    s.update_refs({"docker.io/library/a:1": store_mod.RefEntry(m), "docker.io/library/b:1": store_mod.RefEntry(m)})
    s.update_refs({"docker.io/library/a:1": None})
    assert s.read_refs() == {"docker.io/library/b:1": store_mod.RefEntry(m)}


def test_unknown_blob_and_bad_digest_are_errors(tmp_path):
    s = store_mod.Store(tmp_path)
    with pytest.raises(store_mod.StoreError, match="not in the store"):
        s.read_blob(digest(b"x"))
    with pytest.raises(store_mod.StoreError, match="not a sha256"):
        s.blob_path("sha256:../../etc/passwd")


def test_a_digest_finds_the_image_pulled_by_tag_on_a_registry_with_a_port(tmp_path):
    import json
    s = store_mod.Store(tmp_path)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    config_digest = s.write_blob(config.encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)}, "layers": []})
    m = s.write_blob(manifest.encode())
    s.update_refs({"127.0.0.1:5000/team/app:1": store_mod.RefEntry(m)})
    assert s.resolve(f"127.0.0.1:5000/team/app@{m}").id == config_digest
    assert s.resolve(f"127.0.0.1:5000/team/other@{m}") is None
    assert s.resolve(config_digest[7:19]).manifest_digest == m
