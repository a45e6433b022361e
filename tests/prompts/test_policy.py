"""Each default policy rule flags its true example and not its false one; the engine reports spans."""

import pytest

from apps.prompts import policy
from apps.prompts.default_rules import DEFAULT_RULES


def spec(rule):
    return policy.RuleSpec(
        rule["code"],
        rule["kind"],
        rule["pattern"],
        rule["severity"],
        rule["message"],
        tuple(rule.get("risk_levels", ())),
    )


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=[r["code"] for r in DEFAULT_RULES])
def test_default_rule_flags_its_true_example(rule):
    findings = policy.evaluate(
        [spec(rule)], [("text", rule["example_true"])], risk_level="critical"
    )
    assert findings and findings[0].code == rule["code"]


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=[r["code"] for r in DEFAULT_RULES])
def test_default_rule_passes_its_false_example(rule):
    assert (
        policy.evaluate([spec(rule)], [("text", rule["example_false"])], risk_level="critical")
        == []
    )


def test_every_default_rule_is_runnable():
    assert [policy.rule_problem(spec(r)) for r in DEFAULT_RULES] == [None] * len(DEFAULT_RULES)


def test_findings_carry_location_span_and_a_masked_excerpt():
    rule = next(r for r in DEFAULT_RULES if r["code"] == "PII-003")
    text = "Pay with 4111 1111 1111 1111 today"
    [finding] = policy.evaluate([spec(rule)], [("messages[0] (system)", text)], risk_level="low")
    assert finding.location == "messages[0] (system)"
    assert text[finding.start : finding.end] == "4111 1111 1111 1111"
    assert "1111 1111 1111" not in finding.excerpt


def test_grounding_rule_only_applies_to_high_and_critical():
    rule = spec(next(r for r in DEFAULT_RULES if r["code"] == "GRD-001"))
    segments = [("text", "Answer helpfully.")]
    assert policy.evaluate([rule], segments, risk_level="medium") == []
    assert policy.evaluate([rule], segments, risk_level="high")


def test_grounding_is_judged_over_the_whole_prompt():
    rule = spec(next(r for r in DEFAULT_RULES if r["code"] == "GRD-001"))
    segments = [
        ("messages[0] (system)", "Answer only using the provided context."),
        ("messages[1] (user)", "{{ q }}"),
    ]
    assert policy.evaluate([rule], segments, risk_level="critical") == []


def test_tool_calls_are_fine_when_the_model_config_declares_tools():
    rule = spec(next(r for r in DEFAULT_RULES if r["code"] == "TLS-001"))
    segments = [("text", "Call the weather API for the forecast.")]
    assert policy.evaluate([rule], segments, risk_level="low")
    assert (
        policy.evaluate(
            [rule],
            segments,
            risk_level="low",
            context={"model_config": {"tools": [{"name": "weather"}]}},
        )
        == []
    )


def test_luhn_and_iban_checksums_avoid_false_positives():
    card = spec(next(r for r in DEFAULT_RULES if r["code"] == "PII-003"))
    iban = spec(next(r for r in DEFAULT_RULES if r["code"] == "PII-005"))
    assert policy.evaluate([card], [("t", "4111 1111 1111 1112")], risk_level="low") == []
    assert policy.evaluate([iban], [("t", "DE89 3704 0044 0532 0130 01")], risk_level="low") == []


def test_bad_rules_are_reported_and_skipped():
    bad = policy.RuleSpec("X", "pattern", "(unclosed", "warning", "m")
    assert "Invalid regular expression" in policy.rule_problem(bad)
    assert policy.evaluate([bad], [("t", "anything")], risk_level="low") == []
    assert "Unknown detector" in policy.rule_problem(
        policy.RuleSpec("Y", "pii", "dna", "warning", "m")
    )


def test_findings_per_rule_are_capped():
    rule = spec(next(r for r in DEFAULT_RULES if r["code"] == "PII-001"))
    text = " ".join(f"a{i}@example.com" for i in range(100))
    assert (
        len(policy.evaluate([rule], [("t", text)], risk_level="low"))
        == policy.MAX_FINDINGS_PER_RULE
    )
