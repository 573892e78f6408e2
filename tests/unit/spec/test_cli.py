"""`pcompose config` and `pcompose version` as a user runs them."""

from __future__ import annotations

import json

import yaml

from reconciler.cli import main
from tests.unit.spec.helpers import write

STACK = """
name: shop
services:
  web:
    image: busybox
    ports: ["8080:80"]
    environment: ["MODE=${MODE:-prod}"]
    depends_on: [db]
  db:
    image: postgres
    volumes: [data:/var/lib/postgresql/data]
  debug:
    image: busybox
    profiles: [dev]
volumes:
  data: {}
"""


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_config_prints_the_normalized_stack(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MODE", raising=False)
    path = write(tmp_path, "stack.yaml", STACK)
    code, out, err = run(capsys, "-f", str(path), "config")
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert list(doc)[:2] == ["name", "services"] and doc["name"] == "shop"
    assert list(doc["services"]) == ["db", "web"]
    assert doc["services"]["web"]["ports"] == [
        {"mode": "ingress", "protocol": "tcp", "published": "8080", "target": 80}]
    assert doc["services"]["web"]["environment"] == {"MODE": "prod"}
    assert doc["services"]["web"]["depends_on"]["db"]["condition"] == "service_started"
    assert doc["networks"]["default"]["name"] == "shop_default"
    assert doc["volumes"]["data"]["name"] == "shop_data"


def test_config_json_and_lists(tmp_path, capsys):
    path = write(tmp_path, "stack.yaml", STACK)
    code, out, _ = run(capsys, "-f", str(path), "config", "--format", "json")
    assert code == 0 and json.loads(out)["services"]["db"]["image"] == "postgres"
    assert run(capsys, "-f", str(path), "config", "--services")[1] == "db\nweb\n"
    assert run(capsys, "-f", str(path), "--profile", "dev", "config", "--services")[1] == "db\ndebug\nweb\n"
    assert run(capsys, "-f", str(path), "config", "--volumes")[1] == "data\n"
    assert run(capsys, "-f", str(path), "config", "--networks")[1] == "default\n"
    assert run(capsys, "-f", str(path), "config", "--profiles")[1] == "dev\n"
    code, out, _ = run(capsys, "-f", str(path), "config", "--hash", "*")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["db", "web"]
    assert all(len(line.split()[1]) == 64 for line in lines)
    assert run(capsys, "-f", str(path), "config", "--hash", "web")[1] == lines[1] + "\n"
    assert run(capsys, "-f", str(path), "config", "-q")[1] == ""


def test_config_no_interpolate_keeps_templates(tmp_path, capsys):
    path = write(tmp_path, "stack.yaml", STACK)
    code, out, _ = run(capsys, "-f", str(path), "config", "--no-interpolate")
    assert code == 0
    assert yaml.safe_load(out)["services"]["web"]["environment"] == {"MODE": "${MODE:-prod}"}


def test_config_output_file(tmp_path, capsys):
    path = write(tmp_path, "stack.yaml", STACK)
    target = tmp_path / "out.yaml"
    assert run(capsys, "-f", str(path), "config", "-o", str(target))[0] == 0
    assert yaml.safe_load(target.read_text())["name"] == "shop"


def test_bad_file_is_one_line_with_place_and_exit_1(tmp_path, capsys):
    path = write(tmp_path, "stack.yaml", """
        services:
          web:
            image: busybox
            ports:
              - "80:80:80"
        """)
    code, out, err = run(capsys, "-f", str(path), "config")
    assert code == 1 and out == ""
    assert err == (f"pcompose: error: {path}:5:9: services.web.ports[0]: \"80:80:80\" is not a valid "
                   "port mapping ('80' is not an IP address)\n")
    assert "Traceback" not in err


def test_missing_required_variable_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    path = write(tmp_path, "stack.yaml",
                 "services:\n  db:\n    image: x\n    environment:\n"
                 "      PW: ${DB_PASSWORD:?set DB_PASSWORD in .env}\n")
    code, _, err = run(capsys, "-f", str(path), "config", "-q")
    assert code == 1
    assert f"{path}:5:7: services.db.environment.PW: required variable DB_PASSWORD is missing " \
           "a value: set DB_PASSWORD in .env" in err


def test_warnings_go_to_stderr(tmp_path, capsys):
    path = write(tmp_path, "stack.yaml", 'version: "3"\nservices:\n  web: {image: x, group_add: [audio]}\n')
    code, out, err = run(capsys, "-f", str(path), "config", "-q")
    assert code == 0 and out == ""
    assert f"WARN[0000] {path}:1:1: version: the attribute \"version\" is obsolete" in err
    assert f"WARN[0000] {path}:3:19: services.web.group_add: parsed but not applied by pcompose yet" in err


def test_version(capsys):
    code, out, _ = run(capsys, "version")
    assert code == 0 and out.startswith("pcompose version ")
    code, out, _ = run(capsys, "version", "--format", "json")
    assert json.loads(out)["version"]


def test_config_of_named_services_includes_their_dependencies(tmp_path, capsys):
    path = write(tmp_path, "stack.yaml", STACK)
    code, out, _ = run(capsys, "-f", str(path), "config", "web")
    assert code == 0 and list(yaml.safe_load(out)["services"]) == ["db", "web"]
    assert run(capsys, "-f", str(path), "config", "--services", "db")[1] == "db\n"
    code, _, err = run(capsys, "-f", str(path), "config", "nope")
    assert code == 1 and "no such service: nope" in err


def test_compose_file_variable_and_env_file_option(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, "stack.yaml", "services:\n  web: {image: 'busybox:${TAG}'}\n")
    env = write(tmp_path, "prod.env", "TAG=1.36\n")
    monkeypatch.setenv("COMPOSE_FILE", str(path))
    monkeypatch.delenv("TAG", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "--env-file", str(env), "config", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["services"]["web"]["image"] == "busybox:1.36"


def test_config_images_and_a_named_service_outside_the_active_profiles(tmp_path, capsys):
    path = write(tmp_path, "stack.yaml", STACK.replace("\nvolumes:", "\n  built:\n    build: .\nvolumes:"))
    assert run(capsys, "-f", str(path), "config", "--images")[1] == \
        "shop-built\npostgres\nbusybox\n"
    code, out, _ = run(capsys, "-f", str(path), "config", "debug")
    assert code == 0 and list(yaml.safe_load(out)["services"]) == ["debug"]
