"""Cloud Storage's object name globs (keyless.storage.globs), as objects.bulkRestore's matchGlobs
use them (issue #20): Google's syntax, and a cost bounded by the pattern's length whatever it is."""

from __future__ import annotations

import time

import pytest

from keyless.errors import InvalidArgument
from keyless.storage.globs import compile_glob

pytestmark = pytest.mark.store_independent


@pytest.mark.parametrize(("glob", "name", "matches"), [
    ("*.txt", "a.txt", True), ("*.txt", "dir/a.txt", False), ("**.txt", "dir/a.txt", True),
    ("a/**/b", "a/b", True), ("a/**/b", "a/x/y/b", True), ("a/**/b", "a/xb", False),
    ("**/*.log", "x.log", True), ("**/*.log", "d/e/x.log", True), ("**", "any/thing", True),
    ("?x", "ax", True), ("?x", "/x", False), ("[a-c]z", "bz", True), ("[!a-c]z", "bz", False),
    ("[!a-c]z", "dz", True), ("{logs,data}/*", "data/q", True), ("{logs,data}/*", "tmp/q", False),
    ("exact", "exact", True), ("exact", "exact2", False), ("a*b*c", "aXbYc", True), ("a*b*c", "aXbY", False),
])
def test_glob_syntax(glob: str, name: str, matches: bool) -> None:
    assert compile_glob(glob).matches(name) is matches


@pytest.mark.parametrize("hostile", ["", "[abc", "{a,b", "{a,b}" * 7, "x" * 1025, 7, None, "**/" * 20])
def test_hostile_globs_refused(hostile: object) -> None:
    with pytest.raises(InvalidArgument):
        compile_glob(hostile)


def test_backtracking_glob_costs_its_length() -> None:
    """A regular expression from `*a*a...*b` backtracks exponentially on `aaaa...`; the automaton does not."""
    glob = compile_glob("*a" * 60 + "b")
    started = time.perf_counter()
    assert not glob.matches("a" * 1024)
    assert time.perf_counter() - started < 2
