""".dockerignore matching, checked against moby/patternmatcher's own test tables and Go's filepath.Match tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.build import gopath, ignore

# patternmatcher_test.go TestMatches: pattern, path, whether it is excluded (exact or inexact)
MATCHES = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "/", True), ("**/", "/", True), ("**", "dir/file", True), ("**/", "dir/file", True),
    ("**", "dir/file/", True), ("**/", "dir/file/", True), ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True), ("dir/**", "dir/file", True), ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True), ("dir/**", "dir/dir2/file/", True), ("**/dir", "dir", True),
    ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True), ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True), ("**file", "file", True),
    ("**file", "dir/file", True), ("**/file", "dir/file", True), ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True), ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True), ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True), (".*", ".foo", True), (".*", "foo", False),
    ("abc.def", "abcdef", False), ("abc.def", "abc.def", True), ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False), ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True), ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False), ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True), ("a\\*b", "a*b", True),
]

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    # patternmatcher_test.go's single cases
    (["*"], "fileutils.go", True),
    (["*.go"], "fileutils.go", True),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["*.go"], ".", False),
    ([], "any/path/there", False),
    # what differs from gitignore (pathspec)
    (["*.log"], "sub/a.log", False),
    (["*.log"], "a.log", True),
    (["**/*.log"], "sub/a.log", True),
    (["node_modules"], "node_modules/x", True),
    (["node_modules"], "pkg/node_modules/x", False),
    (["build/"], "build", True),
    (["[!a]"], "!", True),
    (["[!a]"], "b", False),
    (["  docs  "], "docs/x", True),
    (["./docs/../src"], "src/main.c", True),
    (["/rooted"], "rooted", True),
    (["docs", "!docs/keep", "docs/keep/tmp"], "docs/keep/tmp/x", True),
    (["docs", "!docs/keep", "docs/keep/tmp"], "docs/keep/y", False),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), MATCHES)
def test_single_pattern_as_patternmatcher(pattern: str, path: str, excluded: bool) -> None:
    assert ignore.Matcher([pattern]).excluded(path) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), MULTI)
def test_patterns_in_order_as_patternmatcher(patterns: list[str], path: str, excluded: bool) -> None:
    assert ignore.Matcher(patterns).excluded(path) is excluded


@pytest.mark.parametrize("patterns", [["!"], ["["], ["a[", "b"], ["[-x]"]])
def test_bad_patterns_refused(patterns: list[str]) -> None:
    with pytest.raises(ignore.IgnoreError):
        ignore.Matcher(patterns)


def test_excluded_trees_are_walked_only_when_an_exception_may_reach_inside() -> None:
    assert not ignore.Matcher(["docs"]).may_include_under("docs")
    assert ignore.Matcher(["docs", "!docs/README.md"]).may_include_under("docs")
    assert not ignore.Matcher(["docs", "!src/x"]).may_include_under("docs")
    assert ignore.Matcher(["docs", "!docs"]).may_include_under("docs")
    assert ignore.Matcher(["**", "!a/b/c"]).may_include_under("a/b")
    assert not ignore.Matcher(["**", "!a/b/c"]).may_include_under("a/x")
    assert ignore.Matcher(["docs", "!**/*.md"]).may_include_under("docs")
    assert not ignore.Matcher(["docs", "!docs2/*"]).may_include_under("docs")


def test_parse_as_ignorefile_read_all() -> None:
    content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    assert ignore.parse(content) == [
        "test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]
    assert ignore.parse("\ufeff# c\n  a/./b/  \r\n") == ["a/b"]


def test_read_prefers_the_dockerfile_own_ignore_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".dockerignore").write_text("*.md\n")
    assert ignore.read(tmp_path, "sub/Dockerfile.dev").excluded("a.md")
    (tmp_path / "sub" / "Dockerfile.dev.dockerignore").write_text("*.txt\n")
    own = ignore.read(tmp_path, "sub/Dockerfile.dev")
    assert own.excluded("a.txt") and not own.excluded("a.md")
    assert not ignore.read(tmp_path / "sub", "Dockerfile")


def test_read_names_the_file_of_a_bad_pattern(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("ok\n!\n")
    with pytest.raises(ignore.IgnoreError, match=".dockerignore"):
        ignore.read(tmp_path, "Dockerfile")


# Go's path/filepath match_test.go: pattern, name, match, or None for ErrBadPattern
GO_MATCH = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", False), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False), ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False), ("[\\]a]", "]", True),
    ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False),
    ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False), ("[]a]", "]", None),
    ("[-]", "-", None), ("[x-]", "x", None), ("[x-]", "-", None), ("[x-]", "z", None),
    ("[-x]", "x", None), ("[-x]", "-", None), ("[-x]", "a", None), ("\\", "a", None),
    ("[a-b-c]", "a", None), ("[", "a", None), ("[^", "a", None), ("[^bc", "a", None),
    ("a[", "a", None), ("a[", "ab", None), ("a[", "x", None), ("a/b[", "x", None),
    ("*x", "xxx", True), ("[!a]", "!", True), ("[!a]", "b", False),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), GO_MATCH)
def test_go_filepath_match(pattern: str, name: str, expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(gopath.BadPattern):
            gopath.match(pattern, name)
    else:
        assert gopath.match(pattern, name) is expected


@pytest.mark.parametrize(("path", "cleaned"), [
    ("", "."), ("abc", "abc"), ("abc/def", "abc/def"), ("a/b/c", "a/b/c"), (".", "."), ("..", ".."),
    ("../..", "../.."), ("../../abc", "../../abc"), ("/abc", "/abc"), ("/", "/"), ("abc/", "abc"),
    ("abc/def/", "abc/def"), ("/abc/", "/abc"), ("//abc", "/abc"), ("///abc", "/abc"),
    ("abc//def//ghi", "abc/def/ghi"), ("abc/./def", "abc/def"), ("/./abc/def", "/abc/def"),
    ("abc/.", "abc"), ("abc/def/ghi/../jkl", "abc/def/jkl"), ("abc/def/../ghi/../jkl", "abc/jkl"),
    ("abc/def/..", "abc"), ("abc/def/../..", "."), ("/abc/def/../..", "/"), ("abc/def/../../..", ".."),
    ("/abc/def/../../..", "/"), ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
    ("/../abc", "/abc"), ("abc/./../def", "def"), ("abc//./../def", "def"), ("abc/../../././../def", "../../def"),
])
def test_go_filepath_clean(path: str, cleaned: str) -> None:
    assert gopath.clean(path) == cleaned
