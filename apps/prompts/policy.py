"""Policy checks over prompt text (and, later, model outputs). Pure: no database.

A rule is a pattern (a regular expression), a detector (secret or personal-data
finder with validation such as Luhn or IBAN checksums), or a structural check
(grounding instruction present for high risk, no undeclared tool calls). Each
finding names the rule, the matched span and a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

MAX_FINDINGS_PER_RULE = 20
EXCERPT_CHARS = 80


@dataclass(frozen=True)
class RuleSpec:
    """What the engine needs of a rule, whatever stores it."""

    code: str
    kind: str  # pattern | secret | pii | structural
    pattern: str  # a regex (pattern), or the detector / check name
    severity: str  # info | warning | blocking
    message: str
    risk_levels: tuple[str, ...] = ()  # empty: every risk level


@dataclass(frozen=True)
class Finding:
    """One match of one rule."""

    code: str
    severity: str
    message: str
    location: str = ""
    start: int | None = None
    end: int | None = None
    excerpt: str = ""


# --- detectors -----------------------------------------------------------------------------------


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        n = int(char)
        if index % 2 == parity:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _iban_ok(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


Detector = tuple[re.Pattern, Callable[[str], bool] | None]

DETECTORS: dict[str, Detector] = {
    # personal data
    "email": (
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
        ),
        None,
    ),
    "phone": (
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}[\s.-]\d{3,4}[\s.-]?\d{3,4}(?![\w])"
        ),
        lambda m: 9 <= sum(c.isdigit() for c in m) <= 15,
    ),
    "payment_card": (
        re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"),
        lambda m: _luhn_ok(re.sub(r"\D", "", m)),
    ),
    "us_ssn": (re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), None),
    "uk_nino": (
        re.compile(
            r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
        ),
        None,
    ),
    "iban": (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), _iban_ok),
    # secrets
    "aws_access_key": (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), None),
    "openai_style_key": (re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"), None),
    "github_token": (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), None),
    "slack_token": (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), None),
    "private_key": (re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"), None),
    "credential_assignment": (
        re.compile(
            r"(?i)\b(?:api[_-]?key|secret|password|passwd|access[_-]?token|auth[_-]?token)\b\s*[:=]\s*['\"]?"
            r"(?!\{\{)[A-Za-z0-9/+_.\-]{8,}"
        ),
        None,
    ),
}
# Which detectors a "pii" or "secret" rule runs when its pattern names a group.
DETECTOR_GROUPS = {
    "pii": ("email", "phone", "payment_card", "us_ssn", "uk_nino", "iban"),
    "national_id": ("us_ssn", "uk_nino"),
    "secrets": (
        "aws_access_key",
        "openai_style_key",
        "github_token",
        "slack_token",
        "private_key",
        "credential_assignment",
    ),
}


# --- structural checks ---------------------------------------------------------------------------

GROUNDING = re.compile(
    r"(?is)\b(?:only|solely|strictly|exclusively)\b.{0,40}\b(?:use|using|rely|relying|answer|based|from|cite)\b"
    r".{0,60}\b(?:context|provided|sources?|documents?|passages?|excerpts?|knowledge base)\b"
    r"|\bbased (?:only |solely |strictly )?on the (?:provided|given|supplied|retrieved) "
    r"(?:context|documents?|passages?|sources?|information)\b"
    r"|\bif the (?:answer|information) is not (?:in|contained in|present in) the (?:context|documents?|passages?|sources?)\b"
)
TOOL_CALL = re.compile(
    r"(?i)\b(?:call|invoke|use|query|trigger)\s+(?:the\s+|an?\s+)?(?:\w+\s+)?(?:tool|function|api|endpoint|webhook|plugin)s?\b"
    r"|\bhttps?://[^\s'\"<>]+"
    r"|\b(?:run|execute)\s+(?:this\s+|the\s+|a\s+)?(?:shell|bash|sql|python|code|command|script)\b"
)


def _check_grounding(text: str, context: Mapping) -> list[tuple[int | None, int | None, str]]:
    if GROUNDING.search(text):
        return []
    return [(None, None, "")]


def _check_tool_calls(text: str, context: Mapping) -> list[tuple[int | None, int | None, str]]:
    if (context.get("model_config") or {}).get("tools"):
        return []
    return [(m.start(), m.end(), m.group()) for m in TOOL_CALL.finditer(text)]


STRUCTURAL_CHECKS: dict[str, Callable[[str, Mapping], list]] = {
    "grounding_required": _check_grounding,
    "no_undeclared_tool_calls": _check_tool_calls,
}
# Structural checks that look at the prompt as a whole rather than per text segment.
WHOLE_TEXT_CHECKS = {"grounding_required"}


# --- engine ------------------------------------------------------------------------------------------


def _excerpt(text: str, start: int, end: int) -> str:
    snippet = text[start:end]
    if len(snippet) > EXCERPT_CHARS:
        snippet = snippet[: EXCERPT_CHARS - 1] + "…"
    return snippet


def _mask(kind: str, snippet: str) -> str:
    """Never copy a full secret or personal value into the findings table."""
    if kind in {"secret", "pii"} and len(snippet) > 6:
        return snippet[:3] + "…" + snippet[-2:]
    return snippet


def rule_problem(rule: RuleSpec) -> str | None:
    """Why a rule cannot run (bad regex, unknown detector), or None."""
    if rule.kind == "pattern":
        try:
            re.compile(rule.pattern)
        except re.error as exc:
            return f"Invalid regular expression: {exc}"
        return None
    if rule.kind in {"secret", "pii"}:
        names = DETECTOR_GROUPS.get(rule.pattern, (rule.pattern,))
        unknown = [n for n in names if n not in DETECTORS]
        return f"Unknown detector {unknown[0]!r}." if unknown else None
    if rule.kind == "structural":
        return (
            None
            if rule.pattern in STRUCTURAL_CHECKS
            else f"Unknown structural check {rule.pattern!r}."
        )
    return f"Unknown rule kind {rule.kind!r}."


def _matches(
    rule: RuleSpec, text: str, context: Mapping
) -> list[tuple[int | None, int | None, str]]:
    if rule.kind == "pattern":
        return [
            (m.start(), m.end(), m.group()) for m in re.finditer(rule.pattern, text, re.IGNORECASE)
        ]
    if rule.kind in {"secret", "pii"}:
        found = []
        for name in DETECTOR_GROUPS.get(rule.pattern, (rule.pattern,)):
            regex, valid = DETECTORS[name]
            found += [
                (m.start(), m.end(), m.group())
                for m in regex.finditer(text)
                if valid is None or valid(m.group())
            ]
        return found
    return STRUCTURAL_CHECKS[rule.pattern](text, context)


def evaluate(
    rules: Iterable[RuleSpec],
    segments: Sequence[tuple[str, str]],
    *,
    risk_level: str,
    context: Mapping | None = None,
) -> list[Finding]:
    """Apply every rule that covers `risk_level` to the (location, text) segments."""
    context = context or {}
    findings: list[Finding] = []
    for rule in rules:
        if rule.risk_levels and risk_level not in rule.risk_levels:
            continue
        if rule_problem(rule):
            continue
        if rule.kind == "structural" and rule.pattern in WHOLE_TEXT_CHECKS:
            whole = "\n".join(text for _, text in segments)
            if _matches(rule, whole, context):
                findings.append(Finding(rule.code, rule.severity, rule.message))
            continue
        count = 0
        for location, text in segments:
            for start, end, _ in _matches(rule, text, context):
                if count >= MAX_FINDINGS_PER_RULE:
                    break
                count += 1
                excerpt = _mask(rule.kind, _excerpt(text, start, end)) if start is not None else ""
                findings.append(
                    Finding(rule.code, rule.severity, rule.message, location, start, end, excerpt)
                )
    return findings
