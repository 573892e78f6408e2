""".dockerignore read and matched as moby's patternmatcher does, which is not gitignore.

A pattern is anchored at the context's root (`*.log` is not `sub/a.log`; `**/*.log` is), it
matches a path when it matches the path or one of its parent directories (`node_modules`
excludes `node_modules/x` but not `pkg/node_modules/x`), the last pattern that matches wins,
and `!` takes a path back in, under an excluded directory too. Patterns are trimmed,
`Clean`ed (`build/` is `build`, which also matches a file) and a leading `/` is dropped.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from runtime.build import gopath


class IgnoreError(ValueError):
    """A pattern moby refuses: a lone `!`, a malformed class."""


@dataclasses.dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without its `!`
    exclusion: bool  # a `!` pattern: takes paths back in
    kind: str  # "exact", "prefix", "suffix" or "regexp", as patternmatcher compiles it
    regexp: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    """patternmatcher's Pattern.compile: plain names compare as strings, `dir/**` as a
    prefix, `**/name` as a suffix, anything else becomes a regexp."""
    out = ["^"]
    kind = "exact"
    i, n = 0, len(text)
    first = True
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regexp"
                else:
                    out.append("(.*/)?")
                    kind = "regexp"
                if first:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in ".+()|{}$":
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append("\\" + text[i])
                i += 1
                kind = "regexp"
            else:
                out.append("\\\\")
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)
        first = False
    regexp = None
    if kind == "regexp":
        try:
            regexp = re.compile("".join(out) + "$", re.DOTALL)
        except re.error as err:
            raise IgnoreError(f"bad pattern {text!r}: {err}") from None
    return _Pattern(text=text, exclusion=exclusion, kind=kind, regexp=regexp)


class Matcher:
    """Patterns in order, as patternmatcher.New takes them (each trimmed and cleaned)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = gopath.clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise IgnoreError('illegal exclusion pattern: "!"')
                text = text[1:]
            if len(text) > 1 and text.startswith("/"):
                text = text[1:]
            try:
                gopath.match(text, ".")
            except gopath.BadPattern as err:
                raise IgnoreError(str(err)) from None
            self.patterns.append(_compile(text, exclusion))
        self._exclusions = [p for p in self.patterns if p.exclusion]
        # an exception with a wildcard may take back anything anywhere (fsutil's walker)
        self._wild_exclusions = any(gopath.has_meta(_without_trailing_glob(p.text))
                                    for p in self._exclusions)
        self._dirs: dict[str, tuple[bool, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context, '/'-separated) is left out of it."""
        path = gopath.clean(path)
        if path == "." or not self.patterns:
            return False
        parent = path.rpartition("/")[0]
        return self._results(path, self._dir_results(parent) if parent else None)[0]

    def may_include_under(self, dir: str) -> bool:
        """Whether some `!` pattern could take back a path under the excluded `dir`: if not,
        the walk need not enter it (fsutil's shortcut, so ignored trees cost nothing)."""
        if not self._exclusions:
            return False
        if self._wild_exclusions:
            return True
        prefix = gopath.clean(dir) + "/"
        return any((_without_trailing_glob(p.text) + "/").startswith(prefix) for p in self._exclusions)

    def _dir_results(self, dir: str) -> tuple[bool, ...]:
        cached = self._dirs.get(dir)
        if cached is None:
            parent = dir.rpartition("/")[0]
            cached = self._results(dir, self._dir_results(parent) if parent else None)[1]
            self._dirs[dir] = cached
        return cached

    def _results(self, path: str, parent: tuple[bool, ...] | None) -> tuple[bool, tuple[bool, ...]]:
        """patternmatcher's MatchesUsingParentResults: whether `path` is excluded, and which
        patterns matched it or a parent (for its children)."""
        matched = False
        per_pattern = []
        for i, pattern in enumerate(self.patterns):
            hit = parent[i] if parent is not None else False
            if not hit and pattern.exclusion == matched:
                hit = pattern.match(path)
            per_pattern.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, tuple(per_pattern)


def _without_trailing_glob(text: str) -> str:
    for suffix in ("/**", "/*"):
        if text.endswith(suffix):
            return text[:-len(suffix)]
    return text


def parse(text: str) -> list[str]:
    """The patterns of a .dockerignore (ignorefile.ReadAll): `#` lines skipped, each line
    trimmed, `!` kept in front, the rest cleaned and made relative to the context."""
    patterns = []
    for line in text.lstrip("\ufeff").splitlines():
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = gopath.clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def read(context: Path, dockerfile: str) -> Matcher:
    """The context's ignore patterns: `<Dockerfile>.dockerignore` beside the Dockerfile if
    there is one, else `.dockerignore` at the context's root, else none."""
    path = Path(dockerfile)
    if not path.is_absolute():
        path = context / path
    for candidate in (path.with_name(path.name + ".dockerignore"), context / ".dockerignore"):
        try:
            text = candidate.read_text(encoding="utf-8", errors="surrogateescape")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        try:
            return Matcher(parse(text))
        except IgnoreError as err:
            raise IgnoreError(f"{candidate.name}: {err}") from None
    return Matcher([])
