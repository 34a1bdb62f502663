"""Why a filter on `principalSubject` by `principalSet://…` or `attribute.NAME/VALUE` finds nothing,
and the filter that does (issue #19; seed 001's two audit queries).

Google writes the federated principal, `principal://iam.googleapis.com/projects/N/locations/global/
workloadIdentityPools/POOL/subject/SUBJECT`, in `protoPayload.authenticationInfo.principalSubject`;
attributes are not logged (docs/audit-logs.md). A pool is found by its `…/subject/` prefix; an
attribute only where the provider's mapping puts its value in google.subject: the same claim, or
GitHub's `sub` (`repo:OWNER/REPO:ref:REF`) for `repository`, `repository_owner` and `ref`. Pure
text functions: the caller supplies the providers and runs the candidate filters
(keyless.cli.audit over HTTP, the console in process).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# FIELD OP "VALUE" where FIELD is principalSubject in either spelling; the value may hold \" escapes.
COMPARISON = re.compile(
    r'((?:protoPayload|proto_payload)\.(?:authenticationInfo|authentication_info)\.'
    r'(?:principalSubject|principal_subject))\s*(=~|=|:)\s*"((?:[^"\\]|\\.){0,2000})"')
POOL = re.compile(r"(?:projects/(\d{1,20})/locations/global/)?workloadIdentityPools/([a-z0-9-]{4,63})")
ATTRIBUTE = re.compile(r"attribute\.([a-z0-9_]{1,100})/(.{1,500}?)\$?$")  # the value runs to the end
PLAIN = re.compile(r"^[A-Za-z0-9_./:@=-]+$")  # values safe inside a regex without escaping
# GitHub's `sub` is `repo:OWNER/REPO:ref:REF` (or `:environment:…`, `:pull_request`): where each claim sits in it
GITHUB_SUB = {"assertion.repository": "repo:{value}:", "assertion.repository_owner": "repo:{value}/",
              "assertion.ref": ":ref:{value}$"}
MAX_CANDIDATES = 8  # rewritten filters tried per comparison (each is one more query)
MAX_MISPLACED = 4  # comparisons looked at per filter: a long filter must not cost hundreds of queries


@dataclass(frozen=True)
class Provider:
    """What a hint needs of one provider: its pool's name and its attribute mapping."""

    pool: str  # projects/N/locations/global/workloadIdentityPools/POOL
    mapping: dict[str, str]


@dataclass(frozen=True)
class Misplaced:
    """One principalSubject comparison by a form Google never writes there."""

    text: str  # the comparison as written
    field: str
    project_number: str | None
    pool_id: str | None
    attribute: tuple[str, str] | None  # (NAME, VALUE)


def misplaced(filter_text: str) -> list[Misplaced]:
    """The comparisons on principalSubject whose value is a principalSet:// or attribute.NAME/VALUE form."""
    found: list[Misplaced] = []
    for m in COMPARISON.finditer(filter_text[:20_000]):
        if len(found) >= MAX_MISPLACED:
            break
        value = m.group(3).replace("\\\\", "\\").replace('\\"', '"')
        attribute = ATTRIBUTE.search(value)
        if "principalSet://" not in value and attribute is None:
            continue
        pool = POOL.search(value)
        found.append(Misplaced(m.group(0), m.group(1), pool.group(1) if pool else None, pool.group(2) if pool else None,
                               (attribute.group(1), attribute.group(2)) if attribute else None))
    return found


def _subject_prefix(pool: str) -> str:
    return f"^principal://iam.googleapis.com/{pool}/subject/"


def replacements(m: Misplaced, providers: Callable[[], list[Provider]]) -> list[str]:
    """Comparisons that say what `m` meant in the form principalSubject holds, best first."""
    if m.attribute is None:
        if m.pool_id is None:
            return []
        pool = (f"projects/{m.project_number}/locations/global/workloadIdentityPools/{m.pool_id}" if m.project_number
                else None)
        prefix = _subject_prefix(pool) if pool else f"workloadIdentityPools/{m.pool_id}/subject/"
        return [f'{m.field}=~"{prefix}"']
    name, value = m.attribute
    if not PLAIN.match(value):
        return []
    out: list[str] = []
    for p in providers():
        pool_id = p.pool.rsplit("/", 1)[-1]
        if m.pool_id is not None and pool_id != m.pool_id:
            continue
        expression = p.mapping.get(f"attribute.{name}", "").replace(" ", "")
        subject = p.mapping.get("google.subject", "").replace(" ", "")
        if not expression:
            continue
        if expression == subject:
            found = f"{_subject_prefix(p.pool)}{value}$"
        elif subject == "assertion.sub" and expression in GITHUB_SUB:
            tail = GITHUB_SUB[expression].format(value=value)
            found = _subject_prefix(p.pool) + (tail if tail.startswith("repo:") else f".*{tail}")
        else:
            continue
        comparison = f'{m.field}=~"{found}"'
        if comparison not in out:
            out.append(comparison)
        if len(out) >= MAX_CANDIDATES:
            break
    return out


def hint(filter_text: str, providers: Callable[[], list[Provider]], count: Callable[[str], int]) -> str | None:
    """For a filter that found nothing: why, and each rewritten filter that finds entries (its lines
    indented by two spaces) with how many (`count` runs a filter, up to 100). None when no
    comparison is of the misplaced kind."""
    found = misplaced(filter_text)
    if not found:
        return None
    lines = ["principalSubject never holds a principalSet:// or attribute.NAME/VALUE form: Google (and Keyless) "
             "record the federated principal, principal://iam.googleapis.com/projects/NUMBER/locations/global/"
             "workloadIdentityPools/POOL/subject/SUBJECT, and attributes are not logged."]
    cached: list[Provider] | None = None

    def known() -> list[Provider]:
        nonlocal cached
        if cached is None:
            cached = providers()
        return cached

    working, rewritable = [], True
    for m in found:
        rewritten = replacements(m, known)
        rewritable = rewritable and bool(rewritten)
        for comparison in rewritten:
            candidate = filter_text.replace(m.text, comparison)
            n = count(candidate)
            if n:
                working.append((n, candidate))
        if not rewritten and m.attribute is not None:
            lines.append(f"No provider{' of pool ' + m.pool_id if m.pool_id else ''} maps attribute.{m.attribute[0]} "
                         "into google.subject, so it cannot be queried in the audit log: map the value into "
                         "google.subject, or query by the service account each workload impersonates.")
    for n, candidate in working:
        lines.append(f"This filter finds {n}{'+' if n >= 100 else ''} {'entry' if n == 1 else 'entries'}:")
        lines += [f"  {part}" for part in candidate.splitlines()]  # indented: the lines of one filter
    if not working and rewritable:
        lines.append("Written that way, the query still finds nothing.")
    return "\n".join(lines)


def suggested_filters(text: str) -> list[str]:
    """The filters a hint offers, back from its text (each follows a "finds" line, indented)."""
    out: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("This filter finds "):
            current = []
            out.append("")
        elif current is not None and line.startswith("  "):
            current.append(line[2:])
            out[-1] = "\n".join(current)
        else:
            current = None
    return out
