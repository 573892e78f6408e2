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
                  "build: {context: .}", "x-note: hello", "mem_limit: 1g",
                  "deploy: {resources: {limits: {memory: 1g}}}"):
        assert web_hash(tmp_path, extra) == base, extra


def test_what_must_recreate_changes_the_hash(tmp_path):
    base = web_hash(tmp_path)
    for extra in ("user: nobody", "ports: ['80']", "read_only: true", "shm_size: 1g",
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


def test_limits_applied_in_place_are_not_in_the_config_hash(tmp_path):
    """`runc update` takes them on a running container: the plan compares the limits."""
    text = "services:\n  web:\n    image: x\n    %s\n"
    small = load(tmp_path, text % "deploy: {resources: {limits: {memory: 64m, cpus: '0.5'}}}")
    big = load(tmp_path, text % "deploy: {resources: {limits: {memory: 1g, cpus: '2'}}}")
    legacy = load(tmp_path, text % "mem_limit: 1g\n    cpus: 2\n    pids_limit: 9\n    cpu_period: 5000")
    none = load(tmp_path, text % "user: root")
    user = load(tmp_path, text % "user: nobody")
    assert small.config_hash("web") == big.config_hash("web") == legacy.config_hash("web") \
        == load(tmp_path, "services:\n  web:\n    image: x\n").config_hash("web")
    assert user.config_hash("web") != none.config_hash("web")


def test_the_hash_of_a_service_with_limits_is_the_one_its_containers_were_labelled_with(tmp_path):
    """Containers made before the hash had one rule carry the hash of the service without
    its limits: a restarted agent must find them up to date, not recreate them all."""
    project = load(tmp_path, "services:\n  web:\n    image: x\n    mem_limit: 64m\n"
                             "    cpus: 0.5\n    command: [sleep, '1']\n")
    assert project.config_hash("web") == \
        "f9ee7c98c19bba64f719c32fc98070126c83c3c9573e7e7a5d8fc51a4e644b2f"
