"""Credentials in docker's config.json and the challenges registries answer with."""

import base64
import json

import pytest

from runtime.images import auth


def test_bearer_challenge_params_are_read():
    c = auth.parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                             'scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.get("realm") == "https://auth.example/token"
    assert c.get("service") == "registry.example"
    assert c.get("scope") == "repository:library/busybox:pull"


def test_basic_challenge():
    c = auth.parse_challenge('Basic realm="pcompose-test"')
    assert (c.scheme, c.get("realm")) == ("basic", "pcompose-test")


def test_credentials_round_trip_and_keep_other_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"psFormat": "table", "auths": {"other:5000": {"auth": "eDp5"}}}))
    auth.save("reg.example:5000", auth.Credentials("alice", "s3:cret"), path)
    assert auth.load("reg.example:5000", path) == auth.Credentials("alice", "s3:cret")
    doc = json.loads(path.read_text())
    assert doc["psFormat"] == "table" and "other:5000" in doc["auths"]
    assert base64.b64decode(doc["auths"]["reg.example:5000"]["auth"]) == b"alice:s3:cret"
    assert path.stat().st_mode & 0o077 == 0
    assert auth.remove("reg.example:5000", path) is True
    assert auth.load("reg.example:5000", path) is None
    assert auth.remove("reg.example:5000", path) is False


def test_docker_hub_credentials_live_under_the_index_address(tmp_path):
    path = tmp_path / "config.json"
    token = base64.b64encode(b"bob:pw").decode()
    path.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": token}}}))
    assert auth.load("docker.io", path) == auth.Credentials("bob", "pw")
    assert auth.load("ghcr.io", path) is None


def test_docker_config_env_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert auth.config_path() == tmp_path / "config.json"


def test_broken_config_is_a_clear_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(auth.AuthError, match=str(path)):
        auth.load("x", path)


async def test_credentials_never_go_to_a_plain_http_token_server_elsewhere():
    import aiohttp

    from runtime.images import reference, registry
    client = registry.Client(aiohttp.ClientSession(), reference.parse("127.0.0.1:5000/app"),
                             auth.Credentials("u", "p"), registry.Options())
    try:
        challenge = auth.parse_challenge('Bearer realm="http://auth.example/token",service="x"')
        with pytest.raises(registry.RegistryError, match="not HTTPS"):
            await client._answer(challenge, "manifest")
    finally:
        await client.session.close()
