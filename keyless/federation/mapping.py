"""Attribute mappings and attribute conditions of workload identity pool providers.

Follows the REST reference of projects.locations.workloadIdentityPools.providers (`attributeMapping`,
`attributeCondition`) and https://cloud.google.com/iam/docs/workload-identity-federation#mapping:
mappings are CEL over `assertion`; the condition is CEL over `assertion`, `google` and `attribute`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyless.cel import Activation, CelError, Program, compile_expression
from keyless.errors import InvalidArgument, PermissionDenied

GOOGLE_ATTRIBUTES: tuple[str, ...] = (
    "google.subject", "google.groups", "google.display_name", "google.profile_photo", "google.posix_username",
)
"""The `google.*` keys a mapping may set."""

CUSTOM_ATTRIBUTE_NAME = re.compile(r"[a-z0-9_]{1,100}")
_CLAIM_SELECTION = re.compile(r"\s*assertion\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
"""A mapping that only selects one claim (`assertion.sub`, as most do): see `apply`."""
MAX_CUSTOM_ATTRIBUTES = 50
MAX_MAPPING_EXPRESSION_LENGTH = 2048
MAX_CONDITION_LENGTH = 4096
MAX_MAPPED_ATTRIBUTES_BYTES = 8 * 1024
MAX_SUBJECT_BYTES = 127

DEFAULT_AWS_ATTRIBUTE_MAPPING: dict[str, str] = {
    "google.subject": "assertion.arn",
    "attribute.aws_role": (
        "assertion.arn.contains('assumed-role')"
        " ? assertion.arn.extract('{account_arn}assumed-role/')"
        "   + 'assumed-role/'"
        "   + assertion.arn.extract('assumed-role/{role_name}/')"
        " : assertion.arn"
    ),
}
"""What Google applies to an AWS provider created without an attribute mapping."""

CONDITION_REJECTED = "The given credential is rejected by the attribute condition."

_MAPPING_VARIABLES = ("assertion",)
_CONDITION_VARIABLES = ("assertion", "google", "attribute")


@dataclass
class EvaluationCost:
    """What applying one compiled mapping has been seen to cost in this process
    (keyless.federation.mapping_worker decides from it where the next evaluation runs)."""

    cheap_runs: int = 0
    cheap_size: int = 0
    """The longest credential (subject token length) the mapping was evaluated cheaply for."""
    costly: bool = False


@dataclass(frozen=True)
class CompiledMapping:
    """A provider's mapping and condition, validated and compiled once."""

    attribute_mapping: dict[str, str]
    attribute_condition: str | None
    provider_type: str
    programs: tuple[tuple[str, Program, str | None], ...] = field(repr=False)
    """(attribute key, its program, the claim it selects when the expression is `assertion.NAME`)."""
    condition: Program | None = field(repr=False)
    condition_uses_mapped: bool = False
    """True when the condition reads `google` or `attribute`, so it runs after the mapping."""
    cost: EvaluationCost = field(default_factory=EvaluationCost, compare=False, repr=False)


@dataclass(frozen=True)
class MappedIdentity:
    """The Google attributes of one external credential."""

    subject: str
    groups: tuple[str, ...] = ()
    attributes: dict[str, str | list[str]] = field(default_factory=dict)
    """Custom attributes by NAME (without the `attribute.` prefix); a value may be a list of strings."""
    display_name: str | None = None
    profile_photo: str | None = None
    posix_username: str | None = None


def compile_mapping(attribute_mapping: Mapping[str, str] | None, attribute_condition: str | None, *,
                    provider_type: str) -> CompiledMapping:
    """Validate and compile a provider's mapping and condition; `InvalidArgument` says what is wrong."""
    mapping = dict(attribute_mapping or {})
    if not mapping and provider_type == "aws":
        mapping = dict(DEFAULT_AWS_ATTRIBUTE_MAPPING)
    if not mapping:
        raise InvalidArgument("The attribute mapping must be set for OIDC providers, "
                              "and it must include google.subject.")
    if "google.subject" not in mapping:
        raise InvalidArgument("The attribute mapping must include a mapping for google.subject.")
    customs = 0
    programs: list[tuple[str, Program, str | None]] = []
    for key, expression in mapping.items():
        if not isinstance(key, str):
            raise InvalidArgument("Attribute mapping keys must be strings.")
        if key.startswith("attribute."):
            if not CUSTOM_ATTRIBUTE_NAME.fullmatch(key[len("attribute."):]):
                raise InvalidArgument(
                    f"Invalid attribute mapping key '{key}': a custom attribute name may only contain the "
                    "characters [a-z0-9_] and be at most 100 characters long.")
            customs += 1
        elif key not in GOOGLE_ATTRIBUTES:
            raise InvalidArgument(
                f"Invalid attribute mapping key '{key}': the key must be one of {', '.join(GOOGLE_ATTRIBUTES)} "
                "or attribute.{custom_attribute}.")
        if not isinstance(expression, str) or not expression.strip():
            raise InvalidArgument(f"The attribute mapping expression for '{key}' must not be empty.")
        if len(expression) > MAX_MAPPING_EXPRESSION_LENGTH:
            raise InvalidArgument(f"The attribute mapping expression for '{key}' exceeds the maximum length "
                                  f"of {MAX_MAPPING_EXPRESSION_LENGTH} characters.")
        try:
            program = compile_expression(expression, variables=_MAPPING_VARIABLES)
            selection = _CLAIM_SELECTION.fullmatch(expression)
            programs.append((key, program, selection.group(1) if selection else None))
        except CelError as exc:
            raise InvalidArgument(f"Invalid attribute mapping expression for '{key}': {exc}") from None
    if customs > MAX_CUSTOM_ATTRIBUTES:
        raise InvalidArgument(f"The attribute mapping defines {customs} custom attributes; "
                              f"at most {MAX_CUSTOM_ATTRIBUTES} are allowed.")
    condition: Program | None = None
    uses_mapped = False
    if attribute_condition is not None and attribute_condition != "":
        if not isinstance(attribute_condition, str):
            raise InvalidArgument("The attribute condition must be a string.")
        if len(attribute_condition) > MAX_CONDITION_LENGTH:
            raise InvalidArgument(f"The attribute condition exceeds the maximum length of "
                                  f"{MAX_CONDITION_LENGTH} characters.")
        try:
            condition = compile_expression(attribute_condition, variables=_CONDITION_VARIABLES)
        except CelError as exc:
            raise InvalidArgument(f"Invalid attribute condition: {exc}") from None
        try:
            compile_expression(attribute_condition, variables=_MAPPING_VARIABLES)
        except CelError:
            uses_mapped = True
    return CompiledMapping(mapping, attribute_condition or None, provider_type, tuple(programs), condition,
                           uses_mapped)


def apply(compiled: CompiledMapping, assertion: Mapping[str, Any]) -> MappedIdentity:
    """Check the condition and map `assertion` (the verified credential's claims) to Google attributes.

    A false condition, or one that fails to evaluate, raises `PermissionDenied` with Google's message; a
    mapping that fails, or a subject that is empty or over 127 bytes, raises `InvalidArgument`.
    """
    assertion = dict(assertion)
    try:
        activation = Activation({"assertion": assertion})
    except CelError as exc:
        raise InvalidArgument(f"The credential cannot be evaluated: {exc}") from None
    if compiled.condition is not None and not compiled.condition_uses_mapped:
        _check_condition(compiled.condition, activation)
    google: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    size = 0
    for key, program, claim in compiled.programs:
        # `assertion.NAME` of an ASCII string claim is that string: read it without the CEL
        # runtime (evaluating such selections was two thirds of an exchange's CEL time). Anything
        # else, a missing claim included, is evaluated, so values and errors are CEL's own.
        value = assertion.get(claim) if claim is not None else None
        if type(value) is not str or not value.isascii():
            try:
                value = program.evaluate(activation)
            except CelError as exc:
                raise InvalidArgument(f"Unable to evaluate the attribute mapping for '{key}': {exc}") from None
        value = _normalise(key, value)
        if value is None:
            continue
        size += len(key.encode()) + sum(len(v.encode()) for v in ([value] if isinstance(value, str) else value))
        prefix, _, name = key.partition(".")
        (google if prefix == "google" else attributes)[name] = value
    if size > MAX_MAPPED_ATTRIBUTES_BYTES:
        raise InvalidArgument(f"The size of mapped attributes exceeds the {MAX_MAPPED_ATTRIBUTES_BYTES // 1024}KB limit.")
    subject = google.get("subject")
    if not isinstance(subject, str) or not subject:
        raise InvalidArgument("The mapped attribute google.subject must be a non-empty string.")
    if len(subject.encode()) > MAX_SUBJECT_BYTES:
        raise InvalidArgument(f"The size of mapped attribute google.subject exceeds the {MAX_SUBJECT_BYTES} bytes limit.")
    if compiled.condition is not None and compiled.condition_uses_mapped:
        try:
            full = Activation({"assertion": assertion, "google": google, "attribute": attributes})
        except CelError:
            raise PermissionDenied(CONDITION_REJECTED) from None
        _check_condition(compiled.condition, full)
    groups = google.get("groups", ())
    return MappedIdentity(
        subject=subject,
        groups=(groups,) if isinstance(groups, str) else tuple(groups),
        attributes=attributes,
        display_name=_single(google, "display_name"),
        profile_photo=_single(google, "profile_photo"),
        posix_username=_single(google, "posix_username"),
    )


def _check_condition(condition: Program, activation: Activation) -> None:
    try:
        allowed = condition.evaluate(activation)
    except CelError:
        allowed = False
    if allowed is not True:
        raise PermissionDenied(CONDITION_REJECTED)


def _normalise(key: str, value: Any) -> str | list[str] | None:
    """Mapped values are strings or lists of strings; null drops the attribute."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if key in ("google.subject", "google.display_name", "google.profile_photo", "google.posix_username"):
            raise InvalidArgument(f"The mapped attribute {key} must be a string, not a list.")
        return value
    raise InvalidArgument(f"The mapped attribute {key} must be a string or a list of strings, "
                          f"not {_cel_type_name(value)}.")


def _single(google: dict[str, Any], name: str) -> str | None:
    value = google.get(name)
    return value if isinstance(value, str) else None


def _cel_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
