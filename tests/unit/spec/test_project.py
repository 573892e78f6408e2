"""Files, names, merge rules, extends, include, profiles and the semantic checks."""

from __future__ import annotations

import pytest

from reconciler import spec
from reconciler.spec import features
from tests.unit.spec.helpers import load, write


def test_later_file_wins_and_sequences_merge_per_the_rules(tmp_path):
    base = write(tmp_path, "compose.yaml", """
        services:
          web:
            image: busybox:1
            command: [sh, -c, "a"]
            ports: ["8080:80", "9000:90"]
            volumes: ["./a:/data", "./b:/other"]
            environment: {A: "1", B: "1"}
            cap_add: [NET_ADMIN]
            healthcheck: {test: [CMD, true], interval: 5s}
        """)
    over = write(tmp_path, "other.yaml", """
        services:
          web:
            image: busybox:2
            command: [sleep, "1"]
            ports: ["8080:80", "7000:70"]
            volumes: ["./c:/data"]
            environment: [B=2, C=3]
            cap_add: [NET_ADMIN, SYS_TIME]
            healthcheck: {test: "true"}
        """)
    web = spec.load([base, over], environ={}).stack.services["web"]
    assert web.image == "busybox:2"
    assert web.command == ["sleep", "1"]
    assert [(p.published, p.target) for p in web.ports] == [("8080", 80), ("9000", 90), ("7000", 70)]
    assert [(v.source, v.target) for v in web.volumes] == [
        (str(tmp_path / "c"), "/data"), (str(tmp_path / "b"), "/other")]
    assert web.environment == {"A": "1", "B": "2", "C": "3"}
    assert web.cap_add == ["NET_ADMIN", "SYS_TIME"]
    assert web.healthcheck.test == ["CMD-SHELL", "true"] and web.healthcheck.interval == "5s"


def test_reset_and_override_tags(tmp_path):
    base = write(tmp_path, "compose.yaml", """
        services:
          web:
            image: busybox
            ports: ["80:80"]
            environment: {A: "1"}
            labels: {a: "1"}
        """)
    over = write(tmp_path, "compose.override.yaml", """
        services:
          web:
            ports: !reset []
            environment: !override {B: "2"}
            labels: !reset
        """)
    project = spec.load(None, project_directory=tmp_path, environ={})
    assert project.config_files == (str(base), str(over))
    web = project.stack.services["web"]
    assert web.ports == [] and web.environment == {"B": "2"} and web.labels == {}


def test_project_name_precedence_and_normalization(tmp_path):
    path = write(tmp_path / "My Dir", "compose.yaml", "services: {web: {image: x}}\n")
    assert spec.load([path], environ={}).name == "mydir"
    write(tmp_path / "My Dir", "compose.yaml", "name: From_File\nservices: {web: {image: x}}\n")
    assert spec.load([path], environ={}).name == "from_file"
    assert spec.load([path], environ={"COMPOSE_PROJECT_NAME": "env"}).name == "env"
    assert spec.load([path], environ={"COMPOSE_PROJECT_NAME": "env"}, project_name="cli").name == "cli"
    with pytest.raises(spec.SpecError, match='invalid project name "Bad"'):
        spec.load([path], environ={}, project_name="Bad")


def test_discovery_walks_up_and_refuses_when_nothing_is_found(tmp_path):
    write(tmp_path, "docker-compose.yml", "services: {web: {image: x}}\n")
    (tmp_path / "sub").mkdir()
    project = spec.load(None, project_directory=tmp_path / "sub", environ={})
    assert project.config_files == (str(tmp_path / "docker-compose.yml"),)
    empty = tmp_path.parent / (tmp_path.name + "-empty")
    empty.mkdir()
    try:
        with pytest.raises(spec.SpecError, match="no configuration file provided"):
            spec.load(None, project_directory=empty, environ={})
    finally:
        empty.rmdir()


def test_extends_same_file_other_file_and_cycles(tmp_path):
    write(tmp_path, "common/base.yaml", """
        services:
          base:
            image: busybox
            volumes: ["./data:/data"]
            environment: {FROM: base}
        """)
    project = load(tmp_path, """
        services:
          mid:
            extends: {service: base, file: common/base.yaml}
            environment: {MID: "1"}
          web:
            extends: mid
            command: ["true"]
        """)
    web = project.stack.services["web"]
    assert web.image == "busybox" and web.command == ["true"]
    assert web.environment == {"FROM": "base", "MID": "1"}
    assert web.volumes[0].source == str(tmp_path / "common" / "data")
    with pytest.raises(spec.SpecError, match="extends cycle detected: a -> b -> a"):
        load(tmp_path, "services:\n  a: {extends: b, image: x}\n  b: {extends: a, image: x}\n")


def test_include_loads_a_sub_project_and_detects_cycles(tmp_path):
    write(tmp_path, "db/compose.yaml", """
        services:
          db:
            image: postgres:${PG:-16}
            volumes: ["./init:/init"]
        """)
    write(tmp_path, "db/.env", "PG=15\n")
    project = load(tmp_path, """
        include: [db/compose.yaml]
        services:
          web: {image: busybox, depends_on: [db]}
        """)
    db = project.stack.services["db"]
    assert db.image == "postgres:15"
    assert not project.warnings
    assert db.volumes[0].source == str(tmp_path / "db" / "init")
    write(tmp_path, "loop.yaml", "include: [compose.yaml]\nservices: {x: {image: x}}\n")
    with pytest.raises(spec.SpecError, match="include cycle detected"):
        load(tmp_path, "include: [loop.yaml]\nservices: {web: {image: x}}\n")


def test_profiles_select_services_and_a_disabled_dependency_is_an_error(tmp_path):
    text = """
        services:
          web: {image: x}
          debug: {image: x, profiles: [dev]}
          tool: {image: x, profiles: [tools, dev]}
        """
    assert load(tmp_path, text).services_enabled == ("web",)
    assert load(tmp_path, text, profiles=["dev"]).services_enabled == ("debug", "tool", "web")
    assert load(tmp_path, text, environ={"COMPOSE_PROFILES": "tools"}).services_enabled == ("tool", "web")
    assert load(tmp_path, text, profiles=["*"]).services_enabled == ("debug", "tool", "web")
    with pytest.raises(spec.SpecError, match='depends on service "debug"'):
        load(tmp_path, "services:\n  web: {image: x, depends_on: [debug]}\n"
                       "  debug: {image: x, profiles: [dev]}\n")


def test_default_network_implicit_dependencies_and_names(tmp_path):
    project = load(tmp_path, """
        name: demo
        services:
          db: {image: x}
          web: {image: x, links: ["db:database"], network_mode: "service:db"}
          api: {image: x, networks: [back]}
        networks:
          back: {}
          outside: {external: true}
        volumes:
          data: {}
        """)
    stack = project.stack
    assert stack.services["db"].networks == {"default": None}
    assert stack.networks["default"].name == "demo_default"
    assert stack.networks["back"].name == "demo_back"
    assert stack.networks["outside"].name == "outside"
    assert stack.volumes["data"].name == "demo_data"
    dep = stack.services["web"].depends_on["db"]
    assert dep.condition == "service_started" and dep.restart
    assert stack.services["web"].networks == {}


@pytest.mark.parametrize("body, words, path", [
    ("  web: {image: x, depends_on: [nope]}\n", 'depends on undefined service "nope"',
     "services.web.depends_on.nope"),
    ("  web: {image: x, networks: [nope]}\n", "undefined network nope", "services.web.networks.nope"),
    ("  web: {image: x, volumes: ['nope:/d']}\n", "undefined volume nope", "services.web.volumes[0]"),
    ("  web: {image: x, secrets: [nope]}\n", "undefined secret nope", "services.web.secrets[0]"),
    ("  web: {image: x, configs: [nope]}\n", "undefined config nope", "services.web.configs[0]"),
    ("  web: {build: {}, image: x, scale: 2, deploy: {replicas: 3}}\n", '"scale" and "deploy.replicas"',
     "services.web.scale"),
    ("  web: {image: x, deploy: {replicas: -1}}\n", "greater than or equal to 0",
     "services.web.deploy.replicas"),
    ("  web: {image: x, container_name: cc, scale: 2}\n", "container_name", "services.web.container_name"),
    ("  web: {image: x, mem_limit: 1g, deploy: {resources: {limits: {memory: 2g}}}}\n",
     '"mem_limit" and "deploy.resources.limits.memory"', "services.web.mem_limit"),
    ("  web: {}\n", "neither an image nor a build context", "services.web"),
    ("  web: {image: x, restart: sometimes}\n", "does not match", "services.web.restart"),
    ("  web: {image: x, ulimits: {nofile: {soft: 10, hard: 5}}}\n", "soft limit",
     "services.web.ulimits.nofile"),
    ("  web: {image: 5}\n", "must be a string", "services.web.image"),
    ("  web: {image: x, stop_grace_period: soon}\n", "not a duration", "services.web.stop_grace_period"),
    ("  web: {image: x, mem_limit: lots}\n", "not a byte size", "services.web.mem_limit"),
    ("  'bad name': {image: x}\n", "not a valid name", "services.bad name"),
    ("  web: {image: x, command: 5}\n", "must be a string or a list of strings", "services.web.command"),
    ("  web: {image: x, ports: [[80]]}\n", "must be a number, a string such as 8080:80 or a mapping",
     "services.web.ports[0]"),
])
def test_semantic_and_type_errors_name_the_place(tmp_path, body, words, path):
    with pytest.raises(spec.SpecError) as info:
        load(tmp_path, "services:\n" + body)
    assert words in info.value.message
    assert info.value.path == path
    assert info.value.line is not None


def test_secret_needs_a_source(tmp_path):
    with pytest.raises(spec.SpecError, match='secret "s" must declare either `file` or `environment`'):
        load(tmp_path, "services: {web: {image: x, secrets: [s]}}\nsecrets: {s: {}}\n")


def test_not_applied_features_and_obsolete_version_warn(tmp_path):
    project = load(tmp_path, """
        version: "3.8"
        services:
          web:
            image: x
            develop: {watch: [{path: ., action: rebuild}]}
            oom_score_adj: 100
        """)
    texts = [str(w) for w in project.warnings]
    assert any("version" in t and "obsolete" in t and ":1:1:" in t for t in texts)
    assert any("services.web.develop: parsed but not applied" in t for t in texts)
    assert any("services.web.oom_score_adj: parsed but not applied" in t for t in texts)


def test_network_options_and_security_opts_that_are_not_applied_warn(tmp_path):
    project = load(tmp_path, """
        services:
          web:
            image: x
            networks:
              front: {interface_name: eth9, aliases: [w], priority: 10}
            security_opt: [no-new-privileges:true, "label=disable"]
        networks:
          front: {}
        """)
    texts = [str(w) for w in project.warnings]
    assert any("services.web.networks.front.interface_name: parsed but not applied" in t
               for t in texts)
    assert any('services.web.security_opt[1]: "label=disable" is parsed but not' in t
               for t in texts)
    assert not any("aliases" in t or "priority" in t or "security_opt[0]" in t for t in texts)


SECURITY_OPTS = """
    services:
      web:
        image: x
        security_opt: ["seccomp=unconfined", "seccomp:./profiles/p.json",
                       "seccomp=/etc/abs.json", "no-new-privileges=false",
                       "apparmor=docker-default", "label:disable", "seccomp"]
    """


def security_opts_warned(project) -> set[str]:
    return {str(w).split("security_opt[")[1][0] for w in project.warnings
            if "security_opt" in str(w)}


def test_seccomp_options_are_applied_and_a_profile_path_is_relative_to_the_project(
        tmp_path, monkeypatch):
    monkeypatch.setattr(features, "_apparmor_enabled", lambda: False)
    project = load(tmp_path, SECURITY_OPTS)
    svc = project.stack.services["web"]
    assert svc.security_opt[:4] == ["seccomp=unconfined", f"seccomp:{tmp_path}/profiles/p.json",
                                    "seccomp=/etc/abs.json", "no-new-privileges=false"]
    # label is never applied, and "seccomp" without a value says nothing.
    assert security_opts_warned(project) == {"4", "5", "6"}
    assert any('"apparmor=docker-default" is not applied: AppArmor is not enabled' in str(w)
               for w in project.warnings)


def test_an_apparmor_option_is_applied_where_the_host_has_apparmor(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "_apparmor_enabled", lambda: True)
    assert security_opts_warned(load(tmp_path, SECURITY_OPTS)) == {"5", "6"}


@pytest.mark.parametrize("body, words, path", [
    ("  web: {image: x, depends_on: {db: {restart: true}}}\n  db: {image: x}\n",
     "'condition' is required", "services.web.depends_on.db"),
    ("  web: {image: x, deploy: {resources: {reservations: {devices: [{count: 1}]}}}}\n",
     "'capabilities' is required", "services.web.deploy.resources.reservations.devices[0]"),
    ("  web: {image: x, ports: [{target: 80, published: http}]}\n", "is not a port or range",
     "services.web.ports[0].published"),
    ("  web: {image: x, secrets: [{source: s, uid: 103}]}\nsecrets: {s: {file: ./s}}\n",
     "must be a string", "services.web.secrets[0].uid"),
])
def test_schema_strictness_where_the_schema_is_strict(tmp_path, body, words, path):
    with pytest.raises(spec.SpecError) as info:
        load(tmp_path, "services:\n" + body)
    assert words in info.value.message and info.value.path == path


def test_compose_env_files_variable(tmp_path):
    write(tmp_path, "a.env", "TAG=from-a\n")
    project = load(tmp_path, "services: {web: {image: 'x:${TAG}'}}\n",
                   environ={"COMPOSE_ENV_FILES": str(tmp_path / "a.env")})
    assert project.stack.services["web"].image == "x:from-a"


@pytest.mark.parametrize("text, words", [
    ("include: [{path: []}]\nservices: {}\n", "include path"),
    ("include: [{path: x.yaml, project_directory: 5}]\nservices: {}\n", "include path"),
    ("include: [{path: x.yaml, other: 1}]\nservices: {}\n", "an include is a path"),
    ("include: x.yaml\nservices: {}\n", "include must be a list"),
    ("include: [missing.yaml]\nservices: {}\n", "no such file"),
    ("services: {web: {extends: {file: missing.yaml, service: a}}}\n", "no such file"),
    ("services: {web: {extends: {service: nope}}}\n", 'service "nope" not found'),
    ("services: {web: {extends: {service: a, extra: 1}}}\n", "extends must be"),
    ("services: {web: {extends: 5}}\n", "extends must be"),
])
def test_bad_include_and_extends_are_spec_errors(tmp_path, text, words):
    with pytest.raises(spec.SpecError, match=words):
        load(tmp_path, text)


def test_extensions_are_kept_aside_on_resources_and_out_of_the_model_fields(tmp_path):
    project = load(tmp_path, """
        services:
          web: {image: x, profiles: [dev], x-owner: team-a}
          db: {image: x}
        networks:
          front: {x-vlan: 12}
        """)
    assert project.stack.networks["front"].extensions == {"x-vlan": 12}
    assert project.stack.services["web"].extensions == {"x-owner": "team-a"}
    assert list(project.services) == ["db"]


def test_compose_go_additions_are_accepted_and_warned_about(tmp_path):
    project = load(tmp_path, """
        services:
          web:
            image: x
            pre_start:
              - command: migrate --all
                per_replica: false
        models:
          llm:
        """)
    assert project.stack.services["web"].pre_start[0].command == ["migrate", "--all"]
    assert project.stack.models["llm"] is None
    texts = [str(w) for w in project.warnings]
    assert any("services.web.pre_start: parsed but not applied" in t for t in texts)
    assert any("models: parsed but not applied" in t for t in texts)


def test_include_name_clash_merges_the_including_definition_over_it_and_warns(tmp_path):
    write(tmp_path, "lib.yaml", "services:\n  db: {image: 'postgres:15', restart: always}\n")
    project = load(tmp_path, "include: [lib.yaml]\nservices:\n  db: {image: 'postgres:16'}\n")
    db = project.stack.services["db"]
    assert db.image == "postgres:16" and db.restart == "always"
    assert any("services.db: also defined by an included file" in str(w) and ":3:" in str(w)
               for w in project.warnings)


def test_a_cycle_among_services_the_profiles_leave_out_is_not_an_error(tmp_path):
    text = """
        services:
          web: {image: x, depends_on: {a: {condition: service_started, required: false}}}
          a: {image: x, profiles: [off], depends_on: [b]}
          b: {image: x, profiles: [off], depends_on: [a]}
        """
    assert load(tmp_path, text).services_enabled == ("web",)
    with pytest.raises(spec.SpecError, match="dependency cycle detected: a -> b -> a"):
        load(tmp_path, text, profiles=["off"])
