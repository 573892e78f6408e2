"""docker compose's names and label keys, each spelled in one module (runtime/names.py,
runtime/labels.py): what the rest of pcompose makes and recognizes follows them."""

from __future__ import annotations

import pathlib

from runtime import labels, names

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_names_are_docker_composes():
    assert names.container("shop", "web", 2) == "shop-web-2"
    assert names.oneoff("shop", "web", "0123abcd") == "shop-web-run-0123abcd"
    assert names.scoped("shop", "default") == "shop_default"
    assert names.image("shop", "api") == "shop-api"
    volume = names.anonymous_volume("shop-db-1", "/var/lib/data")
    assert volume.startswith(names.anonymous_prefix("shop-db-1")) and len(volume) == 27
    assert names.anonymous_volume("shop-db-1", "/var/lib/data") == volume  # stable
    assert names.of_project("shop", "shop-web-1") and not names.of_project("shop", "db")


def test_a_containers_compose_labels():
    assert labels.container("shop", "web", 1, False) == {
        "com.docker.compose.project": "shop", "com.docker.compose.service": "web",
        "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False"}


def test_label_keys_are_spelled_only_in_their_module():
    spelled = []
    for package in ("reconciler", "controllers", "runtime"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "runtime" / "labels.py":
                continue
            text = path.read_text()
            for quote in ('"', "'"):
                for prefix in ("com.docker.compose.", "io.pcompose."):
                    if quote + prefix in text:
                        spelled.append(f"{path.relative_to(ROOT)}: {prefix}")
    assert spelled == []
