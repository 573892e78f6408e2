"""The Dockerfile parser: BuildKit's grammar, heredoc flags recovered, instructions and flags checked."""

from __future__ import annotations

import pytest

from runtime.build import dockerfile, words

MULTI_STAGE = """\
# syntax=docker/dockerfile:1
ARG BASE=busybox:latest
FROM --platform=linux/amd64 ${BASE} AS build
RUN --mount=type=cache,target=/cache --network=none echo hi \\
  # a comment inside the continuation
  && echo there
COPY --from=build --chown=1:2 --chmod=0755 --link --exclude=*.md --exclude=x ["a b", "/c/"]
ENV A=1 B="2 3"
ENV LEGACY value  with spaces
LABEL "key one"=v k2=v2
HEALTHCHECK --interval=5s --retries=3 CMD ["true"]
ONBUILD RUN echo x
EXPOSE 80/tcp 90
SHELL ["/bin/sh", "-c"]
CMD echo done
"""


def test_instructions_as_buildkit_reads_them() -> None:
    parsed = dockerfile.parse(MULTI_STAGE)
    assert parsed.escape == "\\"
    got = [(i.cmd, i.line, i.end_line, i.flags, i.args, i.json_form) for i in parsed.instructions]
    assert got == [
        ("arg", 2, 2, (), ("BASE=busybox:latest",), False),
        ("from", 3, 3, ("--platform=linux/amd64",), ("${BASE}", "AS", "build"), False),
        ("run", 4, 6, ("--mount=type=cache,target=/cache", "--network=none"),
         ("echo hi   && echo there",), False),
        ("copy", 7, 7, ("--from=build", "--chown=1:2", "--chmod=0755", "--link", "--exclude=*.md",
                        "--exclude=x"), ("a b", "/c/"), True),
        ("env", 8, 8, (), ("A=1", 'B="2 3"'), False),
        ("env", 9, 9, (), ("LEGACY=value  with spaces",), False),
        ("label", 10, 10, (), ('"key one"=v', "k2=v2"), False),
        ("healthcheck", 11, 11, ("--interval=5s", "--retries=3"), ("CMD", "true"), True),
        ("onbuild", 12, 12, (), ("RUN echo x",), False),
        ("expose", 13, 13, (), ("80/tcp", "90"), False),
        ("shell", 14, 14, (), ("/bin/sh", "-c"), True),
        ("cmd", 15, 15, (), ("echo done",), False),
    ]
    copy = parsed.instructions[3]
    assert copy.flag("from") == "build" and copy.flag("link") == "true" and copy.flag("parents") is None
    assert copy.flag_values("exclude") == ("*.md", "x")


def test_env_and_label_args_feed_split_key_values_then_expand() -> None:
    env, legacy, label = dockerfile.parse(MULTI_STAGE).instructions[4:7]
    expanded = [(words.expand(k, {}), words.expand(v, {}))
                for i in (env, legacy, label) for k, v in words.split_key_values(i.args)]
    assert expanded == [("A", "1"), ("B", "2 3"), ("LEGACY", "value  with spaces"),
                        ("key one", "v"), ("k2", "v2")]


def test_heredocs_keep_chomp_and_quoted_delimiters() -> None:
    text = ("FROM scratch\n"
            "RUN <<EOF cat <<-'EOT' 3<<\"X\"\n"
            "echo a $X\n"
            "EOF\n"
            "\tb\n"
            "\t  c\n"
            "\tEOT\n"
            "$y\n"
            "X\n"
            "COPY <<-EOF /x\n"
            "\thello\n"
            "\tEOF\n")
    run, copy = dockerfile.parse(text).instructions[1:]
    assert run.heredocs == (
        dockerfile.Heredoc(name="EOF", content="echo a $X\n", chomp=False, expand=True),
        dockerfile.Heredoc(name="EOT", content="b\n  c\n", chomp=True, expand=False),
        dockerfile.Heredoc(name="X", content="$y\n", chomp=False, expand=False),
    )
    assert (run.line, run.end_line) == (2, 9)
    assert copy.args == ("<<-EOF", "/x")
    assert copy.heredocs == (dockerfile.Heredoc(name="EOF", content="hello\n", chomp=True, expand=True),)


def test_escape_directive_bom_and_crlf() -> None:
    text = "\ufeff# escape=`\r\nFROM scratch\r\nRUN echo a `\r\n  b\r\nCOPY c:\\a d\r\n"
    parsed = dockerfile.parse(text)
    assert parsed.escape == "`"
    assert [(i.cmd, i.line, i.args) for i in parsed.instructions] == [
        ("from", 2, ("scratch",)), ("run", 3, ("echo a   b",)), ("copy", 5, ("c:\\a", "d"))]


@pytest.mark.parametrize(("text", "escape"), [
    ("# a comment\n# escape=`\nFROM scratch\n", "\\"),
    ("\n# escape=`\nFROM scratch\n", "\\"),
    ("  # escape=`\nFROM scratch\n", "`"),
    ("#ESCAPE = `\nFROM scratch\n", "`"),
    ("# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\n", "`"),
])
def test_directives_only_at_the_top_as_the_parser_reads_them(text: str, escape: str) -> None:
    assert dockerfile.parse(text).escape == escape


def test_onbuild_trigger_keeps_its_flags_and_heredoc() -> None:
    text = "FROM scratch\nONBUILD COPY --from=x a b\nONBUILD RUN <<EOF\necho hi\nEOF\n"
    first, second = dockerfile.parse(text).instructions[1:]
    assert first.args == ("COPY --from=x a b",)
    assert second.args == ("RUN <<EOF\necho hi\nEOF",) and (second.line, second.end_line) == (3, 5)


@pytest.mark.parametrize(("text", "message"), [
    ("FROM a\nRUNN x\n", "Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)"),
    ("FROM a\nCOPY --frm=x a b\n", "Dockerfile:2: Unknown flag: frm"),
    ("FROM a\nCOPY --from a b\n", "Dockerfile:2: Missing a value on flag: from"),
    ("FROM a\nCOPY --from=x --from=y a b\n", "Dockerfile:2: Duplicate flag specified: from"),
    ("FROM a\nCOPY --link=maybe a b\n", "Dockerfile:2: Expecting boolean value for flag link, not: maybe"),
    ("FROM a\nADD --from=x a b\n", "Dockerfile:2: Unknown flag: from"),
    ("FROM a\nENV --x=1 A=1\n", "Dockerfile:2: Unknown flag: x"),
    ("FROM --plat=x a\n", "Dockerfile:1: Unknown flag: plat"),
    ("FROM a\nRUN --network=bridge x\n", "Dockerfile:2: unsupported network mode 'bridge'"),
    ("FROM a\nHEALTHCHECK --interval=1us CMD true\n", "Dockerfile:2: Interval 'interval' cannot be"),
    ("FROM a\nHEALTHCHECK --interval=soon CMD true\n", "Dockerfile:2: time: invalid duration 'soon'"),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD true\n", "Dockerfile:2: --retries cannot be negative (-1)"),
    ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK WHAT x\n", "Dockerfile:2: Unknown type 'WHAT' in HEALTHCHECK (try CMD)"),
    ("RUN x\nFROM a\n", "Dockerfile:1: no build stage in current context"),
    ("ARG X\n", "Dockerfile: no build stage in current context"),
    ("# only a comment\n", "Dockerfile: file with no instructions"),
    ("FROM a\n\n\nRUN <<EOF\nabc\n", "Dockerfile:4: unterminated heredoc"),
    ('FROM a\nCMD ["a", 1]\n', "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
    ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
    ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", "Dockerfile:1: invalid name for build stage: '1x'"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM x\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nONBUILD COPY --bogus a b\n", "Dockerfile:2: ONBUILD trigger: Unknown flag: bogus"),
    ("FROM a\nSHELL sh -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
    ("FROM a\nCOPY a\n", "Dockerfile:2: COPY requires at least two arguments"),
    ("FROM a\nCOPY a <<EOF\nx\nEOF\n", "Dockerfile:2: COPY cannot accept a heredoc as a destination"),
    ("FROM a\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
    ("FROM a\nENV A=1 B\n", "Dockerfile:2: Syntax error - can't find = in \"B\""),
    ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
    ("FROM a\nARG =x\n", "Dockerfile:2: ARG names can not be blank"),
    ("FROM a\nVOLUME [\"\"]\n", "Dockerfile:2: VOLUME specified can not be an empty string"),
    ("FROM a\r\nRUN x\r\nRUNN\r\n", "Dockerfile:3: unknown instruction: RUNN"),
])
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(dockerfile.DockerfileError) as caught:
        dockerfile.parse(text)
    assert str(caught.value).startswith(message)


def test_error_carries_file_and_line() -> None:
    with pytest.raises(dockerfile.DockerfileError) as caught:
        dockerfile.parse("FROM a\nRUNN x\n", "app/Dockerfile.dev")
    assert (caught.value.file, caught.value.line) == ("app/Dockerfile.dev", 2)
    assert str(caught.value).startswith("app/Dockerfile.dev:2: unknown instruction: RUNN")


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("5s", 5_000_000_000), ("1m30s", 90_000_000_000), ("1.5h", 5_400_000_000_000),
    ("500ms", 500_000_000), ("10us", 10_000), ("3ns", 3)])
def test_duration_as_go_reads_it(text: str, ns: int) -> None:
    assert dockerfile.duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1m 2s"])
def test_bad_duration(text: str) -> None:
    with pytest.raises(ValueError):
        dockerfile.duration_ns(text)
