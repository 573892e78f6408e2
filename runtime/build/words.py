"""Dockerfile words as BuildKit's shell lexer reads them: quotes, the escape token, `$V` expansion.

This follows moby/buildkit frontend/dockerfile/shell/lex.go rule for rule, since a Dockerfile
means what BuildKit makes of it, not what a POSIX shell would: single quotes keep everything,
double quotes keep everything but `$` and the escape token before `"`, `$` or itself, an
unquoted escape token keeps the next character, and `${V:-x} ${V-x} ${V:+x} ${V+x} ${V:?m}
${V?m} ${V#p} ${V##p} ${V%p} ${V%%p} ${V/p/r} ${V//p/r}` are expanded. Expansion happens
before splitting, and the expanded text of a `$V` is split on whitespace when it is not quoted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class WordError(ValueError):
    """A word that cannot be read: an open quote, a bad `${...}`, or `${V:?message}` unset."""


class _Words:
    """Whitespace splitting of the result as lex.go's wordsStruct: quoted or escaped text and a
    variable's value differ only in whether their spaces split."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Lexer:
    """One pass over one word (lex.go's shellWord)."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str, *, raw: bool = False) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        # raw: quotes and escapes are kept and `$` is plain text (splitting only)
        self.raw = raw
        self.raw_escapes = raw

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def process(self, stop: str = "", raw_escapes: bool | None = None) -> tuple[str, list[str]]:
        saved = self.raw_escapes
        if raw_escapes is not None:
            self.raw_escapes = raw_escapes
        try:
            return self._process(stop)
        finally:
            self.raw_escapes = saved

    def _process(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        handlers: dict[str, Callable[[], str]] = {}
        if not self.raw:
            handlers["$"] = self.dollar
        handlers["'"] = self.single_quote
        handlers['"'] = self.double_quote
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words.result()
            handler = handlers.get(ch)
            if handler is not None:
                part = handler()
                result.append(part)
                if ch == "$":
                    words.add_string(part)
                else:
                    words.add_raw(part)
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    words.add_raw(ch)
                    result.append(ch)
                ch = self.next()
                if not ch:
                    break
                words.add_raw(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop:
            raise WordError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.raw else []
        while True:
            ch = self.next()
            if not ch:
                raise WordError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        quote = self.next()
        out = [quote] if self.raw else []
        while True:
            ch = self.peek()
            if not ch:
                raise WordError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw:
                    out.append(ch)
                return "".join(out)
            if ch == "$" and not self.raw:
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        ch = self.peek()
        if ch and ch.isdigit():
            while self.peek() and self.peek().isdigit():
                self.next()
            return self.text[start:self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.next()
        return self.text[start:self.pos]

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.lookup(name)[0]
        self.next()
        ch = self.peek()
        if not ch:
            raise WordError("syntax error: missing '}'")
        if ch in "{}:":
            raise WordError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            return self.lookup(name)[0]
        if op == ":":
            ch = self.next()
            return self._modifier(name, ch, op + ch, null_is_unset=True)
        if op and op in "+-?#%":
            return self._modifier(name, op, op, null_is_unset=False)
        if op == "/":
            return self._replace(name)
        raise WordError(f"unsupported modifier ({op}) in substitution" if op else "syntax error: missing '}'")

    def _modifier(self, name: str, op: str, written: str, *, null_is_unset: bool) -> str:
        try:
            word, _ = self.process("}", raw_escapes=op in ("#", "%"))
        except WordError:
            if not self.peek():
                raise WordError("syntax error: missing '}'") from None
            raise
        value, is_set = self.lookup(name)
        empty = not is_set or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if not is_set:
                raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise WordError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if op not in ("#", "%"):
            raise WordError(f"unsupported modifier ({written}) in substitution")
        greedy = word.startswith(op)
        if greedy:
            word = word[1:]
        if op == "%":
            return _reverse(_trim_prefix(_reverse_pattern(word), _reverse(value), greedy))
        return _trim_prefix(word, value, greedy)

    def _replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process("/", raw_escapes=True)
        except WordError:
            if not self.peek():
                raise WordError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.process("}", raw_escapes=True)
        except WordError:
            if not self.peek():
                raise WordError("syntax error: missing '}'") from None
            raise
        value, _ = self.lookup(name)
        regex = _shell_pattern(pattern, greedy=True, anchored=False)
        if replace_all:
            return regex.sub(lambda _m: replacement, value)
        return regex.sub(lambda _m: replacement, value, count=1)


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """`?` one character, `*` any run (shortest unless greedy), `\\` escapes `*`, `?`, `\\`, and
    before `}` or `/` is dropped (lex.go's convertShellPatternToRegex)."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            if following in ("}", "/"):
                continue
            if following not in ("*", "?", "\\"):
                raise WordError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'")
            out.append(re.escape(following))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _shell_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse(text: str) -> str:
    return text[::-1]


def _reverse_pattern(pattern: str) -> str:
    """The pattern read backwards, each `\\x` escape kept in front of its character."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            out.append(pattern[i:i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(reversed(out))


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """One word with quotes removed and variables expanded, spaces kept (ProcessWord): for
    ENV and LABEL values, WORKDIR, USER, FROM, `--chown` and other single-word places."""
    return _Lexer(word, env, escape).process()[0]


def expand_words(text: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """The words of `text` after expansion (ProcessWords): quoted spaces and escaped ones stay
    in their word, a variable's unquoted value is split. For EXPOSE, VOLUME, COPY sources..."""
    return _Lexer(text, env, escape).process()[1]


def split_raw(text: str, *, escape: str = "\\") -> list[str]:
    """The words of `text` as written: quotes, escapes and `$` kept (BuildKit's RawQuotes and
    RawEscapes, used to find heredoc markers and to split a shell form into its words)."""
    return _Lexer(text, {}, escape, raw=True).process()[1]


def split_key_values(words: Sequence[str]) -> list[tuple[str, str]]:
    """`K=V` words as (K, V) pairs, each split at its first `=`; words without `=` are the
    legacy `ENV K V...` form: the first is the key, the rest joined by a space its value.
    Keys and values come back as given: expand each afterwards (ENV, LABEL)."""
    if not words:
        return []
    if "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise WordError(f"can't find = in {word!r}. Must be of the form: name=value")
        if not key:
            raise WordError("names can not be blank")
        pairs.append((key, value))
    return pairs


def split_args(words: Sequence[str]) -> list[tuple[str, str | None]]:
    """ARG's words: `NAME` (no default: None) or `NAME=default`, each on its own."""
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not key:
            raise WordError("ARG names can not be blank")
        pairs.append((key, value if sep else None))
    return pairs
