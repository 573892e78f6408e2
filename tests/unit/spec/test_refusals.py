"""What the agent would refuse only once it runs a container, refused by the loader instead:
each error names the file, line and column, the path inside the document, and what is wrong."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from reconciler import spec
from reconciler.spec import unique, yamlload
from tests.support import shared
from tests.unit.spec.helpers import load, write



def refused(tmp_path, text: str, environ=None) -> spec.SpecError:
    with pytest.raises(spec.SpecError) as info:
        load(tmp_path, text, environ=environ)
    return info.value


def where(err: spec.SpecError) -> tuple:
    return Path(err.file).name, err.line, err.column, err.path


# ---- alias bombs -----------------------------------------------------------------------------


def bomb(levels: int = 9, fan: int = 9) -> str:
    lines = ["services:", "  web: {image: busybox}",
             "x-l0: &l0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for n in range(1, levels):
        lines.append(f"x-l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_early_naming_the_file_and_the_alias(tmp_path):
    text = bomb()  # 9 ** 9 = 387 million strings once expanded
    assert len(text) < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = refused(tmp_path, text)
    assert "document contains excessive aliasing" in err.message
    # The line of the key whose value holds the alias being expanded when the budget ran out.
    name, line, column, path = where(err)
    assert name == "compose.yaml" and column == 1
    assert path.startswith(f"x-l{line - 3}[")
    # Refused after a few thousand nodes, not after expanding a few million.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


def test_merge_key_bombs_are_counted_too(tmp_path):
    lines = ["services:", "  web: {image: busybox}", "x-0: &a0 {k0: v, k1: v, k2: v, k3: v}"]
    for n in range(1, 8):
        keys = ", ".join(f"k{i}: {{<<: *a{n - 1}}}" for i in range(8))
        lines.append(f"x-{n}: &a{n} {{{keys}}}")
    err = refused(tmp_path, "\n".join(lines) + "\n")
    assert "excessive aliasing" in err.message and err.line is not None


def test_the_budget_is_per_file_not_per_document(tmp_path, monkeypatch):
    # go-yaml's curve scaled down 200 times: 99% aliases up to 2,000 nodes, 10% from 20,000.
    monkeypatch.setattr(yamlload, "ALIAS_RATIO_LOW", 2_000)
    monkeypatch.setattr(yamlload, "ALIAS_RATIO_HIGH", 20_000)
    # About 1,900 nodes, 96% of them aliases: one such document is within the budget, three
    # in one file are not (the share allowed falls as the file grows).
    doc = "x-f: [" + ", ".join(["filler"] * 70) + "]\n" + bomb(levels=3, fan=12)
    assert yamlload.load_text(doc, "one.yaml")
    path = write(tmp_path, "many.yaml", "---\n".join([doc] * 3))
    with pytest.raises(spec.SpecError, match="excessive aliasing") as info:
        yamlload.load_file(str(path))
    assert info.value.file == str(path)


def test_a_file_too_large_once_expanded_is_refused_whatever_its_aliasing(tmp_path, monkeypatch):
    monkeypatch.setattr(yamlload, "MAX_NODES", 1_000)
    doc = "x: [" + ", ".join(["v"] * 400) + "]\n"
    assert yamlload.load_text(doc, "one.yaml")
    with pytest.raises(spec.SpecError, match="file too large") as info:
        yamlload.load_text("---\n".join([doc] * 3), "many.yaml")
    assert info.value.file == "many.yaml" and info.value.line is not None


def test_the_alias_ratio_is_go_yamls():
    assert yamlload.allowed_alias_ratio(1000) == 0.99
    assert yamlload.allowed_alias_ratio(400_000) == 0.99
    assert yamlload.allowed_alias_ratio(2_200_000) == pytest.approx(0.545)
    assert yamlload.allowed_alias_ratio(4_000_000) == 0.10
    assert yamlload.allowed_alias_ratio(10_000_000) == 0.10


def test_ordinary_anchors_and_merge_keys_still_load(tmp_path):
    services = "\n".join(f"  s{i}:\n    <<: *base\n    environment:\n      <<: *env\n"
                         f"      I: '{i}'\n    labels: *labels" for i in range(300))
    project = load(tmp_path, f"""
x-base: &base
  image: busybox
  restart: unless-stopped
  healthcheck: {{test: [CMD, "true"], interval: 10s}}
x-env: &env {{A: "1", B: "2", C: "3"}}
x-labels: &labels [a=1, b=2, c=3, d=4]
services:
{services}
""")
    assert len(project.services) == 300
    assert project.stack.services["s7"].environment == {"A": "1", "B": "2", "C": "3", "I": "7"}


# ---- uniqueItems -----------------------------------------------------------------------------


def schema_unique_places() -> set[str]:
    """Every place where compose-spec.json says `uniqueItems`, as `services.*.cap_add`."""
    schema = json.loads(shared.SCHEMA.read_text())
    found: set[str] = set()

    def walk(node, path, refs):
        if "$ref" in node:
            ref = node["$ref"]
            if ref in refs:
                return
            refs = refs | {ref}
            node = schema["definitions"][ref.rsplit("/", 1)[-1]]
        if node.get("uniqueItems"):
            found.add(".".join(path))
        for key, sub in node.get("properties", {}).items():
            walk(sub, path + (key,), refs)
        for sub in node.get("patternProperties", {}).values():
            walk(sub, path + (unique.ANY,), refs)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + (unique.ANY,), refs)
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + (unique.ITEM,), refs)
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in node.get(key, []):
                walk(sub, path, refs)

    walk(schema, (), frozenset())
    return found


@pytest.mark.shared
def test_the_unique_places_are_the_schemas():
    assert set(unique.UNIQUE) == schema_unique_places()


@pytest.mark.parametrize("attr, items, pair", [
    ("environment", "[A=1, B=2, C=3, D=4, A=1]", "[0,4]"),
    ("ports", '["8080:80", "9090:90", "8080:80"]', "[0,2]"),
    ("ports", "[{target: 80, published: '8080'}, {published: '8080', target: 80}]", "[0,1]"),
    ("cap_add", "[NET_ADMIN, SYS_TIME, NET_ADMIN]", "[0,2]"),
    ("dns", "[1.1.1.1, 1.1.1.1]", "[0,1]"),
    ("labels", "[a=1, a=1]", "[0,1]"),
    ("extra_hosts", '["db:10.0.0.2", "db:10.0.0.2"]', "[0,1]"),
    ("volumes", '["./a:/a", "./a:/a"]', "[0,1]"),
    ("expose", "[80, 80]", "[0,1]"),
])
def test_a_list_the_schema_says_is_unique_refuses_a_repeated_item(tmp_path, attr, items, pair):
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    {attr}: {items}\n")
    assert err.message == f"array items{pair} must be unique"
    assert err.path == f"services.s.{attr}"
    assert Path(err.file).name == "compose.yaml" and err.line == 4 and err.column > 1


def test_the_error_points_at_the_repeated_item(tmp_path):
    err = refused(tmp_path, """
        services:
          s:
            image: busybox
            cap_drop:
              - NET_RAW
              - MKNOD
              - NET_RAW
        """)
    assert where(err) == ("compose.yaml", 7, 9, "services.s.cap_drop")


def test_different_items_and_equal_values_of_different_types_are_not_repeats(tmp_path):
    project = load(tmp_path, """
        services:
          s:
            image: busybox
            expose: [80, "80"]
            environment: [A=1, A=2]
            group_add: [1, "1"]
        """)
    assert project.stack.services["s"].environment == {"A": "2"}


def test_repeats_are_found_after_interpolation(tmp_path):
    text = "services:\n  s:\n    image: busybox\n    dns: [$A, $B]\n"
    assert load(tmp_path, text, environ={"A": "1.1.1.1", "B": "8.8.8.8"})
    err = refused(tmp_path, text, environ={"A": "1.1.1.1", "B": "1.1.1.1"})
    assert err.message == "array items[0,1] must be unique" and err.path == "services.s.dns"


def test_an_override_file_repeating_an_item_merges_it_once(tmp_path):
    write(tmp_path, "compose.override.yaml", "services:\n  s:\n    cap_add: [NET_ADMIN]\n")
    base = write(tmp_path, "compose.yaml",
                 "services:\n  s:\n    image: busybox\n    cap_add: [NET_ADMIN]\n")
    project = spec.load([base, tmp_path / "compose.override.yaml"], environ={})
    assert project.stack.services["s"].cap_add == ["NET_ADMIN"]


def test_repeats_in_an_included_file_name_that_file(tmp_path):
    write(tmp_path, "sub/inc.yaml", "services:\n  t:\n    image: busybox\n"
                                    "    security_opt: [no-new-privileges, no-new-privileges]\n")
    err = refused(tmp_path, "include: [sub/inc.yaml]\nservices:\n  s: {image: busybox}\n")
    assert where(err) == ("inc.yaml", 4, 39, "services.t.security_opt")


# ---- duplicate container names ---------------------------------------------------------------


def test_two_services_with_one_container_name_name_both_places(tmp_path):
    err = refused(tmp_path, """
        services:
          a:
            image: busybox
            container_name: shared
          b:
            image: busybox
            container_name: shared
        """)
    assert where(err) == ("compose.yaml", 7, 5, "services.b.container_name")
    assert 'container name "shared" is already used by' in err.message
    assert "compose.yaml:4:5: services.a.container_name" in err.message


def test_a_container_name_that_another_services_container_has(tmp_path):
    err = refused(tmp_path, """
        name: shop
        services:
          web:
            image: busybox
          cache:
            image: busybox
            container_name: shop-web-1
        """)
    assert err.path == "services.cache.container_name" and err.line == 7
    assert "compose.yaml:3:3: services.web" in err.message


def test_a_service_the_profiles_leave_out_does_not_clash(tmp_path):
    project = load(tmp_path, """
        services:
          a: {image: busybox, container_name: one}
          b: {image: busybox, container_name: one, profiles: [debug]}
        """)
    assert project.services_enabled == ("a",)


# ---- strings that reach argv, env or a file name ---------------------------------------------


@pytest.mark.parametrize("body, path", [
    ('environment: {A: "x\\0y"}', "services.s.environment.A"),
    ('environment: ["A=x\\0y"]', "services.s.environment.A"),
    ('labels: {a: "x\\0"}', "services.s.labels.a"),
    ('command: [sh, "-c", "echo \\0"]', "services.s.command[2]"),
    ('entrypoint: "sh \\0"', "services.s.entrypoint[1]"),
    ('working_dir: "/x\\0"', "services.s.working_dir"),
    ('environment: {"A\\0B": x}', "services.s.environment.A\x00B"),
])
def test_a_nul_character_is_refused_where_it_was_written(tmp_path, body, path):
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    {body}\n")
    assert "NUL character" in err.message
    assert err.path == path and err.line == 4 and Path(err.file).name == "compose.yaml"


def test_a_nul_character_from_the_shell_is_refused(tmp_path):
    err = refused(tmp_path, "services:\n  s:\n    image: busybox\n    user: $U\n",
                  environ={"U": "root\0x"})
    assert "NUL character" in err.message and err.path == "services.s.user" and err.line == 4


def test_a_nul_character_in_an_env_file_names_its_line(tmp_path):
    (tmp_path / "app.env").write_bytes(b"A=1\nB=x\0y\n")
    err = refused(tmp_path, "services:\n  s:\n    image: busybox\n    env_file: app.env\n")
    assert (Path(err.file).name, err.line, err.column) == ("app.env", 2, 4)
    assert "NUL character" in err.message


def test_a_config_content_may_hold_any_byte(tmp_path):
    project = load(tmp_path, """
        services:
          s: {image: busybox, configs: [c]}
        configs:
          c: {content: "a\\0b"}
        """)
    assert project.stack.configs["c"].content == "a\0b"


# ---- ports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("port, path, words", [
    ("{target: 80, published: 70000}", "services.s.ports[0].published", "'70000' is not a port"),
    ("{target: 80, published: '8000-70000'}", "services.s.ports[0].published", "range of ports"),
    ("{target: 80, published: '90-80'}", "services.s.ports[0].published", "range of ports"),
    ("{target: 80, published: 0}", "services.s.ports[0].published", "'0' is not a port"),
    ("{target: 0}", "services.s.ports[0].target", "0 is not a port in 1-65535"),
    ("{target: 65536}", "services.s.ports[0].target", "65536 is not a port"),
    ('"0:80"', "services.s.ports[0]", "is not a valid port mapping"),
    ('"0"', "services.s.ports[0]", "is not a valid port mapping"),
])
def test_ports_outside_1_to_65535_are_refused(tmp_path, port, path, words):
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    ports:\n      - {port}\n")
    assert words in err.message and err.path == path and err.line == 5


def test_a_published_range_in_long_syntax_loads(tmp_path):
    project = load(tmp_path, "services:\n  s:\n    image: busybox\n    ports:\n"
                             "      - {target: 80, published: '8000-8010'}\n")
    assert project.stack.services["s"].ports[0].published == "8000-8010"


# ---- names -----------------------------------------------------------------------------------


def test_a_300_character_container_name_is_refused(tmp_path):
    name = "c" * 300
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    container_name: {name}\n")
    assert err.path == "services.s.container_name" and err.line == 4
    assert "300 characters long, more than the 253 of a DNS name" in err.message


def test_a_container_name_part_over_63_characters_is_refused(tmp_path):
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n"
                            f"    container_name: {'c' * 64}.example\n")
    assert "part of 64 characters" in err.message and err.path == "services.s.container_name"


def test_a_300_character_service_name_is_refused(tmp_path):
    name = "s" * 300
    err = refused(tmp_path, f"services:\n  {name}:\n    image: busybox\n")
    assert err.path == f"services.{name}" and err.line == 2 and err.column == 3
    assert "more than the 253 of a DNS name" in err.message


def test_a_container_name_over_128_characters_is_refused(tmp_path):
    name = ".".join(["c" * 60] * 3)  # a DNS name, but longer than the runtime's container ids
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    container_name: {name}\n")
    assert err.path == "services.s.container_name"
    assert "182 characters long, more than the 128 of a container id" in err.message
    assert load(tmp_path, f"services:\n  s:\n    image: busybox\n"
                          f"    container_name: {name[:128]}\n")


def test_a_service_name_whose_container_name_is_too_long(tmp_path):
    name = ".".join(["s" * 61] * 2)  # 123 characters; with the project and replica over 128
    err = refused(tmp_path, f"name: shop\nservices:\n  {name}:\n    image: busybox\n")
    assert err.path == f"services.{name}" and "set container_name" in err.message
    assert "more than the 128 of a container id" in err.message
    assert load(tmp_path, f"name: shop\nservices:\n  {name}:\n    image: busybox\n"
                          "    container_name: short\n")


def test_hostname_and_domainname_longer_than_the_kernel_takes(tmp_path):
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    hostname: {'h' * 64}\n")
    assert err.path == "services.s.hostname" and "64 characters long, more than the 63" in str(err)
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    domainname: {'d' * 65}\n")
    assert err.path == "services.s.domainname" and err.line == 4
    assert load(tmp_path, f"services:\n  s:\n    image: busybox\n    hostname: {'h' * 63}\n")


# ---- mount targets, sub-paths, working_dir ---------------------------------------------------


@pytest.mark.parametrize("volume, words", [
    ('"data:/"', "would hide the container's whole file system"),
    ('"./d:/"', "would hide the container's whole file system"),
    ('"./d:../../etc"', "must be an absolute path"),
    ('"data:/var/../etc"', 'must not contain "." or ".." parts'),
    ("{type: tmpfs, target: /tmp/./x}", 'must not contain "." or ".." parts'),
    ("{type: bind, source: ./d, target: etc}", "must be an absolute path"),
    ("{type: volume, source: data, target: //}", "whole file system"),
])
def test_a_mount_target_must_be_absolute_clean_and_not_the_root(tmp_path, volume, words):
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    volumes:\n"
                            f"      - {volume}\nvolumes:\n  data: {{}}\n")
    assert words in err.message and err.path == "services.s.volumes[0]" and err.line == 5


def test_a_tmpfs_target_too(tmp_path):
    err = refused(tmp_path, "services:\n  s:\n    image: busybox\n    tmpfs: [/run, '/:size=1m']\n")
    assert err.path == "services.s.tmpfs[1]" and "whole file system" in err.message


@pytest.mark.parametrize("subpath, words", [
    ("/etc", "must be a relative path"),
    ("../other", 'must not contain ".." parts'),
    ("a/../../b", 'must not contain ".." parts'),
])
def test_a_volume_subpath_stays_inside_its_volume(tmp_path, subpath, words):
    err = refused(tmp_path, f"""
        services:
          s:
            image: busybox
            volumes:
              - type: volume
                source: data
                target: /data
                volume:
                  subpath: "{subpath}"
        volumes:
          data: {{}}
        """)
    assert words in err.message and err.path == "services.s.volumes[0].volume.subpath"
    assert err.line == 9


def test_a_clean_subpath_loads(tmp_path):
    project = load(tmp_path, """
        services:
          s:
            image: busybox
            volumes: [{type: volume, source: data, target: /data, volume: {subpath: a/b}}]
        volumes:
          data: {}
        """)
    assert project.stack.services["s"].volumes[0].volume.subpath == "a/b"


@pytest.mark.parametrize("ref, words", [
    ("{source: s, target: /}", "whole file system"),
    ("{source: s, target: ../../etc/passwd}", '".." parts'),
    ("{source: s, target: /run/../etc/shadow}", '".." parts'),
])
def test_secret_targets_are_checked_like_mounts(tmp_path, ref, words):
    (tmp_path / "s.txt").write_text("x")
    err = refused(tmp_path, f"services:\n  s:\n    image: busybox\n    secrets:\n      - {ref}\n"
                            "secrets:\n  s: {file: ./s.txt}\n")
    assert words in err.message and err.path == "services.s.secrets[0]" and err.line == 5


def test_a_config_named_dot_dot_cannot_land_on_the_root(tmp_path):
    err = refused(tmp_path, "services:\n  s:\n    image: busybox\n    configs: [..]\n"
                            "configs:\n  ..: {content: x}\n")
    assert "(from the config's name)" in err.message and err.path == "services.s.configs[0]"


def test_relative_working_dir_is_refused(tmp_path):
    err = refused(tmp_path, "services:\n  s:\n    image: busybox\n    working_dir: app\n")
    assert err.path == "services.s.working_dir" and "absolute" in err.message


# ---- secret and config files -----------------------------------------------------------------


def test_a_secret_whose_file_is_a_directory(tmp_path):
    (tmp_path / "secret.d").mkdir()
    err = refused(tmp_path, """
        services:
          s: {image: busybox, secrets: [pw]}
        secrets:
          pw:
            file: ./secret.d
        """)
    assert where(err) == ("compose.yaml", 5, 5, "secrets.pw.file")
    assert err.message == f"secret file {tmp_path}/secret.d is a directory, not a file"


def test_a_missing_secret_file_is_a_warning_as_docker_loads_it(tmp_path):
    project = load(tmp_path, """
        services:
          s: {image: busybox, secrets: [pw], configs: [c]}
          t: {image: busybox, secrets: [pw]}
        secrets:
          pw: {file: ./nope.txt}
        configs:
          c: {file: ./nope.conf}
        """)
    texts = [str(w) for w in project.warnings]
    assert sum("secret file" in t and "nope.txt not found" in t for t in texts) == 1
    assert any(":7:" in t and "configs.c.file: config file" in t for t in texts)
