"""The config hash changes exactly when a container must be recreated."""

from __future__ import annotations

from tests.unit.spec.helpers import load

BASE = """
services:
  web:
    image: busybox
    command: [sleep, "1000"]
    environment: {{A: "1"}}
    secrets: [token]
    configs: [conf]
    depends_on: [db]
    {extra}
  db: {{image: busybox}}
secrets:
  token: {{file: ./token.txt}}
configs:
  conf: {{content: "hello"}}
"""


def web_hash(tmp_path, extra: str = "", environ=None) -> str:
    (tmp_path / "token.txt").write_text(getattr(web_hash, "token", "s3cret"))
    return load(tmp_path, BASE.format(extra=extra), environ=environ).config_hash("web")


def test_hash_is_stable_across_loads(tmp_path):
    assert web_hash(tmp_path) == web_hash(tmp_path)
    assert len(web_hash(tmp_path)) == 64


def test_what_must_not_recreate_leaves_the_hash_alone(tmp_path):
    base = web_hash(tmp_path)
    for extra in ("scale: 3", "deploy: {replicas: 2}", "profiles: [x, y]", "pull_policy: always",
                  "build: {context: .}", "x-note: hello"):
        assert web_hash(tmp_path, extra) == base, extra


def test_what_must_recreate_changes_the_hash(tmp_path):
    base = web_hash(tmp_path)
    for extra in ("user: nobody", "ports: ['80']", "deploy: {resources: {limits: {memory: 1g}}}",
                  "read_only: true",
                  "labels: {a: b}"):
        assert web_hash(tmp_path, extra) != base, extra


def test_secret_file_contents_are_part_of_the_hash(tmp_path):
    base = web_hash(tmp_path)
    web_hash.token = "changed"
    try:
        assert web_hash(tmp_path) != base
    finally:
        del web_hash.token


def test_env_file_contents_are_part_of_the_hash(tmp_path):
    (tmp_path / "app.env").write_text("X=1\n")
    first = web_hash(tmp_path, "env_file: app.env")
    (tmp_path / "app.env").write_text("X=2\n")
    assert web_hash(tmp_path, "env_file: app.env") != first


def test_networks_joined_are_part_of_the_hash(tmp_path):
    text = "services:\n  web: {image: x, networks: [%s]}\nnetworks: {a: {}, b: {}}\n"
    assert load(tmp_path, text % "a").config_hash("web") != load(tmp_path, text % "b").config_hash("web")


def test_resource_limits_change_the_config_hash_but_not_the_recreate_hash(tmp_path):
    text = "services:\n  web:\n    image: x\n    %s\n"
    small = load(tmp_path, text % "deploy: {resources: {limits: {memory: 64m, cpus: '0.5'}}}")
    big = load(tmp_path, text % "deploy: {resources: {limits: {memory: 1g, cpus: '2'}}}")
    legacy = load(tmp_path, text % "mem_limit: 1g")
    user = load(tmp_path, text % "user: nobody")
    assert small.config_hash("web") != big.config_hash("web")
    assert small.recreate_hash("web") == big.recreate_hash("web") == legacy.recreate_hash("web")
    assert user.recreate_hash("web") != small.recreate_hash("web")
