"""Subscription filters: Google's filter language on message attributes
(https://cloud.google.com/pubsub/docs/subscription-message-filter): `attributes.KEY = "v"`,
`!=`, `attributes:KEY` (has the key), `hasPrefix(attributes.KEY, "p")`, `NOT`, `AND`, `OR` and
parentheses. As on Google, AND and OR are not mixed without parentheses, and a filter is at most
256 bytes. A filter compiles once (at create) and is evaluated on every published message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from keyless.errors import InvalidArgument

MAX_FILTER_BYTES = 256
TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:|\(|\)|,)|(?P<word>[A-Za-z0-9_.\-]+))')
Predicate = Callable[[Mapping[str, str]], bool]


def _invalid(text: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid filter expression: {text[:300]!r}: {why}.")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if m is None:
            raise _invalid(text, f"unexpected character at offset {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.pos = text, _tokens(text), 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise _invalid(self.text, f"expected {value or kind}")
        self.pos += 1
        return token[1]

    def expression(self) -> Predicate:
        first = self.term()
        joiner = None
        parts = [first]
        while (token := self.peek()) is not None and token[0] == "word" and token[1] in ("AND", "OR"):
            if joiner is not None and token[1] != joiner:
                raise _invalid(self.text, "AND and OR must be separated by parentheses")
            joiner = token[1]
            self.pos += 1
            parts.append(self.term())
        if joiner == "AND":
            return lambda a: all(p(a) for p in parts)
        if joiner == "OR":
            return lambda a: any(p(a) for p in parts)
        return first

    def term(self) -> Predicate:
        token = self.peek()
        if token == ("word", "NOT"):
            self.pos += 1
            inner = self.term()
            return lambda a: not inner(a)
        if token == ("op", "("):
            self.pos += 1
            inner = self.expression()
            self.take("op", ")")
            return inner
        if token == ("word", "hasPrefix"):
            self.pos += 1
            self.take("op", "(")
            key = self._attribute()
            self.take("op", ",")
            prefix = _unquote(self.take("string"))
            self.take("op", ")")
            return lambda a: key in a and a[key].startswith(prefix)
        key = self._attribute()
        op = self.take("op")
        if op == ":":
            return lambda a: key in a
        if op not in ("=", "!="):
            raise _invalid(self.text, f"unexpected {op!r}")
        value = _unquote(self.take("string"))
        if op == "=":
            return lambda a: a.get(key) == value
        return lambda a: a.get(key) != value

    def _attribute(self) -> str:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].startswith("attributes."):
            self.pos += 1
            key = token[1][len("attributes."):]
            if key:
                return key
        if token == ("word", "attributes"):
            self.pos += 1
            nxt = self.peek()
            if nxt == ("op", ":"):  # attributes:KEY
                self.pos += 1
                word = self.peek()
                if word is not None and word[0] in ("word", "string"):
                    self.pos += 1
                    key = _unquote(word[1]) if word[0] == "string" else word[1]
                    self.tokens.insert(self.pos, ("op", ":"))  # has-key reads as `KEY :`
                    return key
        raise _invalid(self.text, "expected attributes.KEY")


def compile_filter(text: str) -> Predicate:
    """The filter as a predicate on a message's attributes; INVALID_ARGUMENT if it does not parse."""
    if len(text.encode()) > MAX_FILTER_BYTES:
        raise InvalidArgument(f"Invalid filter expression: a filter is at most {MAX_FILTER_BYTES} bytes.")
    parser = _Parser(text)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise _invalid(text, f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return predicate
