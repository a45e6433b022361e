"""The built-in scorers: known outputs, parameter validation, and the label report."""

import pytest

from apps.evaluations.scoring import base
from apps.evaluations.scoring.base import ScorerConfigError, ScoringCase
from apps.evaluations.scoring.builtin import (
    BUILTIN_SCORERS,
    INFORMATIVE_METRICS,
    default_policy_rules,
    label_report,
    normalize_label,
    parse_json_output,
    squad_normalize,
    token_f1,
)
from apps.prompts.policy import RuleSpec


def case(output: str, expected: str = "") -> ScoringCase:
    return ScoringCase(case_id="c", output=output, expected=expected)


def score(key: str, params: dict, *cases: ScoringCase) -> list[dict[str, float]]:
    return base.get(key).score(list(cases), params, None)


def values(key: str, params: dict, metric: str, outputs: list[str]) -> list[float]:
    return [row[metric] for row in score(key, params, *(case(o) for o in outputs))]


def config_errors(key: str, params) -> dict[str, list[str]]:
    with pytest.raises(ScorerConfigError) as info:
        base.get(key).validate(params)
    return info.value.errors


# --- registry ----------------------------------------------------------------------------------


def test_every_builtin_scorer_is_registered_under_its_key():
    for spec in BUILTIN_SCORERS:
        assert base.get(spec.key) is spec
        assert spec.needs_model == ""


def test_each_scorer_emits_exactly_the_metrics_it_declares():
    params = {
        "exact_match": {},
        "contains": {"text": "x"},
        "not_contains": {"text": "x"},
        "regex": {"pattern": "x"},
        "json_valid": {},
        "json_schema": {"schema": {"type": "object"}},
        "length": {"max_words": 3},
        "token_f1": {},
        "label_accuracy": {},
        "policy_adherence": {},
    }
    for spec in BUILTIN_SCORERS:
        declared = {m.name for m in spec.metrics(params[spec.key])}
        emitted = spec.score([case('{"x": 1}', "x")], params[spec.key], None)
        assert set(emitted[0]) == declared, spec.key


def test_unknown_parameters_are_rejected_by_every_scorer():
    for spec in BUILTIN_SCORERS:
        with pytest.raises(ScorerConfigError) as info:
            spec.validate({"text": "a", "pattern": "a", "schema": {}, "max_words": 1, "bogus": 1})
        assert info.value.errors["bogus"] == ["Unknown parameter."], spec.key


def test_injected_underscore_keys_are_dropped_by_scorers_that_do_not_use_them():
    assert base.get("exact_match").validate({"_rules": [1]}) == {
        "case_sensitive": False,
        "strip": True,
        "normalize_whitespace": True,
    }


# --- exact_match ----------------------------------------------------------------------------


def test_exact_match_ignores_case_and_whitespace_by_default():
    rows = score(
        "exact_match",
        {},
        case("  Paris\n", "paris"),
        case("New   York", "new york"),
        case("Lyon", "Paris"),
    )
    assert [r["exact_match"] for r in rows] == [1.0, 1.0, 0.0]


def test_exact_match_honours_case_and_whitespace_options():
    params = {"case_sensitive": True, "strip": False, "normalize_whitespace": False}
    rows = score("exact_match", params, case("Paris", "paris"), case("Paris ", "Paris"))
    assert [r["exact_match"] for r in rows] == [0.0, 0.0]
    assert score("exact_match", params, case("Paris", "Paris")) == [{"exact_match": 1.0}]


def test_exact_match_leaves_out_cases_without_an_expected_answer():
    assert score("exact_match", {}, case("anything", "  ")) == [{}]


def test_exact_match_rejects_non_boolean_options():
    assert config_errors("exact_match", {"strip": "yes"}) == {"strip": ["Must be true or false."]}


# --- contains / not_contains ---------------------------------------------------------------------


def test_contains_requires_every_text_by_default_ignoring_case():
    params = {"text": ["refund", "14 days"]}
    assert values("contains", params, "contains", ["A REFUND within 14 days", "A refund"]) == [
        1.0,
        0.0,
    ]


def test_contains_with_all_false_needs_any_text():
    params = {"text": ["refund", "credit"], "all": False}
    assert values("contains", params, "contains", ["store credit", "nothing"]) == [1.0, 0.0]


def test_contains_accepts_a_single_string_and_can_be_case_sensitive():
    params = {"text": "ACME", "case_sensitive": True}
    assert values("contains", params, "contains", ["ACME Corp", "acme corp"]) == [1.0, 0.0]


def test_not_contains_scores_one_only_when_none_appear():
    params = {"text": ["guarantee", "promise"]}
    outputs = ["We will look into it.", "I promise.", "We Guarantee and promise."]
    assert values("not_contains", params, "not_contains", outputs) == [1.0, 0.0, 0.0]


def test_not_contains_with_all_false_needs_only_one_text_absent():
    params = {"text": ["guarantee", "promise"], "all": False}
    outputs = ["I promise.", "guarantee and promise"]
    assert values("not_contains", params, "not_contains", outputs) == [1.0, 0.0]


@pytest.mark.parametrize("key", ["contains", "not_contains"])
def test_contains_scorers_require_non_empty_text(key):
    assert config_errors(key, {})["text"] == ["This parameter is required."]
    for bad in ("", [], ["ok", ""], 3, ["ok", 3]):
        assert "text" in config_errors(key, {"text": bad})


# --- regex -----------------------------------------------------------------------------------------


def test_regex_searches_anywhere_by_default():
    params = {"pattern": r"\d{4}-\d{2}"}
    assert values("regex", params, "regex_match", ["ref 2024-11 ok", "no ref"]) == [1.0, 0.0]


def test_regex_full_match_ignores_surrounding_whitespace():
    params = {"pattern": r"(yes|no)", "full": True}
    assert values("regex", params, "regex_match", ["yes\n", "yes, sir"]) == [1.0, 0.0]


def test_regex_flags_apply():
    outputs = ["first\nSECOND"]
    assert values("regex", {"pattern": "^second$"}, "regex_match", outputs) == [0.0]
    params = {"pattern": "^second$", "flags": ["i", "m"]}
    assert values("regex", params, "regex_match", outputs) == [1.0]
    params = {"pattern": "first.second", "flags": ["s", "i"]}
    assert values("regex", params, "regex_match", outputs) == [1.0]


def test_regex_validation_reports_each_bad_parameter():
    assert config_errors("regex", {})["pattern"] == ["This parameter is required."]
    errors = config_errors("regex", {"pattern": "([a-z", "flags": ["x"], "full": 1})
    assert errors["pattern"][0].startswith("Invalid regular expression")
    assert errors["flags"] == ['Must be a list of flags from "i", "m", "s".']
    assert errors["full"] == ["Must be true or false."]


# --- json ----------------------------------------------------------------------------------------


def test_json_valid_accepts_json_and_a_single_fenced_block_only():
    outputs = [
        '{"a": 1}',
        " [1, 2]\n",
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        'Here you go: {"a": 1}',
        '```json\n{"a": 1,}\n```',
        "{'a': 1}",
        "NaN",
        "",
    ]
    assert values("json_valid", {}, "json_valid", outputs) == [1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_parse_json_output_returns_the_parsed_value():
    assert parse_json_output('```JSON\n{"a": [1]}\n```') == (True, {"a": [1]})


def test_json_schema_scores_conforming_json_only():
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "number"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    outputs = [
        '{"answer": "yes", "score": 0.5}',
        '```json\n{"answer": "yes"}\n```',
        '{"score": 1}',
        '{"answer": "yes", "extra": 1}',
        "not json",
    ]
    assert values("json_schema", {"schema": schema}, "json_schema", outputs) == [1, 1, 0, 0, 0]


def test_json_schema_requires_a_valid_draft_2020_12_schema():
    assert config_errors("json_schema", {})["schema"] == ["This parameter is required."]
    assert config_errors("json_schema", {"schema": "object"})["schema"] == [
        "Must be a JSON schema (an object)."
    ]
    errors = config_errors("json_schema", {"schema": {"type": "banana"}})
    assert errors["schema"][0].startswith("Not a valid JSON schema (Draft 2020-12)")


def test_json_valid_takes_no_parameters():
    assert config_errors("json_valid", {"strict": True}) == {"strict": ["Unknown parameter."]}


# --- length ----------------------------------------------------------------------------------------


def test_length_checks_every_bound_and_reports_the_word_count():
    params = {"min_words": 2, "max_words": 4, "max_chars": 20}
    rows = score(
        "length",
        params,
        case("one"),
        case("one two three"),
        case("one two three four five"),
        case("abcdefghij abcdefghij"),
    )
    assert [r["length_ok"] for r in rows] == [0.0, 1.0, 0.0, 0.0]
    assert [r["length_words"] for r in rows] == [1.0, 3.0, 5.0, 2.0]


def test_length_counts_characters_without_surrounding_whitespace():
    assert values("length", {"min_chars": 3, "max_chars": 3}, "length_ok", ["  abc \n"]) == [1.0]


def test_length_word_count_is_informative_and_never_fails_a_case():
    metrics = {m.name: m for m in base.get("length").metrics({"max_words": 3})}
    assert metrics["length_words"].passes(0.0)
    assert "length_words" in INFORMATIVE_METRICS
    assert "length_ok" not in INFORMATIVE_METRICS


def test_length_needs_at_least_one_bound_and_sane_values():
    assert config_errors("length", {}) == {
        "__all__": ["Set at least one of: min_chars, max_chars, min_words, max_words."]
    }
    errors = config_errors("length", {"min_chars": -1, "max_words": 1.5})
    assert errors == {
        "min_chars": ["Must be a whole number of at least 0."],
        "max_words": ["Must be a whole number of at least 0."],
    }
    assert config_errors("length", {"min_words": 5, "max_words": 2}) == {
        "max_words": ["Must be at least min_words."]
    }


# --- token_f1 -------------------------------------------------------------------------------------


def test_squad_normalize_drops_case_punctuation_and_articles():
    assert squad_normalize("The  Eiffel-Tower, in a Paris!") == "eiffel tower in paris"


def test_token_f1_matches_hand_computed_values():
    # prediction tokens: cat sat on mat (4); reference: cat sat (2); overlap 2.
    # precision 2/4, recall 2/2 -> F1 = 2 * 0.5 * 1 / 1.5 = 2/3.
    assert token_f1("The cat sat on the mat.", "A cat sat") == pytest.approx(2 / 3)
    assert token_f1("Paris", "paris!") == 1.0
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("the", "") == 1.0  # only an article: both normalize to nothing
    assert token_f1("", "Paris") == 0.0


def test_token_f1_counts_repeated_tokens_as_a_bag():
    # pred x x y, ref x y y: overlap min(2, 1) + min(1, 2) = 2; P = R = 2/3, so F1 = 2/3.
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)


def test_token_f1_scorer_uses_pass_at_and_skips_cases_without_reference():
    spec = base.get("token_f1")
    assert spec.metrics({})[0].pass_at == 0.5
    assert spec.metrics({"pass_at": 0.8})[0].pass_at == 0.8
    rows = score("token_f1", {}, case("cat sat", "cat"), case("cat", ""))
    assert rows == [{"token_f1": pytest.approx(2 / 3)}, {}]


def test_token_f1_rejects_pass_at_outside_zero_one():
    for bad in (1.5, -0.1, "0.5", True):
        assert config_errors("token_f1", {"pass_at": bad}) == {
            "pass_at": ["Must be a number between 0 and 1."]
        }


# --- label_accuracy ------------------------------------------------------------------------------


def test_normalize_label_strips_quotes_periods_and_case():
    assert normalize_label(' "Positive." ') == "positive"
    assert normalize_label("Positive", case_sensitive=True) == "Positive"


def test_label_accuracy_compares_normalized_labels():
    rows = score(
        "label_accuracy",
        {},
        case("Positive.", "positive"),
        case("negative", "positive"),
        case("neutral", ""),
    )
    assert rows == [{"label_correct": 1.0}, {"label_correct": 0.0}, {}]


def test_label_accuracy_counts_undeclared_labels_as_wrong():
    params = {"labels": ["positive", "negative"]}
    rows = score("label_accuracy", params, case("mixed", "mixed"), case("NEGATIVE", "negative"))
    assert rows == [{"label_correct": 0.0}, {"label_correct": 1.0}]


def test_label_accuracy_can_be_case_sensitive():
    rows = score("label_accuracy", {"case_sensitive": True}, case("Positive", "positive"))
    assert rows == [{"label_correct": 0.0}]


def test_label_accuracy_rejects_bad_label_lists():
    assert "labels" in config_errors("label_accuracy", {"labels": []})
    assert "labels" in config_errors("label_accuracy", {"labels": ["a", 1]})


def test_label_report_matches_hand_computed_numbers():
    expected = ["cat", "cat", "cat", "dog", "dog", "bird"]
    predicted = ["cat", "cat", "dog", "dog", "cat", "fish"]
    report = label_report(expected, predicted)
    # cat: predicted 3 times, 2 right -> P 2/3; 3 true, 2 found -> R 2/3; F1 2/3.
    assert report["cat"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    # dog: predicted 2, 1 right -> P 1/2; 2 true, 1 found -> R 1/2; F1 1/2.
    assert report["dog"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    # bird never predicted, fish never expected: zero division gives 0.
    assert report["bird"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1.0}
    assert report["fish"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0.0}
    # macro over the four labels.
    assert report["macro"] == pytest.approx(
        {
            "precision": (2 / 3 + 0.5) / 4,
            "recall": (2 / 3 + 0.5) / 4,
            "f1": (2 / 3 + 0.5) / 4,
            "support": 6,
        }
    )


def test_label_report_handles_empty_input_and_rejects_mismatched_lengths():
    assert label_report([], []) == {
        "macro": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0.0}
    }
    with pytest.raises(ValueError):
        label_report(["a"], [])


# --- policy_adherence -----------------------------------------------------------------------------


def test_policy_adherence_fails_on_warnings_by_default_with_the_default_rules():
    outputs = [
        "Your order ships tomorrow.",
        "Write to jane.doe@example.com for help.",  # PII-001, warning
        "Sure, the key is api_key=9f8a7b6c5d4e3f2a1b0c",  # SEC-001, blocking
    ]
    assert values("policy_adherence", {}, "policy_adherence", outputs) == [1.0, 0.0, 0.0]


def test_policy_adherence_can_fail_on_blocking_findings_only():
    outputs = ["Write to jane.doe@example.com.", "Card 4111 1111 1111 1111 works."]
    params = {"fail_on": "blocking"}
    assert values("policy_adherence", params, "policy_adherence", outputs) == [1.0, 0.0]


def test_policy_adherence_never_applies_the_prompt_grounding_check_to_outputs():
    codes = {r.code for r in default_policy_rules()}
    assert "GRD-001" in codes
    params = {"risk_level": "critical"}
    assert values("policy_adherence", params, "policy_adherence", ["Paris."]) == [1.0]


def test_policy_adherence_limits_to_the_chosen_rule_codes():
    params = {"rule_codes": ["SEC-001"]}
    outputs = ["Write to jane.doe@example.com.", "password: hunter2hunter2"]
    assert values("policy_adherence", params, "policy_adherence", outputs) == [1.0, 0.0]


def test_policy_adherence_uses_injected_rules_and_their_risk_levels():
    rules = [
        RuleSpec("X-1", "pattern", r"\bbanana\b", "warning", "No fruit.", ("high",)),
    ]
    outputs = ["A banana.", "An apple."]
    params = {"_rules": rules}
    assert values("policy_adherence", params, "policy_adherence", outputs) == [0.0, 1.0]
    params = {"_rules": rules, "risk_level": "low"}
    assert values("policy_adherence", params, "policy_adherence", outputs) == [1.0, 1.0]


def test_policy_adherence_passes_the_injected_context_to_structural_checks():
    rules = [RuleSpec("TLS", "structural", "no_undeclared_tool_calls", "warning", "Tool.")]
    outputs = ["Call the pricing API now."]
    assert values("policy_adherence", {"_rules": rules}, "policy_adherence", outputs) == [0.0]
    params = {"_rules": rules, "_context": {"model_config": {"tools": ["pricing"]}}}
    assert values("policy_adherence", params, "policy_adherence", outputs) == [1.0]


def test_policy_adherence_validation_reports_each_bad_parameter():
    errors = config_errors(
        "policy_adherence",
        {"risk_level": "extreme", "fail_on": "info", "rule_codes": "", "_rules": [{"code": "X"}]},
    )
    assert errors["risk_level"] == ["Must be one of: low, medium, high, critical."]
    assert errors["fail_on"] == ["Must be one of: blocking, warning."]
    assert "rule_codes" in errors
    assert errors["_rules"] == ["Must be a list of RuleSpec objects (injected at run time)."]


def test_policy_adherence_checks_rule_codes_against_injected_rules():
    rules = [RuleSpec("X-1", "pattern", "x", "warning", "x")]
    errors = config_errors("policy_adherence", {"rule_codes": ["X-1", "Y-2"], "_rules": rules})
    assert errors == {"rule_codes": ["Unknown rule codes: Y-2."]}


def test_policy_adherence_cleaned_params_are_json_ready_without_injection():
    assert base.get("policy_adherence").validate({}) == {
        "rule_codes": None,
        "risk_level": "high",
        "fail_on": "warning",
    }
