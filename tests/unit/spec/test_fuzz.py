"""Mutated real stacks: the loader either loads them or says what is wrong, never crashes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from reconciler import spec
from tests.support import shared

pytestmark = pytest.mark.shared

FIXTURES = shared.COMPOSE_FIXTURES / "valid"
SEEDS = [yaml.safe_load(p.read_text()) for p in sorted(FIXTURES.glob("*.yaml"))
         if "!reset" not in p.read_text()]
KEYS = ["image", "ports", "volumes", "environment", "depends_on", "networks", "build", "deploy",
        "healthcheck", "command", "secrets", "configs", "extends", "env_file", "ulimits",
        "external", "driver", "name", "target", "source", "type", "condition", "x-ext", "1", "",
        "include", "path", "file", "service", "project_directory", "profiles", "network_mode"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-70000, 70000), st.floats(allow_nan=False),
    st.sampled_from(["80:80:80", "8080:80", "${X}", "${X:?gone}", "$", "./a:/b:ro", "a:b:c:d",
                     "1.5G", "10s", "host", "service:web", "!reset", "-1", "", "service_healthy",
                     "compose.yaml", "other.yaml", "web", "db", ".", "/"]),
    st.text(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=6)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, val in node.items():
            yield from _paths(val, path + (key,))
    elif isinstance(node, list):
        for i, val in enumerate(node):
            yield from _paths(val, path + (i,))


def _mutate(doc, data):
    """Replace, delete or insert at a few random places of the document tree."""
    for _ in range(data.draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "replace":
            parent[path[-1]] = data.draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.sampled_from(KEYS))] = data.draw(values)
        else:
            parent.insert(path[-1], data.draw(values))
    return doc


@settings(max_examples=int(os.environ.get("PCOMPOSE_FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_stacks_load_or_raise_spec_error(data):
    seed = data.draw(st.sampled_from(SEEDS))
    doc = _mutate(yaml.safe_load(yaml.safe_dump(seed)), data)
    text = yaml.safe_dump(doc, sort_keys=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_text(text)
        # A second file for `include` and `extends: {file: other.yaml}` to find.
        (Path(tmp) / "other.yaml").write_text("services:\n  web: {image: busybox}\n")
        for interpolate in (True, False):
            try:
                project = spec.load([path], environ={"HOME": tmp}, interpolate=interpolate)
            except spec.SpecError as err:
                assert str(err)
            else:
                for name in project.services_enabled:
                    project.config_hash(name)


TEXTS = [p.read_text() for p in sorted(FIXTURES.glob("*.yaml"))]
SNIPPETS = ["!!int ", "!!float ", "!!str ", "!!binary ", "&a ", "*a", "<<: *a\n", "\t", "{", "}",
            "[", "]", "'", '"', ": ", "\n  - ", "\n", "!reset ", "!override ", "${", "$", "#",
            "? ", "---\n", "...\n", "|\n", ">-\n", "\\", "\x00", "é", "<<: ", "- "]


@settings(max_examples=int(os.environ.get("PCOMPOSE_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_text_loads_or_raises_spec_error(data):
    text = data.draw(st.sampled_from(TEXTS))
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 3))
        text = text[:at] + data.draw(st.sampled_from(SNIPPETS)) + text[at + cut:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_text(text)
        try:
            project = spec.load([path], environ={"HOME": tmp}, consistency=False)
        except spec.SpecError as err:
            assert str(err)
        else:
            for name in project.services_enabled:
                project.config_hash(name)
