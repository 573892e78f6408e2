"""BuildKit's shell lexer, checked against moby's own test data (envVarTest, wordsTest, lex_test)."""

from __future__ import annotations

import pytest

from runtime.build import words

# moby/moby builder/dockerfile/shell/envVarTest (the "A" and "U" rows): input | expected,
# with env PWD=/home SHELL=bash KOREAN=한국어 NULL=
ENV_VAR_TEST = r"""
hello                    |     hello
he'll'o                  |     hello
he'llo                   |     error
he\'llo                  |     he'llo
he\\'llo                 |     error
abc\tdef                 |     abctdef
"abc\tdef"               |     abc\tdef
"abc\\tdef"              |     abc\tdef
'abc\tdef'               |     abc\tdef
hello\                   |     hello
hello\\                  |     hello\
"hello                   |     error
"hello\"                 |     error
"hel'lo"                 |     hel'lo
'hello                   |     error
'hello\'                 |     hello\
'hello\there'            |     hello\there
'hello\\there'           |     hello\\there
"''"                     |     ''
$.                       |     $.
$1                       |
he$1x                    |     hex
he$.x                    |     he$.x
he$pwd.                  |     he.
he$PWD                   |     he/home
he\$PWD                  |     he$PWD
he\\$PWD                 |     he\/home
"he\$PWD"                |     he$PWD
"he\\$PWD"               |     he\/home
\${}                     |     ${}
\${}aaa                  |     ${}aaa
he\${}                   |     he${}
he\${}xx                 |     he${}xx
${}                      |     error
${}aaa                   |     error
he${}                    |     error
he${}xx                  |     error
he${hi}                  |     he
he${hi}xx                |     hexx
he${PWD}                 |     he/home
he${.}                   |     error
he${XXX:-000}xx          |     he000xx
he${PWD:-000}xx          |     he/homexx
he${XXX:-$PWD}xx         |     he/homexx
he${XXX:-${PWD:-yyy}}xx  |     he/homexx
he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
he${XXX:YYY}             |     error
he${XXX:+${PWD}}xx       |     hexx
he${PWD:+${XXX}}xx       |     hexx
he${PWD:+${SHELL}}xx     |     hebashxx
he${XXX:+000}xx          |     hexx
he${PWD:+000}xx          |     he000xx
'he${XX}'                |     he${XX}
"he${PWD}"               |     he/home
"he'$PWD'"               |     he'/home'
"$PWD"                   |     /home
'$PWD'                   |     $PWD
'\$PWD'                  |     \$PWD
'"hello"'                |     "hello"
he\$PWD                  |     he$PWD
"he\$PWD"                |     he$PWD
'he\$PWD'                |     he\$PWD
he${PWD                  |     error
he${PWD:=000}xx          |     error
he${PWD:+${PWD}:}xx      |     he/home:xx
he${XXX:-\$PWD:}xx       |     he$PWD:xx
he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
안녕하세요                 |     안녕하세요
안'녕'하세요               |     안녕하세요
안'녕하세요                |     error
안녕\'하세요               |     안녕'하세요
안\\'녕하세요              |     error
안녕\t하세요               |     안녕t하세요
"안녕\t하세요"             |     안녕\t하세요
'안녕\t하세요              |     error
안녕하세요\                |     안녕하세요
안녕하세요\\               |     안녕하세요\
"안녕하세요                |     error
"안녕하세요\"              |     error
"안녕'하세요"              |     안녕'하세요
'안녕하세요                |     error
'안녕하세요\'              |     안녕하세요\
안녕$1x                    |     안녕x
안녕$.x                    |     안녕$.x
안녕$PWD                   |     안녕/home
안녕\$PWD                  |     안녕$PWD
안녕\\$PWD                 |     안녕\/home
안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
$KOREAN                    |     한국어
안녕$KOREAN                |     안녕한국어
${{aaa}                   |     error
${aaa}}                   |     }
${aaa                     |     error
${{aaa:-bbb}              |     error
${aaa:-bbb}}              |     bbb}
${aaa:-bbb                |     error
${aaa:-bbb}               |     bbb
${aaa:-${bbb:-ccc}}       |     ccc
${aaa:-bbb ${foo}         |     error
${aaa:-bbb {foo}          |     bbb {foo
${:}                      |     error
${:-bbb}                  |     error
${:+bbb}                  |     error
${NULL:-default}          |     default
${NULL-default}           |
${NULL:+set}              |
${NULL+set}               |     set
"${NULL:?}"               |     error
${NULL?}                  |
"${UNSET?}"               |     error
"${UNSET?custom}"         |     error
"${PWD:?}"                |     /home
"a ${PWD}  b"             |     a /home  b
"hello\ world"            |     hello\ world
"$"                       |     $
"\a"                      |     \a
"\\"                      |     \
"\$"                      |     $
"\""                      |     "
"${PWD}"x'y'z             |     /homexyz
"""

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _rows() -> list[tuple[str, str]]:
    rows = []
    for line in ENV_VAR_TEST.strip("\n").splitlines():
        source, _, expected = line.partition("|")
        rows.append((source.strip(), expected.strip()))
    return rows


@pytest.mark.parametrize(("source", "expected"), _rows())
def test_expand_as_moby_env_var_test(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(words.WordError):
            words.expand(source, ENV)
    else:
        assert words.expand(source, ENV) == expected


# moby's wordsTest: ENV lines add to the environment of the rows after them; a row is
# input | comma-separated words
WORDS_TEST = r"""
hello | hello
hello${hi}bye | hellobye
ENV hi=hi
hello${hi}bye | hellohibye
ENV space=abc  def
hello${space}bye | helloabc,defbye
hello"${space}"bye | helloabc  defbye
hello "${space}"bye | hello,abc  defbye
ENV leading=  ab c
hello${leading}def | hello,ab,cdef
hello"${leading}" def | hello  ab c,def
hello"${leading}" | hello  ab c
hello${leading} | hello,ab,c
ENV trailing=ab c   
hello${trailing} | helloab,c
hello${trailing}d | helloab,c,d
hello"${trailing}"d | helloab c   d
hel"lo${trailing}" | helloab c   
hello" there  " | hello there  
hello there     | hello,there
hello\ there | hello there
hello" there | error
hello\" there | hello",there
hello"\\there" | hello\there
hello"\there" | hello\there
hello'\\there' | hello\\there
hello'\there' | hello\there
hello'$there' | hello$there
"""


def _word_rows() -> list[tuple[str, dict[str, str], list[str]]]:
    env: dict[str, str] = {}
    rows = []
    for line in WORDS_TEST.strip("\n").splitlines():
        if line.startswith("ENV "):
            key, _, value = line[4:].lstrip(" ").partition("=")
            env[key] = value
            continue
        source, _, expected = line.partition("|")
        rows.append((source.strip(), dict(env), expected.lstrip(" ").split(",")))
    return rows


@pytest.mark.parametrize(("source", "env", "expected"), _word_rows())
def test_expand_words_as_moby_words_test(source: str, env: dict[str, str], expected: list[str]) -> None:
    if expected == ["error"]:
        with pytest.raises(words.WordError):
            words.expand_words(source, env)
    else:
        assert words.expand_words(source, env) == expected


# lex_test.go TestProcessWithMatches: input, env, expected (None: an error)
MATCHES = [
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
    ("${FOO:-}", {"FOO": "xxx"}, "xxx"),
    ("${FOO:-}", {}, ""),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
    ("${FOO?aaa}", {"FOO": "xxx"}, "xxx"),
    ("${BAR?bbb}", {"BAR": ""}, ""),
    ("${BAZ?ccc}", {}, None),
    ("${FOO:?aaa}", {"FOO": "xxx"}, "xxx"),
    ("${BAR:?bbb}", {"BAR": ""}, None),
    ("${BAZ:?ccc}", {}, None),
    ("${BAZ:?}", {}, None),
    ("${FOO=aaa}", {"FOO": "xxx"}, None),
    ("${FOO=:aaa}", {"FOO": "xxx"}, None),
    ("${FOO=}", {}, None),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy."),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy"),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt"),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"}, "/foo/b/c.txt - /foo/c.txt"),
    ("${FOO/$NEEDLE/$REPLACEMENT}", {"FOO": "http://google.de", "NEEDLE": "http://",
                                     "REPLACEMENT": "https://"}, "https://google.de"),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy"),
    ("${FOO//ww}", {"FOO": "xxyy"}, None),
    ("${FOO//}", {"FOO": "xxyy"}, None),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy"),
    ("${FOO///}", {}, ""),
    ("something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
     {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "something-v1.2.3.linux-arm-v7.tar.gz"),
]


@pytest.mark.parametrize(("source", "env", "expected"), MATCHES)
def test_expand_modifiers_as_moby_lex_test(source: str, env: dict[str, str], expected: str | None) -> None:
    if expected is None:
        with pytest.raises(words.WordError):
            words.expand(source, env)
    else:
        assert words.expand(source, env) == expected


def test_mandatory_message_is_expanded_and_named() -> None:
    with pytest.raises(words.WordError, match="VAR: message herex"):
        words.expand("${VAR:?message here$ARG}", {"VAR": "", "ARG": "x"})
    with pytest.raises(words.WordError, match="VAR: is not allowed to be unset"):
        words.expand("${VAR?}", {})


def test_backtick_escape_directive() -> None:
    assert words.expand("C:\\dir\\`$X", {"X": "1"}, escape="`") == "C:\\dir\\$X"
    assert words.expand_words("a` b c", {}, escape="`") == ["a b", "c"]
    assert words.expand('"a`"b"', {}, escape="`") == 'a"b'


def test_split_raw_keeps_quotes_escapes_and_variables() -> None:
    assert words.split_raw("<<EOF cat <<-'EO T' \"$X\" a\\ b") == [
        "<<EOF", "cat", "<<-'EO T'", '"$X"', "a\\ b"]


def test_split_key_values_both_forms() -> None:
    assert words.split_key_values(["A=1", 'B="2 3"', "C="]) == [("A", "1"), ("B", '"2 3"'), ("C", "")]
    assert words.split_key_values(["C", "d", "e"]) == [("C", "d e")]
    assert words.split_key_values(["A=1=2"]) == [("A", "1=2")]
    with pytest.raises(words.WordError):
        words.split_key_values(["A=1", "B"])
    with pytest.raises(words.WordError):
        words.split_key_values(["=1"])


def test_split_args_keeps_no_default_apart_from_empty() -> None:
    assert words.split_args(["A", "B=", "C=x=y"]) == [("A", None), ("B", ""), ("C", "x=y")]
    with pytest.raises(words.WordError):
        words.split_args(["=x"])


def test_env_and_legacy_values_expanded_as_single_words() -> None:
    env = {"A": "x y"}
    assert [(k, words.expand(v, env)) for k, v in words.split_key_values(["K=$A", 'L="$A  z"'])] == [
        ("K", "x y"), ("L", "x y  z")]
