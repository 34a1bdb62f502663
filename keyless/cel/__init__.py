"""Common Expression Language for IAM conditions and Workload Identity Federation: compile once, evaluate many.

Backed by cel-expr-python, the Python binding of Google's own cel-cpp, so parse and type-check errors read
exactly like Google's (``ERROR: <input>:1:17: Syntax error: mismatched input ...``), `matches()` uses RE2
(linear time: no catastrophic backtracking), comprehensions have an iteration budget and the parser a nesting
limit. Google's extension ``string.extract(template)``
(https://cloud.google.com/iam/docs/conditions-attribute-reference#extract) and a few string helpers are added
as functions written here.

Measured on the 2-core dev machine, Python 3.11, a GitHub Actions token of 29 claims, the condition
``assertion.repository_owner == 'my-org' && (assertion.ref == 'refs/heads/main' || assertion.ref.startsWith(...))``
and 4 attribute mappings (medians, µs per call):

======================================  =========  ================  ====================================
library                                 compile    condition         condition + 4 mappings
======================================  =========  ================  ====================================
cel-expr-python 0.1.3 (cel-cpp)         82         11.5              20 (one shared Activation; 20.6 with
                                                                     a Python ``extract()`` among them)
common-expression-language 0.10 (Rust)  35         68 (64 of it      70; ``extract`` possible via
                                                   building Context) ``Context.add_function``
cel-python 0.5 (pure Python)            600        680               1,365 (incl. ``json_to_cel``)
======================================  =========  ================  ====================================

Through this module (fresh claims each call, as in a token exchange): ``Program.evaluate`` of that condition
17-19 µs (cel-cpp converts the 29-claim map on first access, ~12 µs); every further program on the same
`Activation` ~3.5 µs; ``keyless.federation.mapping.apply`` (condition + 4 mappings, checks, result) ~40 µs;
``compile_expression`` ~85 µs.

cel-cpp won on conformance (it is the implementation Google's messages come from; typed declarations;
RE2; iteration budget) and on speed. Its strings extension is deliberately not enabled: ``replace`` can
square a string's length per call (``s.replace('a', s).replace('a', s)``), so the helpers Google's users
reach for (lowerAscii, upperAscii, split, trim, replace, join) are implemented here with a bound on output.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cel_expr_python import cel as _cel

__all__ = [
    "DEFAULT_VARIABLES",
    "MAX_SOURCE_LENGTH",
    "CelCompileError",
    "CelError",
    "CelEvaluationError",
    "Activation",
    "Program",
    "check_activation",
    "compile_expression",
    "extract",
]

MAX_SOURCE_LENGTH = 4096
"""Longest expression accepted, in code points (Google's limit for IAM and WIF conditions)."""

MAX_STRING_RESULT = 64 * 1024
"""Longest string one of our string helpers may build; beyond it evaluation fails."""

MAX_ACTIVATION_DEPTH = 64
"""Deepest nesting of maps and lists accepted in an activation (cel-cpp recurses natively over them)."""

DEFAULT_VARIABLES: tuple[str, ...] = (
    "assertion", "google", "attribute",                      # Workload Identity Federation
    "request", "resource", "api", "origin", "destination",   # IAM conditions
    "levels",
)
"""Names an expression may reference when `compile_expression` is given no `variables`."""


class CelError(Exception):
    """A CEL expression could not be compiled or evaluated; the message is meant for users."""


class CelCompileError(CelError):
    """The expression does not parse or type-check."""


class CelEvaluationError(CelError):
    """Evaluation failed: no such key, no matching overload, bad regex, budget exceeded, ..."""


# --- Google's extract() and the bounded string helpers -------------------------------------------

_TEMPLATE = re.compile(r"([^{}]*)\{([^{}]*)\}([^{}]*)", re.DOTALL)


def extract(text: str, template: str) -> str:
    """Google's ``text.extract(template)``: the part of `text` matched by the one ``{name}`` in `template`.

    The text before the placeholder must occur in `text` (its first occurrence is used); the value runs
    from there to the first following occurrence of the text after the placeholder, or to the end when the
    placeholder ends the template. No match gives the empty string.
    """
    m = _TEMPLATE.fullmatch(template)
    if m is None:
        raise ValueError(f"invalid extract template '{template}': it must contain exactly one {{placeholder}}")
    before, _, after = m.groups()
    start = text.find(before)
    if start < 0:
        return ""
    start += len(before)
    if not after:
        return text[start:]
    end = text.find(after, start)
    return text[start:end] if end >= 0 else ""


def _check_size(size: int) -> None:
    if size > MAX_STRING_RESULT:
        raise ValueError(f"string result of {size} characters exceeds the limit of {MAX_STRING_RESULT}")


_ASCII_LOWER = {i: i + 32 for i in range(ord("A"), ord("Z") + 1)}
_ASCII_UPPER = {i: i - 32 for i in range(ord("a"), ord("z") + 1)}


def _lower_ascii(s: str) -> str:
    return s.translate(_ASCII_LOWER)


def _upper_ascii(s: str) -> str:
    return s.translate(_ASCII_UPPER)


def _split(s: str, sep: str) -> list[str]:
    return list(s) if sep == "" else s.split(sep)


def _split_n(s: str, sep: str, n: int) -> list[str]:
    if n == 0:
        return []
    if n < 0:
        return _split(s, sep)
    if sep == "":
        chars = list(s)
        return chars[: n - 1] + ["".join(chars[n - 1:])] if len(chars) > n else chars
    return s.split(sep, n - 1)


def _replace(s: str, old: str, new: str) -> str:
    if old == "":
        grown = (len(s) + 1) * len(new) + len(s)
    else:
        grown = len(s) + s.count(old) * (len(new) - len(old))
    _check_size(grown)
    return s.replace(old, new)


def _join(parts: list[Any], sep: str = "") -> str:
    if not all(isinstance(p, str) for p in parts):
        raise ValueError("join: list elements must be strings")
    _check_size(sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0))
    return sep.join(parts)


def _trim(s: str) -> str:
    return s.strip()


def _get_attribute(api: Mapping[str, Any], name: str, default: Any) -> Any:
    """`api.getAttribute(name, default)`: the request attributes Google's conditions read
    (e.g. storage.googleapis.com/objectListPrefix), `api` being a map of them."""
    return api.get(name, default)


def _function_decls() -> list[Any]:
    T = _cel.Type
    S, LS = T.STRING, T.List(T.STRING)
    ATTRIBUTES = T.Map(S, T.DYN)

    def member(overload_id: str, ret: Any, params: list[Any], impl: Callable[..., Any]) -> Any:
        return _cel.Overload(overload_id, ret, params, is_member=True, impl=impl)

    return [
        _cel.FunctionDecl("extract", [member("string_extract_string", S, [S, S], extract)]),
        _cel.FunctionDecl("lowerAscii", [member("string_lower_ascii", S, [S], _lower_ascii)]),
        _cel.FunctionDecl("upperAscii", [member("string_upper_ascii", S, [S], _upper_ascii)]),
        _cel.FunctionDecl("trim", [member("string_trim", S, [S], _trim)]),
        _cel.FunctionDecl("split", [member("string_split_string", LS, [S, S], _split),
                                    member("string_split_string_int", LS, [S, S, T.INT], _split_n)]),
        _cel.FunctionDecl("replace", [member("string_replace_string_string", S, [S, S, S], _replace)]),
        _cel.FunctionDecl("join", [member("list_join", S, [T.List(T.DYN)], _join),
                                   member("list_join_string", S, [T.List(T.DYN), S], _join)]),
        _cel.FunctionDecl("getAttribute", [
            member("map_get_attribute_string", S, [ATTRIBUTES, S, S], _get_attribute),
            member("map_get_attribute_list", T.List(T.DYN), [ATTRIBUTES, S, T.List(T.DYN)], _get_attribute)]),
    ]


_ENVS: dict[frozenset[str], Any] = {}


def _env(variables: frozenset[str]) -> Any:
    env = _ENVS.get(variables)
    if env is None:
        dyn = _cel.Type.DYN
        env = _cel.NewEnv(variables={name: dyn for name in sorted(variables)}, functions=_function_decls())
        _ENVS[variables] = env
    return env


def _ACTIVATION_ENV() -> Any:  # noqa: N802 (any environment builds activations; one is kept)
    return _ENVS.get(frozenset()) or _env(frozenset())


# --- messages ---------------------------------------------------------------------------------------

_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_STATUS_SUFFIX = re.compile(r"\s*\[[A-Z_]+\]$")
_NO_SUCH_KEY = re.compile(r'^Key not found in map : "(.*)"$', re.DOTALL)


def _message(raw: object) -> str:
    """cel-cpp's status text without the status code around it, in cel-go's words where they differ."""
    text = _STATUS_SUFFIX.sub("", _STATUS_PREFIX.sub("", str(raw).strip(), count=1))
    m = _NO_SUCH_KEY.match(text)
    if m:
        return f"no such key: {m.group(1)}"
    if text.startswith("Iteration budget exceeded"):
        return "operation cancelled: actual cost limit exceeded"
    return text


# --- activation -----------------------------------------------------------------------------------------


_SCALARS = frozenset({str, int, float, bool, type(None)})


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _check_text(text: str) -> None:
    """CEL strings are sequences of Unicode code points: a lone surrogate (which JSON's `\\ud800`
    escape can produce) is not one, and cel-cpp would fail on it with a C++ message. And the
    binding passes strings to cel-cpp as C strings: one with a NUL would be cut there, so that
    `'my-org\\u0000x' == 'my-org'` held. Both are refused before anything evaluates them."""
    if "\x00" in text:
        raise CelEvaluationError("a string in the activation contains a NUL character")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CelEvaluationError("a string in the activation is not valid Unicode (a lone surrogate)") from None


def _check_value(value: Any, depth: int) -> None:
    # On every exchange's claims: the common case (an ASCII string without NUL) is tested inline,
    # without a call per string (this walk went from 9 to 4 µs for a 29-claim token).
    if depth > MAX_ACTIVATION_DEPTH:
        raise CelEvaluationError(f"activation nests deeper than {MAX_ACTIVATION_DEPTH} levels")
    if isinstance(value, dict):
        for k in value:
            if type(k) is str and ("\x00" in k or not k.isascii()):
                _check_text(k)
        value = value.values()
    for v in value:
        t = type(v)
        if t is str:
            if "\x00" in v or not v.isascii():
                _check_text(v)
        elif t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                # JSON has no integer limit; CEL's int is 64-bit, and cel-expr-python fails the
                # whole evaluation on a wider one, whichever field the expression reads.
                raise CelEvaluationError("an integer in the activation is out of range for CEL's 64-bit int")
        elif t not in _SCALARS and isinstance(v, (dict, list)):  # noqa: UP038 (the tuple is faster)
            _check_value(v, depth + 1)


def check_activation(activation: Mapping[str, Any]) -> None:
    """Raise `CelEvaluationError` if `activation` nests maps and lists deeper than `MAX_ACTIVATION_DEPTH`,
    or holds a string that is not valid Unicode or has a NUL, or an integer outside int64.

    `Activation` does this itself unless told `checked=True`.
    """
    _check_value(activation, 0)


def _to_cel_data(value: Any, depth: int = 0) -> Any:
    """Convert what cel-cpp does not take nested in maps (datetime, timedelta, tuples) into what it does."""
    if depth > MAX_ACTIVATION_DEPTH:
        raise CelEvaluationError(f"activation nests deeper than {MAX_ACTIVATION_DEPTH} levels")
    if isinstance(value, Mapping):
        return {k: _to_cel_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_cel_data(v, depth + 1) for v in value]
    if isinstance(value, datetime.datetime):
        from google.protobuf import timestamp_pb2

        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(value)
        return ts
    if isinstance(value, datetime.timedelta):
        from google.protobuf import duration_pb2

        d = duration_pb2.Duration()
        d.FromTimedelta(value)
        return d
    return value


def _from_cel(value: Any) -> Any:
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, list):
        return [_from_cel(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_cel(v) for k, v in value.items()}
    return value


_ERROR_TYPES = frozenset({"ERROR", "UNKNOWN"})


# --- the public API -------------------------------------------------------------------------------------


class Activation:
    """The variables of one evaluation, checked and converted once, for any number of programs."""

    __slots__ = ("data", "_native")

    def __init__(self, data: Mapping[str, Any], *, checked: bool = False) -> None:
        self.data: dict[str, Any] = data if type(data) is dict else dict(data)
        if not checked:
            check_activation(self.data)
        try:
            self._native = _ACTIVATION_ENV().Activation(self.data)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise CelEvaluationError(_message(exc)) from None

    def _converted(self) -> Activation:
        return Activation(_to_cel_data(self.data), checked=True)


class Program:
    """A compiled, type-checked CEL expression; `evaluate` it as often as needed, from any thread."""

    __slots__ = ("source", "variables", "_expr")

    def __init__(self, source: str, variables: frozenset[str], expr: Any) -> None:
        self.source = source
        self.variables = variables
        self._expr = expr

    def __repr__(self) -> str:
        return f"Program({self.source!r})"

    def evaluate(self, activation: Mapping[str, Any] | Activation) -> Any:
        """The expression's value as a plain Python value (timestamps as aware `datetime`).

        `activation` maps variable names to values; pass an `Activation` to share one across programs.
        Raises `CelEvaluationError` for any runtime error: a missing key, no matching overload, a bad
        regular expression, an exceeded budget, an activation nested too deeply.
        """
        act = activation if isinstance(activation, Activation) else Activation(activation)
        value = self._eval(act)
        if value.type().name() in _ERROR_TYPES:
            message = str(value.plain_value())
            if "Non-CEL value type" not in message:
                raise CelEvaluationError(_message(message))
            value = self._eval(act._converted())
            if value.type().name() in _ERROR_TYPES:
                raise CelEvaluationError(_message(value.plain_value()))
        try:
            out = value.plain_value()
        except (RecursionError, RuntimeError, ValueError, TypeError) as exc:
            raise CelEvaluationError(f"cannot convert the result: {exc}") from None
        return _from_cel(out) if isinstance(out, list | dict | bytearray) else out

    def _eval(self, act: Activation) -> Any:
        try:
            return self._expr.eval(act._native)
        except (RuntimeError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
            raise CelEvaluationError(_message(exc)) from None


def compile_expression(source: str, *, variables: Iterable[str] | None = None) -> Program:
    """Parse and type-check `source` once; the names it may reference are `variables` (all dynamic).

    Raises `CelCompileError` with Google's message for a syntax error, an undeclared reference, an
    overload that cannot match, an expression over `MAX_SOURCE_LENGTH` code points or nested too deeply.
    """
    if not isinstance(source, str):
        raise CelCompileError("ERROR: <input>:-1:0: expression must be a string")
    if len(source) > MAX_SOURCE_LENGTH:
        raise CelCompileError(f"ERROR: <input>:-1:0: expression code point size exceeds limit: "
                              f"size: {len(source)}, limit {MAX_SOURCE_LENGTH}")
    names = frozenset(DEFAULT_VARIABLES if variables is None else variables)
    try:
        expr = _env(names).compile(source)
    except (RuntimeError, ValueError, TypeError, UnicodeError, RecursionError, MemoryError) as exc:
        raise CelCompileError(_message(exc)) from None
    return Program(source, names, expr)
