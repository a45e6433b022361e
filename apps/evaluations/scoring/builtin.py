"""Built-in scorers that need no model: string, regex, JSON, length, F1, labels and policy.

Conventions every scorer here follows:

- `validate` returns JSON-serializable cleaned parameters with defaults filled in, and
  raises ScorerConfigError with one entry per bad parameter (unknown names included).
- Keys starting with "_" are reserved for values the caller injects at run time (never
  user input); scorers that do not use them drop them.
- `score` and `metrics` re-clean their parameters, so raw parameters work as well.
- Scorers that compare with a reference (exact_match, token_f1, label_accuracy) leave a
  case out when its `expected` is blank: a dataset row without a reference cannot be judged.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from apps.evaluations.scoring.base import (
    HIGHER,
    MetricSpec,
    ScorerConfigError,
    ScorerSpec,
    ScoringCase,
    register,
)
from apps.prompts import policy
from apps.prompts.default_rules import DEFAULT_RULES

# Metrics that describe an output rather than judge it; thresholds and regression checks skip them.
INFORMATIVE_METRICS = frozenset({"length_words"})

REQUIRED = object()

# --- parameter checking ------------------------------------------------------------------------

Checker = Callable[[Any], tuple[Any, str | None]]


def _bool(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool):
        return value, None
    return None, "Must be true or false."


def _text(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str) and value:
        return value, None
    return None, "Must be a non-empty string."


def _texts(value: Any) -> tuple[Any, str | None]:
    items = [value] if isinstance(value, str) else value
    if (
        isinstance(items, list | tuple)
        and items
        and all(isinstance(item, str) and item for item in items)
    ):
        return list(items), None
    return None, "Must be a non-empty string or a non-empty list of non-empty strings."


def _optional_texts(value: Any) -> tuple[Any, str | None]:
    if value is None:
        return None, None
    return _texts(value)


def _fraction(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value), None
    return None, "Must be a number between 0 and 1."


def _count(value: Any) -> tuple[Any, str | None]:
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, None
    return None, "Must be a whole number of at least 0."


def _choice(*options: str) -> Checker:
    def check(value: Any) -> tuple[Any, str | None]:
        if value in options:
            return value, None
        return None, f"Must be one of: {', '.join(options)}."

    return check


def _clean(
    params: Mapping[str, Any] | None,
    fields: Mapping[str, tuple[Checker, Any]],
    injected: Mapping[str, Checker] | None = None,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check params against {name: (checker, default or REQUIRED)}; return (cleaned, errors)."""
    params = params or {}
    injected = injected or {}
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if not isinstance(params, Mapping):
        return {}, {"params": ["Must be an object."]}
    for name in params:
        if name not in fields and not str(name).startswith("_"):
            errors.setdefault(str(name), []).append("Unknown parameter.")
    for name, (check, default) in fields.items():
        if name not in params:
            if default is REQUIRED:
                errors.setdefault(name, []).append("This parameter is required.")
            else:
                cleaned[name] = default
            continue
        value, problem = check(params[name])
        if problem:
            errors.setdefault(name, []).append(problem)
        else:
            cleaned[name] = value
    for name, check in injected.items():
        if name in params:
            value, problem = check(params[name])
            if problem:
                errors.setdefault(name, []).append(problem)
            else:
                cleaned[name] = value
    return cleaned, errors


def _raise(key: str, errors: dict[str, list[str]]) -> None:
    if errors:
        raise ScorerConfigError(f"Invalid parameters for scorer {key!r}.", errors)


# --- text helpers ------------------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_FENCED = re.compile(r"\A```[ \t]*(?:json)?[ \t]*\r?\n(.*?)\r?\n?```\Z", re.DOTALL | re.IGNORECASE)


def _is_punctuation(char: str) -> bool:
    # ASCII punctuation as SQuAD strips it (it includes symbols such as $ and +), plus Unicode's.
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def squad_normalize(text: str) -> str:
    """Lowercase, drop punctuation and English articles, collapse whitespace (SQuAD's recipe)."""
    text = "".join(" " if _is_punctuation(c) else c for c in text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-tokens F1 between two answers after SQuAD normalization; both empty is 1.0."""
    predicted = squad_normalize(prediction).split()
    expected = squad_normalize(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(expected)
    return 2 * precision * recall / (precision + recall)


def normalize_label(text: str, *, case_sensitive: bool = False) -> str:
    """A label as written by a model: surrounding whitespace, quotes and a final period removed."""
    label = " ".join(text.split()).strip("\"'`").strip()
    label = label.removesuffix(".").strip()
    return label if case_sensitive else label.casefold()


def parse_json_output(output: str) -> tuple[bool, Any]:
    """(True, value) when the output is JSON, or one ```json fenced block holding JSON."""
    text = output.strip()
    fenced = _FENCED.match(text)
    if fenced:
        text = fenced.group(1).strip()

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return True, json.loads(text, parse_constant=reject_constant)
    except (ValueError, RecursionError):  # a thousand-deep output would fail the whole batch
        return False, None


# --- exact_match --------------------------------------------------------------------------------

_EXACT_FIELDS = {
    "case_sensitive": (_bool, False),
    "strip": (_bool, True),
    "normalize_whitespace": (_bool, True),
}


def _exact_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(params, _EXACT_FIELDS)
    _raise("exact_match", errors)
    return cleaned


def _exact_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    return [MetricSpec("exact_match", HIGHER, 1.0, "1 when the output equals the expected answer.")]


def _exact_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    p = _exact_validate(params)

    def norm(text: str) -> str:
        if p["normalize_whitespace"]:
            text = _WHITESPACE.sub(" ", text)
        if p["strip"]:
            text = text.strip()
        return text if p["case_sensitive"] else text.casefold()

    return [
        {"exact_match": float(norm(c.output) == norm(c.expected))} if c.expected.strip() else {}
        for c in cases
    ]


# --- contains / not_contains ----------------------------------------------------------------

_CONTAINS_FIELDS = {
    "text": (_texts, REQUIRED),
    "all": (_bool, True),
    "case_sensitive": (_bool, False),
}


def _contains_validate_for(key: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def validate(params: Mapping[str, Any]) -> dict[str, Any]:
        cleaned, errors = _clean(params, _CONTAINS_FIELDS)
        _raise(key, errors)
        return cleaned

    return validate


def _found(output: str, p: Mapping[str, Any]) -> list[bool]:
    haystack = output if p["case_sensitive"] else output.casefold()
    return [(t if p["case_sensitive"] else t.casefold()) in haystack for t in p["text"]]


def _contains_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    p = _contains_validate_for("contains")(params)
    combine = all if p["all"] else any
    return [{"contains": float(combine(_found(c.output, p)))} for c in cases]


def _not_contains_score(
    cases: Sequence[ScoringCase], params, models=None
) -> list[dict[str, float]]:
    # all=True: every text must be absent; all=False: at least one must be absent.
    p = _contains_validate_for("not_contains")(params)
    combine = all if p["all"] else any
    return [{"not_contains": float(combine(not hit for hit in _found(c.output, p)))} for c in cases]


# --- regex -----------------------------------------------------------------------------------------

_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def _flags(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, list | tuple) and all(f in _REGEX_FLAGS for f in value):
        return sorted(set(value)), None
    return None, 'Must be a list of flags from "i", "m", "s".'


def _regex_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(
        params, {"pattern": (_text, REQUIRED), "flags": (_flags, []), "full": (_bool, False)}
    )
    if "pattern" in cleaned:
        try:
            re.compile(cleaned["pattern"])
        except re.error as exc:
            errors.setdefault("pattern", []).append(f"Invalid regular expression: {exc}")
    _raise("regex", errors)
    return cleaned


def _regex_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    p = _regex_validate(params)
    flags = 0
    for f in p["flags"]:
        flags |= _REGEX_FLAGS[f]
    regex = re.compile(p["pattern"], flags)
    if p["full"]:
        # Models end answers with stray newlines; a full match judges the answer, not them.
        return [{"regex_match": float(bool(regex.fullmatch(c.output.strip())))} for c in cases]
    return [{"regex_match": float(bool(regex.search(c.output)))} for c in cases]


# --- json_valid / json_schema -------------------------------------------------------------------


def _json_valid_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(params, {})
    _raise("json_valid", errors)
    return cleaned


def _json_valid_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    _json_valid_validate(params)
    return [{"json_valid": float(parse_json_output(c.output)[0])} for c in cases]


def _schema(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, dict | bool):
        return None, "Must be a JSON schema (an object)."
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        return None, f"Not a valid JSON schema (Draft 2020-12): {exc.message}"
    return value, None


def _json_schema_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(params, {"schema": (_schema, REQUIRED)})
    _raise("json_schema", errors)
    return cleaned


def _json_schema_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    validator = Draft202012Validator(_json_schema_validate(params)["schema"])
    results = []
    for case in cases:
        ok, value = parse_json_output(case.output)
        results.append({"json_schema": float(ok and validator.is_valid(value))})
    return results


# --- length -----------------------------------------------------------------------------------------

_LENGTH_BOUNDS = ("min_chars", "max_chars", "min_words", "max_words")


def _length_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(params, {name: (_count, None) for name in _LENGTH_BOUNDS})
    if not errors and all(cleaned[name] is None for name in _LENGTH_BOUNDS):
        errors["__all__"] = ["Set at least one of: " + ", ".join(_LENGTH_BOUNDS) + "."]
    for unit in ("chars", "words"):
        low, high = cleaned.get(f"min_{unit}"), cleaned.get(f"max_{unit}")
        if low is not None and high is not None and low > high:
            errors.setdefault(f"max_{unit}", []).append(f"Must be at least min_{unit}.")
    _raise("length", errors)
    return cleaned


def _length_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    return [
        MetricSpec("length_ok", HIGHER, 1.0, "1 when the output length is within the bounds."),
        # Informative only: pass_at 0 so it never fails a case (see INFORMATIVE_METRICS).
        MetricSpec("length_words", HIGHER, 0.0, "Words in the output (informative)."),
    ]


def _length_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    p = _length_validate(params)
    results = []
    for case in cases:
        sizes = {"chars": len(case.output.strip()), "words": len(case.output.split())}
        ok = all(
            (p[f"min_{unit}"] is None or size >= p[f"min_{unit}"])
            and (p[f"max_{unit}"] is None or size <= p[f"max_{unit}"])
            for unit, size in sizes.items()
        )
        results.append({"length_ok": float(ok), "length_words": float(sizes["words"])})
    return results


# --- token_f1 -----------------------------------------------------------------------------------------


def _f1_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(params, {"pass_at": (_fraction, 0.5)})
    _raise("token_f1", errors)
    return cleaned


def _f1_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    return [
        MetricSpec(
            "token_f1",
            HIGHER,
            _f1_validate(params)["pass_at"],
            "Token overlap F1 with the expected answer (SQuAD normalization).",
        )
    ]


def _f1_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    _f1_validate(params)
    return [
        {"token_f1": token_f1(c.output, c.expected)} if c.expected.strip() else {} for c in cases
    ]


# --- label_accuracy ---------------------------------------------------------------------------------


def _label_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(
        params, {"labels": (_optional_texts, None), "case_sensitive": (_bool, False)}
    )
    _raise("label_accuracy", errors)
    return cleaned


def _label_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    p = _label_validate(params)
    sensitive = p["case_sensitive"]
    allowed = (
        None
        if p["labels"] is None
        else {normalize_label(label, case_sensitive=sensitive) for label in p["labels"]}
    )
    results = []
    for case in cases:
        if not case.expected.strip():
            results.append({})
            continue
        predicted = normalize_label(case.output, case_sensitive=sensitive)
        expected = normalize_label(case.expected, case_sensitive=sensitive)
        correct = predicted == expected and (allowed is None or predicted in allowed)
        results.append({"label_correct": float(correct)})
    return results


def label_report(expected: Sequence[str], predicted: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-label precision, recall, f1 and support, plus their unweighted "macro" mean."""
    if len(expected) != len(predicted):
        raise ValueError("expected and predicted must have the same length")
    labels = sorted(set(expected) | set(predicted))
    pairs = Counter(zip(expected, predicted, strict=True))
    true_counts, predicted_counts = Counter(expected), Counter(predicted)
    report: dict[str, dict[str, float]] = {}
    for label in labels:
        hits = pairs[(label, label)]
        precision = hits / predicted_counts[label] if predicted_counts[label] else 0.0
        recall = hits / true_counts[label] if true_counts[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": float(true_counts[label]),
        }
    n = len(labels)
    report["macro"] = {
        "precision": sum(report[lb]["precision"] for lb in labels) / n if n else 0.0,
        "recall": sum(report[lb]["recall"] for lb in labels) / n if n else 0.0,
        "f1": sum(report[lb]["f1"] for lb in labels) / n if n else 0.0,
        "support": float(len(expected)),
    }
    return report


# --- policy_adherence ---------------------------------------------------------------------------

SEVERITY_RANK = {"info": 0, "warning": 1, "blocking": 2}
RISK_LEVELS = ("low", "medium", "high", "critical")


def default_policy_rules() -> list[policy.RuleSpec]:
    """The shipped default rules as engine specs (used when the caller injects none)."""
    return [
        policy.RuleSpec(
            rule["code"],
            rule["kind"],
            rule["pattern"],
            rule["severity"],
            rule["message"],
            tuple(rule.get("risk_levels") or ()),
        )
        for rule in DEFAULT_RULES
    ]


def _judges_outputs(rule: policy.RuleSpec) -> bool:
    # Whole-text checks (grounding instruction present) judge a prompt; every output would fail.
    return not (rule.kind == "structural" and rule.pattern in policy.WHOLE_TEXT_CHECKS)


def _rules(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, list | tuple) and all(isinstance(r, policy.RuleSpec) for r in value):
        return list(value), None
    return None, "Must be a list of RuleSpec objects (injected at run time)."


def _context(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, Mapping):
        return value, None
    return None, "Must be a mapping (injected at run time)."


def _policy_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    cleaned, errors = _clean(
        params,
        {
            "rule_codes": (_optional_texts, None),
            "risk_level": (_choice(*RISK_LEVELS), "high"),
            "fail_on": (_choice("blocking", "warning"), "warning"),
        },
        injected={"_rules": _rules, "_context": _context},
    )
    # Stored rules are only known at run time; check the codes when the rules are at hand.
    if cleaned.get("rule_codes") and "_rules" in cleaned:
        known = {rule.code for rule in cleaned["_rules"]}
        unknown = [code for code in cleaned["rule_codes"] if code not in known]
        if unknown:
            errors.setdefault("rule_codes", []).append(f"Unknown rule codes: {', '.join(unknown)}.")
    _raise("policy_adherence", errors)
    return cleaned


def _policy_score(cases: Sequence[ScoringCase], params, models=None) -> list[dict[str, float]]:
    p = _policy_validate(params)
    rules = p["_rules"] if "_rules" in p else default_policy_rules()
    codes = set(p["rule_codes"]) if p["rule_codes"] else None
    rules = [r for r in rules if _judges_outputs(r) and (codes is None or r.code in codes)]
    bar = SEVERITY_RANK[p["fail_on"]]
    context = p.get("_context") or {}
    results = []
    for case in cases:
        findings = policy.evaluate(
            rules, [("output", case.output)], risk_level=p["risk_level"], context=context
        )
        failed = any(SEVERITY_RANK.get(f.severity, 0) >= bar for f in findings)
        results.append({"policy_adherence": 0.0 if failed else 1.0})
    return results


# --- registry --------------------------------------------------------------------------------------


def _single(name: str, description: str) -> Callable[[Mapping[str, Any]], list[MetricSpec]]:
    def metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
        return [MetricSpec(name, HIGHER, 1.0, description)]

    return metrics


BUILTIN_SCORERS = [
    ScorerSpec(
        "exact_match",
        "Exact match",
        "The output equals the expected answer (case and whitespace ignored by default).",
        _exact_validate,
        _exact_metrics,
        _exact_score,
    ),
    ScorerSpec(
        "contains",
        "Contains",
        "The output contains the given text (all of them, or any with all=false).",
        _contains_validate_for("contains"),
        _single("contains", "1 when the output contains the required text."),
        _contains_score,
    ),
    ScorerSpec(
        "not_contains",
        "Does not contain",
        "The output contains none of the given texts (or misses at least one with all=false).",
        _contains_validate_for("not_contains"),
        _single("not_contains", "1 when the output avoids the forbidden text."),
        _not_contains_score,
    ),
    ScorerSpec(
        "regex",
        "Regular expression",
        "The output matches a regular expression (anywhere, or in full with full=true).",
        _regex_validate,
        _single("regex_match", "1 when the output matches the pattern."),
        _regex_score,
    ),
    ScorerSpec(
        "json_valid",
        "Valid JSON",
        "The output is JSON (a single ```json fenced block is accepted).",
        _json_valid_validate,
        _single("json_valid", "1 when the output parses as JSON."),
        _json_valid_score,
    ),
    ScorerSpec(
        "json_schema",
        "JSON schema",
        "The output is JSON that conforms to a JSON schema (Draft 2020-12).",
        _json_schema_validate,
        _single("json_schema", "1 when the output is JSON that conforms to the schema."),
        _json_schema_score,
    ),
    ScorerSpec(
        "length",
        "Length",
        "The output length lies within character and word bounds.",
        _length_validate,
        _length_metrics,
        _length_score,
    ),
    ScorerSpec(
        "token_f1",
        "Token F1",
        "Token overlap F1 with the expected answer, SQuAD style.",
        _f1_validate,
        _f1_metrics,
        _f1_score,
    ),
    ScorerSpec(
        "label_accuracy",
        "Label accuracy",
        "The output label equals the expected label (and is one of the declared labels).",
        _label_validate,
        _single("label_correct", "1 when the predicted label is the expected one."),
        _label_score,
    ),
    ScorerSpec(
        "policy_adherence",
        "Policy adherence",
        "The output triggers no policy rule at or above the chosen severity.",
        _policy_validate,
        _single("policy_adherence", "1 when no policy finding reaches the fail_on severity."),
        _policy_score,
    ),
]

for _spec in BUILTIN_SCORERS:
    register(_spec)
