"""The Cloud Logging query language: parse a filter into a tree and evaluate it on LogEntry JSON.

Follows https://cloud.google.com/logging/docs/view/logging-query-language: comparisons
(`= != < <= > >= : =~ !~`), `AND`/`OR`/`NOT`/`-`, implicit AND between terms, parentheses,
NOT binding tightest, then OR, then AND; dotted field paths with quoted segments; value groups
(`field = ("a" OR "b")`); global restrictions (bare terms); `log_id()`; severities by rank;
RFC 3339 timestamps compared as time. Regular expressions are RE2 (linear time), as Google's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from keyless.errors import InvalidArgument

try:  # RE2 is what Google runs: linear time whatever the pattern, and the same syntax.
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 is installed with Keyless
    _re2 = None

MAX_FILTER_CHARS = 20_000  # entries.list documents this limit
MAX_DEPTH = 64  # parentheses and negations nested
MAX_TERMS = 1_000  # comparisons in one filter
MAX_REGEX_CHARS = 1_000
MAX_REGEXES = 20  # each compiled RE2 may hold up to its max_mem of DFA state while matching
SEVERITIES = {"DEFAULT": 0, "DEBUG": 100, "INFO": 200, "NOTICE": 300, "WARNING": 400, "ERROR": 500,
              "CRITICAL": 600, "ALERT": 700, "EMERGENCY": 800}
TIMESTAMP_FIELDS = {("timestamp",), ("receiveTimestamp",)}
OPERATORS = ("=~", "!~", "!=", ">=", "<=", "=", "<", ">", ":")
_OPERATOR_CHARS = set("=!<>:~")
_WORD_END = set(" \t\r\n\f\v()\"") | _OPERATOR_CHARS | {"."}
_VALUE_END = set(" \t\r\n\f\v()\"")
_TIMESTAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                        r"([Zz]|[+-]\d{2}:?\d{2})?)?$")
_LOG_NAME = re.compile(r"^((?:projects|organizations|folders|billingAccounts)/[^/]+/logs/)(.+)$")
# Constructs RE2 refuses (backreferences, lookaround); refused here too when RE2 is absent.
_NOT_RE2 = re.compile(r"\\[1-9]|\(\?P=|\(\?<?[=!]|\(\?>")
_NESTED_QUANTIFIER = re.compile(r"[*+}]\)*[*+{]|\([^()]*[*+][^()]*\)[*+{]")


# -- the tree ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    pos: int  # offset in the filter text, for messages


@dataclass(frozen=True)
class And(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    item: Node


@dataclass(frozen=True)
class Compare(Node):
    path: tuple[str, ...]
    op: str
    value: str
    regex: Any = None  # compiled pattern for =~ / !~


@dataclass(frozen=True)
class Global(Node):
    """A bare term: matches entries where any field has it (case-insensitive)."""

    text: str


@dataclass(frozen=True)
class LogId(Node):
    log_id: str


@dataclass(frozen=True)
class Everything(Node):
    """The empty filter."""


# -- parsing -------------------------------------------------------------------------------------


def parse(text: str) -> Node:
    """The tree of a filter; InvalidArgument (with line and column) when it is malformed."""
    if not isinstance(text, str):
        raise InvalidArgument("Invalid value at 'filter' (TYPE_STRING).")
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidArgument(f"Filter is too long: {len(text)} characters, the limit is {MAX_FILTER_CHARS}.")
    return _Parser(text).parse()


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        self.terms = 0
        self.regexes = 0

    # - helpers -

    def fail(self, message: str, pos: int | None = None) -> InvalidArgument:
        at = self.pos if pos is None else pos
        return InvalidArgument(f"Unparseable filter: {message} at {_position(self.text, at)}.")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def keyword(self) -> str:
        """AND, OR or NOT when the next word is one (uppercase, as Google requires), else ''."""
        for kw in ("AND", "OR", "NOT"):
            end = self.pos + len(kw)
            if self.text.startswith(kw, self.pos) and (end == len(self.text) or self.text[end] in _WORD_END):
                # `NOT.x` or `AND=1` would be a field named AND: only a keyword before space or `(`.
                if end == len(self.text) or self.text[end].isspace() or self.text[end] in '("':
                    return kw
        return ""

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested more than {MAX_DEPTH} levels deep")

    def leave(self) -> None:
        self.depth -= 1

    # - grammar -

    def parse(self) -> Node:
        self.skip_space()
        if self.pos == len(self.text):
            return Everything(0)
        node = self.conjunction()
        self.skip_space()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected '{self.text[self.pos]}'")
        return node

    def at_term_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text) or self.peek() == ")"

    def conjunction(self) -> Node:
        start = self.pos
        items = [self.disjunction()]
        while not self.at_term_end():
            if self.keyword() == "AND":
                self.pos += 3
                self.skip_space()
            items.append(self.disjunction())
        return items[0] if len(items) == 1 else And(start, tuple(items))

    def disjunction(self) -> Node:
        start = self.pos
        items = [self.negation()]
        while True:
            self.skip_space()
            if self.keyword() != "OR":
                break
            self.pos += 2
            self.skip_space()
            items.append(self.negation())
        return items[0] if len(items) == 1 else Or(start, tuple(items))

    def negation(self) -> Node:
        self.skip_space()
        start = self.pos
        if self.keyword() == "NOT":
            self.pos += 3
            return self.negated(start)
        if self.peek() == "-" and self.pos + 1 < len(self.text) and not self.text[self.pos + 1].isspace():
            self.pos += 1
            return self.negated(start)
        return self.primary()

    def negated(self, start: int) -> Node:
        self.enter()
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.fail("expected an expression after NOT")
        node = Not(start, self.negation())
        self.leave()
        return node

    def primary(self) -> Node:
        self.skip_space()
        start = self.pos
        ch = self.peek()
        if ch == "":
            raise self.fail("unexpected end of filter")
        kw = self.keyword()
        if kw in ("AND", "OR"):
            raise self.fail(f"unexpected {kw}")
        if ch == "(":
            self.pos += 1
            self.enter()
            self.skip_space()
            if self.peek() == ")":
                raise self.fail("empty parentheses")
            node = self.conjunction()
            self.skip_space()
            if self.peek() != ")":
                raise self.fail("expected ')'" if self.pos < len(self.text) else "missing ')'", self.pos)
            self.pos += 1
            self.leave()
            return node
        if ch == ")":
            raise self.fail("unexpected ')'")
        if ch in _OPERATOR_CHARS:
            raise self.fail(f"expected a field name before '{ch}'")
        segments, quoted, raw = self.path()
        after = self.pos
        self.skip_space()
        op = self.operator()
        if op:
            self.count_term(start)
            return self.comparison(start, tuple(segments), op)
        if self.peek() == "(" and after == self.pos and len(segments) == 1 and not quoted:
            return self.function(start, segments[0])
        self.pos = after
        self.count_term(start)
        return Global(start, segments[0] if quoted and len(segments) == 1 else raw)

    def count_term(self, start: int) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(f"more than {MAX_TERMS} comparisons", start)

    def path(self) -> tuple[list[str], bool, str]:
        """Dotted segments (words or quoted strings); also the raw text, for global terms."""
        start = self.pos
        segments: list[str] = []
        quoted = False
        while True:
            if self.peek() == '"':
                segments.append(self.string())
                quoted = True
            else:
                begin = self.pos
                while self.pos < len(self.text) and self.text[self.pos] not in _WORD_END:
                    self.pos += 1
                if self.pos == begin:
                    raise self.fail(f"unexpected '{self.peek()}'" if self.peek() else "unexpected end of filter")
                segments.append(self.text[begin:self.pos])
            nxt = self.text[self.pos + 1: self.pos + 2]
            if self.peek() == "." and nxt and (nxt == '"' or nxt not in _VALUE_END):
                self.pos += 1
                continue
            if self.peek() == ".":  # a trailing dot belongs to a bare term such as `example.`
                self.pos += 1
            return segments, quoted, self.text[start:self.pos]

    def operator(self) -> str:
        for op in OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        return ""

    def string(self) -> str:
        """A double-quoted string with backslash escapes."""
        start = self.pos
        self.pos += 1
        out: list[str] = []
        escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "b": "\b", "f": "\f"}
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated string", start)
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                nxt = self.text[self.pos + 1: self.pos + 2]
                if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.text[self.pos + 2: self.pos + 6]):
                    out.append(chr(int(self.text[self.pos + 2: self.pos + 6], 16)))
                    self.pos += 6
                    continue
                if nxt in escapes:
                    out.append(escapes[nxt])
                else:  # regex escapes such as \d or \. pass through, as in Google's examples
                    out.append("\\" + nxt)
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1

    def value(self) -> str:
        self.skip_space()
        if self.peek() == '"':
            return self.string()
        begin = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _VALUE_END:
            self.pos += 1
        if self.pos == begin:
            raise self.fail("expected a value")
        return self.text[begin:self.pos]

    def comparison(self, start: int, path: tuple[str, ...], op: str) -> Node:
        self.skip_space()
        if self.peek() == "(":  # a value group: field = ("a" OR "b")
            self.pos += 1
            self.enter()
            node = self.value_conjunction(start, path, op)
            self.skip_space()
            if self.peek() != ")":
                raise self.fail("expected ')'" if self.pos < len(self.text) else "missing ')'")
            self.pos += 1
            self.leave()
            return node
        return self.make_compare(start, path, op, self.value())

    def value_conjunction(self, start: int, path: tuple[str, ...], op: str) -> Node:
        items = [self.value_disjunction(start, path, op)]
        while not self.at_term_end():
            if self.keyword() == "AND":
                self.pos += 3
            items.append(self.value_disjunction(start, path, op))
        return items[0] if len(items) == 1 else And(start, tuple(items))

    def value_disjunction(self, start: int, path: tuple[str, ...], op: str) -> Node:
        items = [self.value_negation(start, path, op)]
        while True:
            self.skip_space()
            if self.keyword() != "OR":
                break
            self.pos += 2
            items.append(self.value_negation(start, path, op))
        return items[0] if len(items) == 1 else Or(start, tuple(items))

    def value_negation(self, start: int, path: tuple[str, ...], op: str) -> Node:
        self.skip_space()
        if self.keyword() == "NOT":
            self.pos += 3
            self.enter()
            negated = Not(start, self.value_negation(start, path, op))
            self.leave()
            return negated
        if self.peek() == "(":
            self.pos += 1
            self.enter()
            node = self.value_conjunction(start, path, op)
            self.skip_space()
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.pos += 1
            self.leave()
            return node
        if self.peek() in ("", ")"):
            raise self.fail("expected a value")
        self.count_term(start)
        return self.make_compare(start, path, op, self.value())

    def make_compare(self, start: int, path: tuple[str, ...], op: str, value: str) -> Compare:
        regex = None
        if op in ("=~", "!~"):
            self.regexes += 1
            if self.regexes > MAX_REGEXES:
                raise self.fail(f"more than {MAX_REGEXES} regular expressions", start)
            regex = compile_regex(value, lambda m: self.fail(m, start))
        elif op in ("<", "<=", ">", ">=") and path in TIMESTAMP_FIELDS:
            if parse_timestamp(value) is None:
                raise self.fail(f"invalid timestamp {value!r}", start)
        elif path == ("severity",) and op in ("=", "!=", "<", "<=", ">", ">=") and severity_rank(value) is None:
            raise self.fail(f"invalid severity {value!r}", start)
        return Compare(start, path, op, value, regex)

    def function(self, start: int, name: str) -> Node:
        self.pos += 1  # "("
        if name != "log_id":
            raise self.fail(f"unsupported function '{name}'", start)
        self.skip_space()
        if self.peek() != '"':
            raise self.fail("log_id() takes one quoted log ID")
        log_id = self.string()
        self.skip_space()
        if self.peek() != ")":
            raise self.fail("expected ')'")
        self.pos += 1
        self.count_term(start)
        return LogId(start, log_id)


def compile_regex(pattern: str, fail: Callable[[str], InvalidArgument]) -> Any:
    """An RE2 pattern, bounded in size. Without RE2, Python's `re` with the constructs that can
    backtrack catastrophically (nested quantifiers) refused, so no search can run away."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise fail(f"regular expression longer than {MAX_REGEX_CHARS} characters")
    if _NOT_RE2.search(pattern):
        raise fail("backreferences and lookaround are not supported in regular expressions (RE2 syntax)")
    if _re2 is not None:
        options = _re2.Options()
        options.log_errors = False
        options.max_mem = 4 << 20
        try:
            return _re2.compile(pattern, options)
        except Exception as exc:
            raise fail(f"invalid regular expression: {_re2_message(exc)}") from None
    if _NESTED_QUANTIFIER.search(pattern):  # pragma: no cover - only without RE2
        raise fail("nested quantifiers are not supported in regular expressions")
    try:  # pragma: no cover - only without RE2
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:  # pragma: no cover
        raise fail(f"invalid regular expression: {exc}") from None


def _re2_message(exc: Exception) -> str:
    msg = exc.args[0] if exc.args else str(exc)
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


# -- values --------------------------------------------------------------------------------------


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 timestamp (or a bare date, midnight UTC) as an aware datetime; None if not one."""
    m = _TIMESTAMP.match(text.strip())
    if m is None:
        return None
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    try:
        micros = int((frac or "0")[:6].ljust(6, "0"))
        dt = datetime(int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0), micros, tzinfo=UTC)
        if zone and zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[-2:]))
        return dt
    except (ValueError, OverflowError):
        return None


def severity_rank(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if not isinstance(value, str):
        return None
    name = value.strip().upper()
    if name in SEVERITIES:
        return SEVERITIES[name]
    if re.fullmatch(r"\d{1,4}", name):
        return int(name)
    return None


def normalize_log_name(value: str) -> str:
    """`projects/p/logs/cloudaudit.googleapis.com/activity` -> the URL-encoded form entries carry."""
    m = _LOG_NAME.match(value)
    if m is None:
        return value
    return m.group(1) + quote(unquote(m.group(2)), safe="")


def _number(text: str) -> float | None:
    try:
        n = float(text)
    except ValueError:
        return None
    return n if math.isfinite(n) else None


# -- evaluation ----------------------------------------------------------------------------------


def _camel(segment: str) -> str:
    head, *rest = segment.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def resolve(entry: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value at `path`; lists fan out (a comparison on a repeated field matches any element)."""
    current = [entry]
    for segment in path:
        nxt: list[Any] = []
        for value in current:
            for item in (value if isinstance(value, list) else [value]):
                if isinstance(item, dict):
                    if segment in item:
                        nxt.append(item[segment])
                    elif "_" in segment and _camel(segment) in item:  # snake_case names work too
                        nxt.append(item[_camel(segment)])
        current = nxt
        if not current:
            return []
    out: list[Any] = []
    for value in current:
        out.extend(value if isinstance(value, list) else [value])
    return out


def _leaves(value: Any, depth: int = 0) -> Iterator[Any]:
    if depth > 64:
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, depth + 1)
    else:
        yield value


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format(value, "g") if isinstance(value, float) else str(value)
    return None


def _has(value: Any, needle: str) -> bool:
    lowered = needle.lower()
    for leaf in _leaves(value):
        text = _text(leaf)
        if text is not None and lowered in text.lower():
            return True
    return False


def _equal(path: tuple[str, ...], value: Any, wanted: str) -> bool:
    if path == ("severity",):
        return severity_rank(value) == severity_rank(wanted)
    if path in TIMESTAMP_FIELDS:
        a, b = parse_timestamp(str(value)), parse_timestamp(wanted)
        return a is not None and a == b
    if path == ("logName",):
        return isinstance(value, str) and value == normalize_log_name(wanted)
    if isinstance(value, bool):
        return wanted.lower() == ("true" if value else "false")
    if isinstance(value, int | float):
        n = _number(wanted)
        return n is not None and float(value) == n
    if isinstance(value, str):
        return value == wanted
    return False


def _ordered(path: tuple[str, ...], value: Any, op: str, wanted: str) -> bool:
    a: Any
    b: Any
    if path == ("severity",):
        a, b = severity_rank(value), severity_rank(wanted)
    elif path in TIMESTAMP_FIELDS:
        a, b = parse_timestamp(str(value)), parse_timestamp(wanted)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        a, b = float(value), _number(wanted)
    elif isinstance(value, str):
        ta, tb = parse_timestamp(value), parse_timestamp(wanted)
        a, b = (ta, tb) if ta is not None and tb is not None else (value, wanted)
    else:
        return False
    if a is None or b is None:
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _compare(node: Compare, entry: dict[str, Any]) -> bool:
    values = resolve(entry, node.path)
    op = node.op
    if op == ":":
        if node.value == "*":
            return bool(values)
        return any(_has(v, node.value) for v in values)
    if op == "=":
        return any(_equal(node.path, v, node.value) for v in values)
    if op == "!=":  # a missing field does not compare unequal: `NOT f=v` is the way to include it
        return bool(values) and not any(_equal(node.path, v, node.value) for v in values)
    if op in ("=~", "!~"):
        texts = [t for t in (_text(v) for v in values) if t is not None]
        found = any(node.regex.search(t) is not None for t in texts)
        return found if op == "=~" else (bool(texts) and not found)
    return any(_ordered(node.path, v, op, node.value) for v in values)


def matches(node: Node, entry: dict[str, Any]) -> bool:
    """Whether a LogEntry (its JSON) satisfies the filter tree."""
    if isinstance(node, Compare):
        return _compare(node, entry)
    if isinstance(node, And):
        return all(matches(n, entry) for n in node.items)
    if isinstance(node, Or):
        return any(matches(n, entry) for n in node.items)
    if isinstance(node, Not):
        return not matches(node.item, entry)
    if isinstance(node, LogId):
        name = entry.get("logName")
        return isinstance(name, str) and name.endswith("/logs/" + quote(node.log_id, safe=""))
    if isinstance(node, Global):
        return _has(entry, node.text)
    return True  # Everything


def conjuncts(node: Node) -> list[Node]:
    """The terms a filter ANDs together at its top level (what a store query can narrow by)."""
    if isinstance(node, And):
        out: list[Node] = []
        for item in node.items:
            out.extend(conjuncts(item))
        return out
    if isinstance(node, Everything):
        return []
    return [node]
