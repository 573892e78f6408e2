"""Go's path/filepath Clean and Match on '/'-separated paths, as docker applies them to a build context.

COPY sources are globbed and .dockerignore patterns are checked and cleaned with Go's rules,
which are not Python's: fnmatch lets `*` cross `/` and reads `[!a]` as a negation, while
Go's `[!a]` is a class of `!` and `a` (only `^` negates) and a malformed pattern is an error.
"""

from __future__ import annotations


class BadPattern(ValueError):
    """filepath.ErrBadPattern: an unclosed `[`, an empty range, a trailing `\\`."""

    def __init__(self, pattern: str) -> None:
        super().__init__(f"syntax error in pattern: {pattern!r}")


def clean(path: str) -> str:
    """filepath.Clean: one `/` between names, no `.`, `..` resolved lexically (kept at the
    front of a relative path, dropped at the root), `.` for the empty path."""
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def has_meta(pattern: str) -> bool:
    """Whether `pattern` has a character Match treats specially (else it names one path)."""
    return any(ch in pattern for ch in "*?[\\")


def match(pattern: str, name: str) -> bool:
    """filepath.Match: `*` any run without `/`, `?` one character but `/`, `[a-z]`, `[^a]`,
    `\\` escapes; the whole name must match. BadPattern when the pattern is malformed."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return "/" not in name
        rest, ok = _match_chunk(chunk, name)
        if ok and (not rest or pattern):
            name = rest
            continue
        if star:
            matched = False
            i = 0
            while i < len(name) and name[i] != "/":
                rest, ok = _match_chunk(chunk, name[i + 1:])
                if ok and not (not pattern and rest):
                    name = rest
                    matched = True
                    break
                i += 1
            if matched:
                continue
        while pattern:  # the rest must still be a valid pattern
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return not name


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern.startswith("*"):
        pattern = pattern[1:]
        star = True
    in_range = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif ch == "[":
            in_range = True
        elif ch == "]":
            in_range = False
        elif ch == "*" and not in_range:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    """The rest of `s` after `chunk` matched its start, and whether it did; the chunk is read
    to its end even after a mismatch, so that a malformed one is always an error."""
    whole = chunk
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        ch = chunk[0]
        if ch == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = chunk.startswith("^")
            if negated:
                chunk = chunk[1:]
            matched = False
            ranges = 0
            while True:
                if chunk.startswith("]") and ranges > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk, whole)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:], whole)
                if not failed and lo <= r <= hi:
                    matched = True
                ranges += 1
            if matched == negated:
                failed = True
        elif ch == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if ch == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPattern(whole)
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def _get_esc(chunk: str, whole: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPattern(whole)
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPattern(whole)
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise BadPattern(whole)
    return r, rest
