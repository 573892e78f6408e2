"""Manifests, indexes and configs: platform choice, chain ids, and refusal of what cannot be used."""

import json

import pytest

from runtime.images import manifest

D = ["sha256:" + c * 64 for c in "0123456789abcdef"]


def index(*platforms):
    return json.dumps({"schemaVersion": 2, "mediaType": manifest.OCI_INDEX, "manifests": [
        {"mediaType": manifest.OCI_MANIFEST, "digest": D[i], "size": 1,
         "platform": dict(zip(("os", "architecture", "variant"), p.split("/")))}
        for i, p in enumerate(platforms)]}).encode()


def test_choose_picks_the_host_platform_from_an_index():
    entries = manifest.parse_index(index("linux/arm64/v8", "linux/amd64", "windows/amd64"))
    assert manifest.choose(entries, manifest.Platform("linux", "amd64")).digest == D[1]
    assert manifest.choose(entries, manifest.Platform("linux", "arm64", "v8")).digest == D[0]


def test_choose_prefers_the_exact_variant_then_any():
    entries = manifest.parse_index(index("linux/arm/v6", "linux/arm/v7"))
    assert manifest.choose(entries, manifest.Platform("linux", "arm", "v7")).digest == D[1]
    assert manifest.choose(entries, manifest.Platform("linux", "arm", "v8")).digest == D[0]


def test_choose_names_what_was_offered_when_nothing_fits():
    entries = manifest.parse_index(index("linux/arm64", "linux/s390x"))
    with pytest.raises(manifest.ManifestError, match=r"linux/amd64.*linux/arm64, linux/s390x"):
        manifest.choose(entries, manifest.Platform("linux", "amd64"))


def test_chain_ids_follow_the_oci_rule():
    a, b, c = D[1], D[2], D[3]
    chain = manifest.chain_ids((a, b, c))
    assert chain[0] == a
    assert chain[1] == manifest.digest_of(f"{a} {b}".encode())
    assert chain[2] == manifest.digest_of(f"{chain[1]} {c}".encode())


def test_config_fields_reach_the_record():
    cfg = manifest.parse_config(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/init"], "Cmd": ["run"], "Env": ["A=1"], "WorkingDir": "/srv",
                   "User": "app", "ExposedPorts": {"80/tcp": {}}, "Labels": {"k": "v"}, "StopSignal": "SIGQUIT"},
        "rootfs": {"type": "layers", "diff_ids": [D[1]]}}).encode())
    assert cfg.entrypoint == ("/init",) and cfg.cmd == ("run",) and cfg.working_dir == "/srv"
    assert cfg.exposed_ports == ("80/tcp",) and cfg.labels == (("k", "v"),) and cfg.diff_ids == (D[1],)


def test_schema1_and_unknown_layer_types_are_refused():
    with pytest.raises(manifest.ManifestError, match="schema 1"):
        manifest.media_type_of(json.dumps({"schemaVersion": 1, "fsLayers": []}).encode())
    doc = {"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST,
           "config": {"mediaType": manifest.OCI_CONFIG, "digest": D[1], "size": 2},
           "layers": [{"mediaType": "application/x-mystery", "digest": D[2], "size": 3}]}
    with pytest.raises(manifest.ManifestError, match=r"layers\[0\].*x-mystery"):
        manifest.parse_manifest(json.dumps(doc).encode())


def test_non_sha256_digest_is_refused():
    doc = {"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST,
           "config": {"mediaType": manifest.OCI_CONFIG, "digest": "sha512:" + "0" * 128, "size": 2}, "layers": []}
    with pytest.raises(manifest.ManifestError, match="manifest.config.*sha512"):
        manifest.parse_manifest(json.dumps(doc).encode())


def test_host_platform_is_linux():
    assert manifest.host().os == "linux"
    assert manifest.parse_platform("linux/arm64/v8") == manifest.Platform("linux", "arm64", "v8")
    with pytest.raises(manifest.ManifestError):
        manifest.parse_platform("linux")


def config_with(**fields) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": fields,
                       "rootfs": {"type": "layers", "diff_ids": [D[1]]}}).encode()


def test_a_string_cmd_or_entrypoint_is_one_word_as_docker_reads_it():
    cfg = manifest.parse_config(config_with(Cmd="echo hi", Entrypoint="/init"))
    assert cfg.cmd == ("echo hi",) and cfg.entrypoint == ("/init",)


def test_null_is_absent_as_in_go():
    cfg = manifest.parse_config(json.dumps({"config": None, "rootfs": {"diff_ids": None}, "os": None}).encode())
    assert cfg == manifest.ImageConfig()
    cfg = manifest.parse_config(config_with(Env=None, Cmd=None, Labels=None, ExposedPorts=None, Healthcheck=None))
    assert cfg.env == () and cfg.cmd == () and cfg.labels == () and cfg.healthcheck_test == ()


@pytest.mark.parametrize("fields, fault", [
    ({"Env": "A=1"}, "config.config.Env: expected a list of strings, found a string"),
    ({"Env": ["A=1", 2]}, r"Env\[1\]: expected a string, found a number"),
    ({"Cmd": {"a": 1}}, "Cmd: expected a list of strings, found an object"),
    ({"Entrypoint": True}, "Entrypoint: expected a list of strings, found a boolean"),
    ({"WorkingDir": 1}, "WorkingDir: expected a string"),
    ({"ExposedPorts": ["80"]}, "ExposedPorts: expected an object, found a list"),
    ({"Labels": {"a": None}}, r"Labels\['a'\]: expected a string, found null"),
    ({"Healthcheck": {"Test": "CMD true"}}, "Healthcheck.Test: expected a list"),
])
def test_config_fields_of_the_wrong_type_are_named(fields, fault):
    with pytest.raises(manifest.ManifestError, match=fault):
        manifest.parse_config(config_with(**fields))


@pytest.mark.parametrize("doc, fault", [
    (42, "not a JSON object"),
    ({"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST, "config": [], "layers": []},
     "manifest.config: expected a descriptor object"),
    ({"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST, "config": {"digest": D[1], "size": True},
      "layers": []}, "manifest.config.size: expected a size"),
    ({"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST, "config": {"digest": D[1], "size": -1},
      "layers": []}, "manifest.config.size: expected a size"),
    ({"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST, "config": {"digest": D[1]}, "layers": "x"},
     "manifest.layers: expected a list"),
    ({"schemaVersion": 2, "mediaType": ["x"], "config": {"digest": D[1]}}, "mediaType: expected a string"),
    ({"schemaVersion": 2, "mediaType": manifest.OCI_INDEX, "manifests": []}, "found an index"),
])
def test_manifests_of_the_wrong_shape_are_refused(doc, fault):
    with pytest.raises(manifest.ManifestError, match=fault):
        manifest.parse_manifest(json.dumps(doc).encode())


@pytest.mark.parametrize("doc, fault", [
    ([], "index is not a JSON object"),
    ({"manifests": {}}, "index.manifests: expected a list"),
    ({"manifests": [{"digest": D[1], "platform": "linux/amd64"}]}, "platform: expected an object"),
    ({"manifests": [{"digest": D[1], "platform": {"os": "linux", "architecture": 64}}]},
     "platform.architecture: expected a string"),
    ({"manifests": [{"size": 1}]}, r"index.manifests\[0\]: has no digest"),
])
def test_indexes_of_the_wrong_shape_are_refused(doc, fault):
    with pytest.raises(manifest.ManifestError, match=fault):
        manifest.parse_index(json.dumps(doc).encode())
