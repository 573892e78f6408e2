"""Short syntax, YAML details and interpolation, as a user writes them."""

from __future__ import annotations

import pytest

from reconciler import spec
from reconciler.spec import envfile, interpolate, units
from tests.unit.spec.helpers import load


def svc(tmp_path, body: str, environ=None, name="web"):
    project = load(tmp_path, "services:\n  web:\n    image: busybox\n" + body, environ=environ)
    return project.stack.services[name]


@pytest.mark.parametrize("short, expected", [
    ("80", [(None, None, 80, "tcp")]),
    ('"8080:80"', [(None, "8080", 80, "tcp")]),
    ('"127.0.0.1:8001:8000"', [("127.0.0.1", "8001", 8000, "tcp")]),
    ('"127.0.0.1::80"', [("127.0.0.1", None, 80, "tcp")]),
    ('"[::1]:53:53/udp"', [("::1", "53", 53, "udp")]),
    ('"9090-9091:8080-8081"', [(None, "9090", 8080, "tcp"), (None, "9091", 8081, "tcp")]),
    ('"8000-8010:80"', [(None, "8000-8010", 80, "tcp")]),
    ("80:80", [(None, "80", 80, "tcp")]),  # YAML 1.1 would read 4880 here
])
def test_port_short_syntax_becomes_long(tmp_path, short, expected):
    ports = svc(tmp_path, f"    ports: [{short}]\n").ports
    assert [(p.host_ip, p.published, p.target, p.protocol) for p in ports] == expected


@pytest.mark.parametrize("bad", ['"80:80:80"', '"70000"', '"a:80"', '"80/icmp"', '"90-80:90-80"'])
def test_bad_port_says_where_and_what(tmp_path, bad):
    with pytest.raises(spec.SpecError) as info:
        svc(tmp_path, f"    ports:\n      - {bad}\n")
    assert info.value.path == "services.web.ports[0]"
    assert info.value.line == 5 and info.value.column == 9
    assert "is not a valid port mapping" in str(info.value)


def test_volume_short_syntax(tmp_path):
    body = """\
    volumes:
      - /var/lib/anon
      - ./data:/data:ro,z
      - cache:/cache:nocopy
volumes:
  cache: {}
"""
    vols = load(tmp_path, "services:\n  web:\n    image: busybox\n" + body).stack.services["web"].volumes
    assert vols[0].type == "volume" and vols[0].source is None and vols[0].target == "/var/lib/anon"
    assert vols[1].type == "bind" and vols[1].source == str(tmp_path / "data")
    assert vols[1].read_only and vols[1].bind.selinux == "z" and vols[1].bind.create_host_path
    assert vols[2].type == "volume" and vols[2].source == "cache" and vols[2].volume.nocopy


def test_environment_list_and_bare_names_resolve_from_the_shell(tmp_path):
    env = svc(tmp_path, "    environment: [A=1, B, C, 'D=x=y']\n", environ={"B": "from-shell"})
    assert env.environment == {"A": "1", "B": "from-shell", "D": "x=y"}


def test_env_file_long_syntax_required_false_and_environment_wins(tmp_path):
    (tmp_path / "a.env").write_text("A=from-file\nB=file\n")
    web = svc(tmp_path, "    env_file:\n      - a.env\n      - path: missing.env\n"
                        "        required: false\n    environment: {B: mine}\n")
    assert web.environment == {"A": "from-file", "B": "mine"}
    with pytest.raises(spec.SpecError, match="missing.env not found"):
        svc(tmp_path, "    env_file: [missing.env]\n")


def test_yaml_12_scalars_as_compose_reads_them(tmp_path):
    web = svc(tmp_path, "    restart: no\n    environment: {A: yes, B: on, C: 0o17}\n")
    assert web.restart == "no"
    assert web.environment == {"A": "yes", "B": "on", "C": "15"}


def test_anchors_merge_keys_and_extensions(tmp_path):
    project = load(tmp_path, """
        x-base: &base
          image: busybox
          environment: {A: "1"}
        services:
          a:
            <<: *base
            environment: {B: "2"}
          b: *base
        """)
    assert project.stack.services["a"].environment == {"B": "2"}
    assert project.stack.services["a"].image == "busybox"
    assert project.stack.services["b"].environment == {"A": "1"}
    assert "x-base" in project.stack.extensions


def test_non_string_key_inside_a_service_is_refused(tmp_path):
    with pytest.raises(spec.SpecError, match="non-string key in services.web: 1"):
        load(tmp_path, "services:\n  web:\n    image: x\n    1: y\n")


def test_duplicate_key_is_refused(tmp_path):
    with pytest.raises(spec.SpecError, match="already defined") as info:
        load(tmp_path, "services:\n  web:\n    image: x\n    image: y\n")
    assert info.value.line == 4


def test_tab_indentation_is_a_yaml_error(tmp_path):
    with pytest.raises(spec.SpecError, match="invalid YAML"):
        load(tmp_path, "services:\n\tweb:\n    image: x\n")


@pytest.mark.parametrize("template, expected", [
    ("${SET}", "value"), ("$SET", "value"), ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"),
    ("${EMPTY-d}", ""), ("${UNSET-d}", "d"), ("${SET:+alt}", "alt"), ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""), ("${UNSET:-${SET}}", "value"),
    ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"), ("$$SET", "$SET"), ("a$${b}c", "a${b}c"),
    ("costs 5$", "costs 5$"), ("a $ b", "a $ b"), ("$1", "$1"),
])
def test_interpolation_forms(template, expected):
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate.substitute(template, env.get, []) == expected


@pytest.mark.parametrize("template, message", [
    ("${UNSET:?give it}", "required variable UNSET is missing a value: give it"),
    ("${EMPTY:?}", "required variable EMPTY is missing a value"),
    ("${UNSET?no}", "required variable UNSET is missing a value: no"),
    ("${", "invalid template"), ("${1x}", "invalid template"), ("${A/b}", "invalid template"),
])
def test_interpolation_errors(template, message):
    with pytest.raises(interpolate.TemplateError, match=message.replace("$", r"\$").replace("{", r"\{")):
        interpolate.substitute(template, {"EMPTY": ""}.get, [])


def test_unset_variable_warns_with_its_place(tmp_path):
    project = load(tmp_path, "services:\n  web:\n    image: busybox:${TAG}\n")
    assert project.stack.services["web"].image == "busybox:"
    assert any('"TAG" variable is not set' in str(w) and ":3:" in str(w) for w in project.warnings)


def test_dotenv_and_shell_precedence(tmp_path):
    (tmp_path / ".env").write_text("TAG=from-dotenv\nOTHER=${TAG}-x\n")
    project = load(tmp_path, "services:\n  web:\n    image: b:${TAG}-${OTHER}\n",
                   environ={"TAG": "shell"})
    assert project.stack.services["web"].image == "b:shell-shell-x"


def test_env_file_syntax():
    values = envfile.parse("# c\nA=1\nexport B = two words # note\nC='lit $A'\n"
                           'D="x\\ny $A"\nE\nF=\n', "e", {"E": "env"})
    assert values == {"A": "1", "B": "two words", "C": "lit $A", "D": "x\ny 1",
                      "E": "env", "F": ""}


def test_raw_env_file_is_taken_verbatim(tmp_path):
    (tmp_path / "raw.env").write_text("A='quoted' $HOME\n")
    web = svc(tmp_path, "    env_file: [{path: raw.env, format: raw}]\n")
    assert web.environment == {"A": "'quoted' $HOME"}


def test_empty_label_build_defaults_and_build_args_from_the_environment(tmp_path):
    web = svc(tmp_path, "    labels: {empty: }\n    build: {args: [VERSION, FIXED=1, UNSET]}\n",
              environ={"VERSION": "2"})
    assert web.labels == {"empty": ""}
    assert web.build.context == str(tmp_path) and web.build.dockerfile == "Dockerfile"
    assert web.build.args == {"VERSION": "2", "FIXED": "1"}


def test_deep_nesting_is_refused_not_crashed(tmp_path):
    with pytest.raises(spec.SpecError, match="nested deeper"):
        load(tmp_path, "x-deep: " + "[" * 150 + "]" * 150 + "\nservices: {}\n")


def test_several_documents_in_one_file_merge_in_order(tmp_path):
    project = load(tmp_path, "services: {web: {image: a}}\n---\nservices: {web: {image: b}}\n")
    assert project.stack.services["web"].image == "b"


@pytest.mark.parametrize("text, seconds", [("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0),
                                           ("0", 0.0), ("1h2m3s", 3723.0)])
def test_durations_read_as_go_reads_them(text, seconds):
    assert units.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "abc", "1x"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        units.parse_duration(text)


@pytest.mark.parametrize("value, size", [("1.5G", 1610612736), ("64M", 64 << 20), ("512m", 512 << 20),
                                         ("1kb", 1024), (100, 100), ("1024", 1024)])
def test_byte_sizes(value, size):
    assert units.parse_bytes(value) == size


@pytest.mark.parametrize("text, words", [("!!int abc", "'abc' is not a valid int"),
                                         ("!!float x", "'x' is not a valid float"),
                                         ("!!binary aGk=", "unsupported YAML tag")])
def test_explicit_tags_that_do_not_fit_are_spec_errors(tmp_path, text, words):
    with pytest.raises(spec.SpecError, match=words):
        load(tmp_path, f"services:\n  web:\n    image: {text}\n")


def test_error_after_an_expanded_port_range_points_at_the_written_line(tmp_path):
    with pytest.raises(spec.SpecError) as info:
        svc(tmp_path, '    ports:\n      - "8000-8002:80-82"\n      - {target: 90, published: web}\n')
    assert info.value.line == 6
    assert info.value.path == "services.web.ports[3].published"
