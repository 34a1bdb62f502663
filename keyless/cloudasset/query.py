"""The query language of searchAllResources
(https://cloud.google.com/asset-inventory/docs/search-query-syntax and the `query` parameter of
https://cloud.google.com/asset-inventory/docs/reference/rest/v1/TopLevel/searchAllResources), parsed
into a small tree and evaluated on ResourceSearchResult documents (issue #20).

- `FIELD:VALUE` (has): the value and the field are tokenized (runs of `[a-zA-Z0-9_&]`, Unicode
  case folding) and the value's words must appear consecutively in the field; a trailing `*` makes
  the words prefixes (`location:us-west*`: `us` and `west` as prefixes); `labels.KEY:*` tests that
  the label exists. `FIELD=VALUE` (equals): the whole value, case-sensitive, no wildcards; for a
  list or map field one element suffices. `createTime`/`updateTime` compare with `<`, `<=`, `>`,
  `>=`, `=` to epoch seconds, a date, or a quoted date-time.
- A bare word or quoted phrase is free text: a `:` match on any searchable field.
- Terms are ANDed (`AND` may be written) or ORed, `NOT`/`-` negate, parentheses group, and
  `FIELD:(a OR b)` applies the field to each value of the group. Google documents no precedence
  between AND and OR, so a level that mixes them is refused (INVALID_ARGUMENT: parenthesize).

Bounds (Google's: "up to 10 comparisons" and 2048 characters per query; Keyless adds a nesting
depth of 10): so a query costs at most 10 matches per resource, each linear in the field's length
(a shift-and over the field's words, with a trie for prefix words: no backtracking anywhere).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keyless.errors import InvalidArgument

MAX_QUERY = 2048
MAX_COMPARISONS = 10
MAX_DEPTH = 10
TEXT_FIELDS = ("name", "displayName", "description", "location", "state", "project", "organization",
               "parentFullResourceName", "parentAssetType", "folders", "kmsKey", "kmsKeys", "networkTags",
               "tagKeys", "tagValues", "tagValueIds", "effectiveTagKeys", "effectiveTagValues",
               "effectiveTagValueIds", "relationships")
TIME_FIELDS = ("createTime", "updateTime")
_WORD = re.compile(r"[A-Za-z0-9_&]+")
_FIELD_TERM = re.compile(r"^([A-Za-z][A-Za-z0-9_]*(?:\.[^\s:=<>()\"]+)?)(<=|>=|:|=|<|>)(.*)$", re.S)
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class Term:
    field: str | None  # None: free text
    op: str  # ":", "=", "<", "<=", ">", ">="
    value: str


@dataclass(frozen=True)
class Node:
    kind: str  # "and", "or", "not", "term"
    children: tuple[Node, ...] = ()
    term: Term | None = None


def _lex(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: "(", ")", "word" (unquoted run) and "quoted" (a "..." string)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append((c, c))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise InvalidArgument(f"Invalid query {text[:200]!r}: unterminated quotation mark.")
            out.append(("quoted", text[i + 1:end]))
            i = end + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                j += 1
            word = text[i:j]
            field = _FIELD_TERM.match(word)
            if j < n and text[j] == '"' and field is not None and not field.group(3):  # FIELD:"a value"
                end = text.find('"', j + 1)
                if end < 0:
                    raise InvalidArgument(f"Invalid query {text[:200]!r}: unterminated quotation mark.")
                out.append(("field-quoted", word + "\0" + text[j + 1:end]))
                j = end + 1
            else:
                out.append(("word", word))
            i = j
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.at = 0
        self.comparisons = 0

    def fail(self, why: str) -> InvalidArgument:
        return InvalidArgument(f"Invalid query {self.text[:200]!r}: {why}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def parse(self) -> Node | None:
        if not self.tokens:
            return None
        node = self.or_expr(0, None)
        if self.peek() is not None:
            raise self.fail("unbalanced parenthesis.")
        return node

    def or_expr(self, depth: int, field: tuple[str, str] | None) -> Node:
        parts = [self.and_expr(depth, field)]
        while self.peek() == ("word", "OR"):
            self.at += 1
            parts.append(self.and_expr(depth, field))
        if len(parts) > 1 and any(len(p) > 1 for p in parts):
            # Google documents no precedence between AND and OR: which one binds is not guessed
            raise self.fail("parenthesize a mix of AND and OR, e.g. a (b OR c).")
        nodes = [p[0] if len(p) == 1 else Node("and", tuple(p)) for p in parts]
        return nodes[0] if len(nodes) == 1 else Node("or", tuple(nodes))

    def and_expr(self, depth: int, field: tuple[str, str] | None) -> list[Node]:
        parts = [self.unary(depth, field)]
        while (token := self.peek()) is not None and token[0] != ")" and token != ("word", "OR"):
            if token == ("word", "AND"):
                self.at += 1
            parts.append(self.unary(depth, field))
        return parts

    def unary(self, depth: int, field: tuple[str, str] | None) -> Node:
        token = self.peek()
        if token is None:
            raise self.fail("an operator has no operand.")
        negated = token == ("word", "NOT") or (token[0] == "word" and token[1].startswith("-") and len(token[1]) > 1)
        if negated:
            if depth >= MAX_DEPTH:
                raise self.fail(f"operators nest deeper than {MAX_DEPTH}.")
            if token == ("word", "NOT"):
                self.at += 1
            else:
                self.tokens[self.at] = ("word", token[1][1:])
            return Node("not", (self.unary(depth + 1, field),))
        return self.primary(depth, field)

    def group(self, depth: int, field: tuple[str, str] | None) -> Node:
        if depth >= MAX_DEPTH:
            raise self.fail(f"parentheses nest deeper than {MAX_DEPTH}.")
        self.at += 1
        node = self.or_expr(depth + 1, field)
        if self.peek() != (")", ")"):
            raise self.fail("unbalanced parenthesis.")
        self.at += 1
        return node

    def primary(self, depth: int, field: tuple[str, str] | None) -> Node:
        kind, text = self.tokens[self.at]
        if kind == "(":
            return self.group(depth, field)
        if kind == ")":
            raise self.fail("unbalanced parenthesis.")
        self.at += 1
        if kind == "quoted":
            return self.term(field[0] if field else None, field[1] if field else ":", text)
        if kind == "field-quoted":
            name_op, value = text.split("\0", 1)
            m = _FIELD_TERM.match(name_op)
            assert m is not None
            return self.term(m.group(1), m.group(2), value)
        m = _FIELD_TERM.match(text)
        if m is None or field is not None:
            return self.term(field[0] if field else None, field[1] if field else ":", text)
        name, op, value = m.groups()
        if value:
            return self.term(name, op, value)
        following = self.peek()
        if following is not None and following[0] == "(":
            self.check_field(name, op)
            return self.group(depth, (name, op))
        raise self.fail(f"the field {name[:64]!r} has no value.")

    def check_field(self, name: str, op: str) -> None:
        base = name.split(".", 1)[0]
        if base in ("labels", "sccSecurityMarks", "relationships") and op in (":", "="):
            return
        if "." in name:
            raise self.fail(f"unsupported field {name[:64]!r}.")
        if name in TIME_FIELDS:
            return
        if name not in TEXT_FIELDS:
            raise self.fail(f"unsupported field {name[:64]!r}.")
        if op not in (":", "="):
            raise self.fail(f"the operator {op} applies to createTime and updateTime only.")

    def term(self, name: str | None, op: str, value: str) -> Node:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.fail(f"at most {MAX_COMPARISONS} comparisons are allowed.")
        if name is not None:
            self.check_field(name, op)
            if name in TIME_FIELDS:
                return Node("term", term=Term(name, op, str(_epoch(value, self))))
            if op == "=" and "*" in value:
                raise self.fail("an exact match (=) cannot contain wildcards.")
        return Node("term", term=Term(name, op, value))


def _epoch(value: str, parser: _Parser) -> int:
    """createTime/updateTime's operand: epoch seconds, YYYY-MM-DD, or a date-time (UTC if no zone)."""
    if value.isdigit() and len(value) <= 12:
        return int(value)
    try:
        if _DATE.match(value):
            when = datetime.strptime(value, "%Y-%m-%d")
        elif len(value) <= 40:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            raise ValueError
    except ValueError:
        raise parser.fail(f"{value[:64]!r} is not epoch seconds, a date or a date-time.") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def parse(text: str) -> Node | None:
    """The query's tree; None for an empty query (everything matches)."""
    if len(text) > MAX_QUERY:
        raise InvalidArgument(f"The query is longer than {MAX_QUERY} characters.")
    return _Parser(text).parse()


# -- matching -------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def has_phrase(field_text: str, value: str) -> bool:
    """Google's `:`: every word of `value` in `field_text`, consecutively and in order; with a
    trailing `*`, as prefixes. Shift-and over the field's words: linear in the field's length."""
    wanted = words(value)
    if not wanted:
        return False
    prefix = value.rstrip().endswith("*")
    masks: dict[str, int] = {}
    trie: dict[str, Any] = {}
    for i, w in enumerate(wanted):
        if prefix:
            node = trie
            for ch in w:
                node = node.setdefault(ch, {})
            node["\0"] = node.get("\0", 0) | (1 << i)
        else:
            masks[w] = masks.get(w, 0) | (1 << i)
    goal, state = 1 << (len(wanted) - 1), 0
    for token in words(field_text):
        if prefix:
            bits, node = 0, trie
            for ch in token:  # every pattern word that is a prefix of this token
                bits |= node.get("\0", 0)
                if ch not in node:
                    break
                node = node[ch]
            else:
                bits |= node.get("\0", 0)
        else:
            bits = masks.get(token, 0)
        state = ((state << 1) | 1) & bits
        if state & goal:
            return True
    return False


def _texts(result: dict[str, Any], field: str) -> list[str]:
    """The values of one searchable field of a ResourceSearchResult (lists and maps flattened)."""
    if field == "labels":
        labels = result.get("labels") or {}
        return [*labels.keys(), *labels.values()]
    value = result.get(field)
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [str(v) for v in value.values()]
    return [str(value)]


def _free_texts(result: dict[str, Any]) -> list[str]:
    out = [t for f in (*TEXT_FIELDS, "labels") for t in _texts(result, f)]
    return out + [str(v) for v in (result.get("additionalAttributes") or {}).values()]


def _epoch_of(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def _term_matches(term: Term, result: dict[str, Any]) -> bool:
    if term.field is None:
        return any(has_phrase(t, term.value) for t in _free_texts(result))
    if term.field in TIME_FIELDS:
        have, want = _epoch_of(result.get(term.field)), int(term.value)
        if have is None:
            return False
        return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want,
                "=": have == want, ":": have == want}[term.op]
    base, _, key = term.field.partition(".")
    if key:
        if base != "labels":
            return False  # sccSecurityMarks and relationships: Keyless's resources have none
        labels = result.get("labels") or {}
        if key not in labels:
            return False
        if term.op == ":" and term.value.strip() == "*":
            return True
        return labels[key] == term.value if term.op == "=" else has_phrase(labels[key], term.value)
    texts = _texts(result, term.field)
    if term.op == "=":
        return term.value in texts
    return any(has_phrase(t, term.value) for t in texts)


def matches(node: Node | None, result: dict[str, Any]) -> bool:
    if node is None:
        return True
    if node.kind == "and":
        return all(matches(c, result) for c in node.children)
    if node.kind == "or":
        return any(matches(c, result) for c in node.children)
    if node.kind == "not":
        return not matches(node.children[0], result)
    assert node.term is not None
    return _term_matches(node.term, result)
