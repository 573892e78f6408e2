"""The words of create, scale, rm and attach before anything runs: scale specifiers, detach
keys and what an attachment passes on of the user's input."""

from __future__ import annotations

import io

import pytest

from reconciler.cli import build_parser, common, compose_create, compose_rm, compose_session


def test_scale_reads_service_replicas_pairs_as_docker_compose_does():
    assert compose_create.parse_scale(["web=3", "db=0", "web=2"]) == {"web": 2, "db": 0}
    for word, message in (("web", "invalid scale specifier: web"),
                          ("=3", "invalid scale specifier: =3"),
                          ("web=", "invalid scale specifier: web="),
                          ("web=x", "can't parse replica value as int: web=x"),
                          ("web=-1", "can't parse replica value as int: web=-1")):
        with pytest.raises(common.UserFacingError, match=message):
            compose_create.parse_scale([word])


def test_detach_keys_are_dockers():
    assert compose_session.detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert compose_session.detach_keys("ctrl-@,ctrl-[,a") == b"\x00\x1ba"
    with pytest.raises(common.UserFacingError, match="invalid detach keys"):
        compose_session.detach_keys("ctrl-1")


class _Inner:
    def __init__(self) -> None:
        self.sent = b""

    async def send(self, data: bytes) -> None:
        self.sent += data


async def test_the_detach_keys_end_the_attachment_and_other_input_passes():
    inner = _Inner()
    stream = compose_session.Detachable(inner, b"\x10\x11")
    await stream.send(b"ls\x10")  # a prefix of the keys is held back...
    assert inner.sent == b"ls"
    await stream.send(b"x\x10\x10")  # ...and passed on once it is not them
    assert inner.sent == b"ls\x10x\x10" and not stream.detached.done()
    await stream.send(b"\x11rest")
    assert stream.detached.done() and inner.sent == b"ls\x10x\x10"
    again = compose_session.Detachable(inner, b"\x10\x11")
    await again.send(b"pwd\n\x10\x11exit\n")  # what came before the keys is passed on
    assert again.detached.done() and inner.sent.endswith(b"\x10pwd\n")
    stream.end_input()  # our input ending is not the container's


def test_the_new_verbs_parse_docker_compose_flags():
    parse = build_parser().parse_args
    args = parse(["attach", "--sig-proxy=false", "--index", "2", "--no-stdin", "web"])
    assert (args.sig_proxy, args.index, args.no_stdin, args.service) == (False, 2, True, "web")
    assert parse(["attach", "web"]).sig_proxy is True
    args = parse(["rm", "-sfv", "web"])
    assert (args.stop, args.force, args.volumes, args.services) == (True, True, True, ["web"])
    args = parse(["create", "--pull", "always", "--scale", "web=2", "web"])
    assert (args.pull, args.scale, args.services) == ("always", ["web=2"], ["web"])
    assert parse(["wait", "--down-project", "job"]).down_project is True
    assert parse(["scale", "--no-deps", "web=2"]).pairs == ["web=2"]


@pytest.mark.parametrize("answer, confirmed", [("y\n", True), ("yes\n", True), ("n\n", False),
                                               ("\n", False), ("", False)])
def test_rm_asks_on_a_pipe_and_no_answer_is_no(monkeypatch, capsys, answer, confirmed):
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    assert compose_rm.confirm("Going to remove p-web-1") is confirmed
    assert capsys.readouterr().out == "Going to remove p-web-1\n"

