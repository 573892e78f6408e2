"""push's pure parts: upload URLs and the scope a bearer token is asked for."""

from __future__ import annotations

from runtime.images import auth, push, reference


def test_digest_joins_the_upload_location_query() -> None:
    assert push._with_digest("/v2/a/blobs/uploads/u1", "sha256:ab") == "/v2/a/blobs/uploads/u1?digest=sha256%3Aab"
    assert (push._with_digest("/v2/a/blobs/uploads/u1?_state=x", "sha256:ab")
            == "/v2/a/blobs/uploads/u1?_state=x&digest=sha256%3Aab")


def test_bearer_without_scope_asks_for_pull_and_push() -> None:
    ref = reference.parse("registry.example:5000/team/app:1")
    challenge = auth.parse_challenge('Bearer realm="https://auth.example/token",service="reg"')
    assert push._push_scope(challenge, ref).get("scope") == "repository:team/app:pull,push"
    given = auth.parse_challenge('Bearer realm="https://a/t",scope="repository:team/app:push,pull"')
    assert push._push_scope(given, ref) == given
    basic = auth.parse_challenge('Basic realm="reg"')
    assert push._push_scope(basic, ref) == basic
