"""Image references are read as docker reads them, and bad ones are refused with the reason."""

import pytest

from runtime.images import reference


@pytest.mark.parametrize("text, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/nginx:1.27-alpine", "docker.io/library/nginx:1.27-alpine"),
    ("bitnami/redis", "docker.io/bitnami/redis:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/team/app:v2", "localhost:5000/team/app:v2"),
    ("127.0.0.1:43210/app", "127.0.0.1:43210/app:latest"),
    ("ghcr.io/org/sub/app:1.0", "ghcr.io/org/sub/app:1.0"),
    ("app@sha256:" + "ab" * 32, "docker.io/library/app@sha256:" + "ab" * 32),
    ("reg.example:5000/app:1@sha256:" + "cd" * 32, "reg.example:5000/app:1@sha256:" + "cd" * 32),
])
def test_parse_fills_docker_defaults(text, expected):
    assert str(reference.parse(text)) == expected


def test_parts_and_familiar_form():
    ref = reference.parse("localhost:5000/team/app:v2")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("localhost:5000", "team/app", "v2", None)
    assert reference.parse("busybox").familiar() == "busybox:latest"
    assert reference.parse("bitnami/redis:7").familiar() == "bitnami/redis:7"
    assert reference.parse("busybox").api_host == "registry-1.docker.io"


def test_digest_reference_asks_for_the_digest():
    digest = "sha256:" + "0f" * 32
    ref = reference.parse(f"app@{digest}")
    assert ref.tag is None and ref.object == digest


@pytest.mark.parametrize("text, fault", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("app:bad tag", "tag"),
    ("app@sha256:1234", "digest"),
    ("app@md5:" + "0" * 32, "digest"),
    ("a:b:c", "lowercase"),
    ("reg:5000/", "no repository"),
    ("app//x", "lowercase"),
])
def test_bad_references_say_what_is_wrong(text, fault):
    with pytest.raises(reference.ReferenceError) as err:
        reference.parse(text)
    assert fault in str(err.value)
    assert repr(text) in str(err.value)
