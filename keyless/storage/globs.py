"""Cloud Storage's object name globs (https://cloud.google.com/storage/docs/json_api/v1/objects/list#list-object-glob),
as objects.bulkRestore's matchGlobs use them: `*` any run of characters but `/`, `**` any run
including `/`, `?` one character but `/`, `[abc]`/`[a-z]`/`[!abc]` one character of (not of) a
set, `{a,b}` one of the alternatives (not nested).

Matching simulates the pattern as an automaton, one step per character of the name, so its cost
is bounded by len(pattern) * len(name) whatever the pattern: no regular expression backtracking
a hostile glob could make exponential.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyless.errors import InvalidArgument

MAX_GLOB_CHARS = 1024
MAX_ALTERNATIVES = 64  # what `{a,b}{c,d}...` may expand to
MAX_TOKENS = 4096  # of one glob's alternatives together: bounds the cost of a match to this * len(name)


@dataclass(frozen=True)
class _Token:
    kind: str  # "lit" | "one" | "star" | "any" | "set"
    chars: frozenset[str] = frozenset()
    negate: bool = False
    ranges: tuple[tuple[str, str], ...] = ()

    def accepts(self, c: str) -> bool:
        if self.kind == "lit":
            return c in self.chars
        if self.kind in ("one", "star"):
            return c != "/"
        if self.kind == "any":
            return True
        inside = c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)
        return inside != self.negate


def _expand(glob: str) -> list[str]:
    """`{a,b}` alternatives expanded into whole patterns."""
    start = glob.find("{")
    if start < 0:
        return [glob]
    end = glob.find("}", start)
    if end < 0:
        raise InvalidArgument(f"Invalid glob '{glob[:64]}': unclosed '{{'.")
    out: list[str] = []
    for alternative in glob[start + 1:end].split(","):
        for rest in _expand(glob[end + 1:]):
            out.append(glob[:start] + alternative + rest)
            if len(out) > MAX_ALTERNATIVES:
                raise InvalidArgument(f"Invalid glob '{glob[:64]}': more than {MAX_ALTERNATIVES} alternatives.")
    return out


def _no_directory(pattern: str) -> list[str]:
    """A `**/` that starts a segment also matches no directory at all (`a/**/b` matches `a/b`):
    each such one expanded into both readings."""
    at = next((i for i in range(len(pattern)) if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/")),
              -1)
    if at < 0:
        return [pattern]
    out = []
    for rest in _no_directory(pattern[at + 3:]):
        out += [pattern[:at + 3] + rest, pattern[:at] + rest]
        if len(out) > MAX_ALTERNATIVES:
            raise InvalidArgument(f"Invalid glob '{pattern[:64]}': more than {MAX_ALTERNATIVES} alternatives.")
    return out


def _tokens(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                tokens.append(_Token("any"))
                i += 2
                continue
            tokens.append(_Token("star"))
        elif c == "?":
            tokens.append(_Token("one"))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise InvalidArgument(f"Invalid glob '{pattern[:64]}': unclosed '['.")
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            ranges, chars, j = [], set(), 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    ranges.append((body[j], body[j + 2]))
                    j += 3
                else:
                    chars.add(body[j])
                    j += 1
            tokens.append(_Token("set", frozenset(chars), negate, tuple(ranges)))
            i = end
        else:
            tokens.append(_Token("lit", frozenset(c)))
        i += 1
    return tokens


@dataclass(frozen=True)
class Glob:
    """One matchGlob, compiled."""

    source: str
    alternatives: tuple[tuple[_Token, ...], ...]

    def matches(self, name: str) -> bool:
        return any(_run(tokens, name) for tokens in self.alternatives)


def _closure(tokens: tuple[_Token, ...], states: set[int]) -> set[int]:
    """States reachable without a character: past stars and `**`s, which may match nothing."""
    out, todo = set(states), list(states)
    while todo:
        i = todo.pop()
        if i < len(tokens) and tokens[i].kind in ("star", "any") and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return out


def _run(tokens: tuple[_Token, ...], name: str) -> bool:
    states = _closure(tokens, {0})
    for c in name:
        after: set[int] = set()
        for i in states:
            if i >= len(tokens):
                continue
            t = tokens[i]
            if t.kind in ("star", "any"):
                if t.accepts(c):
                    after.add(i)
            elif t.accepts(c):
                after.add(i + 1)
        states = _closure(tokens, after)
        if not states:
            return False
    return len(tokens) in states


def compile_glob(raw: object) -> Glob:
    if not isinstance(raw, str) or not raw or len(raw) > MAX_GLOB_CHARS:
        raise InvalidArgument(f"Invalid glob: expected a non-empty string of at most {MAX_GLOB_CHARS} characters.")
    patterns = [q for p in _expand(raw) for q in _no_directory(p)]
    if len(patterns) > MAX_ALTERNATIVES:
        raise InvalidArgument(f"Invalid glob '{raw[:64]}': more than {MAX_ALTERNATIVES} alternatives.")
    alternatives = tuple(tuple(_tokens(p)) for p in patterns)
    if sum(len(a) for a in alternatives) > MAX_TOKENS:
        raise InvalidArgument(f"Invalid glob '{raw[:64]}': too complex.")
    return Glob(raw, alternatives)
