"""Suites: scorer configuration checked up front; thresholds owned, validated and recorded."""

import pytest
from django.http import Http404

from apps.core.errors import ValidationFailed
from apps.evaluations import services
from apps.evaluations.models import Threshold

pytestmark = pytest.mark.django_db


def _create(owner, dataset, scorers, **fields):
    return services.suite_create(
        actor=owner,
        charter=dataset.charter,
        fields={
            "name": "S",
            "dataset_version": dataset.latest_version,
            "scorers": scorers,
            **fields,
        },
    )


def test_scorer_problems_are_reported_per_scorer(owner, dataset):
    with pytest.raises(ValidationFailed) as refused:
        _create(
            owner,
            dataset,
            [
                {"scorer": "regex", "params": {"pattern": "("}},
                {"scorer": "no_such_scorer"},
                {"scorer": "token_f1", "artifact": "x"},
                {"scorer": "semantic_similarity"},
                "not an object",
            ],
        )
    problems = refused.value.errors["scorers"]
    assert problems[0].startswith("scorer 1 (regex):") and "pattern" in problems[0]
    assert problems[1].startswith("scorer 2 (no_such_scorer): Unknown scorer")
    assert problems[2] == "scorer 3 (token_f1): this scorer takes no model artifact."
    assert (
        problems[3]
        == "scorer 4 (semantic_similarity): no default sentence_embedding model is installed."
    )
    assert problems[4] == "scorer 5: an object with a 'scorer' key is required."


def test_onnx_scorers_default_to_the_installed_encoder(owner, dataset, default_encoder):
    suite = _create(
        owner, dataset, [{"scorer": "semantic_similarity"}, {"scorer": "grounded_coverage"}]
    )
    assert [s["artifact"] for s in suite.scorers] == ["all-minilm-l6-v2", "all-minilm-l6-v2"]
    assert suite.scorers[0]["params"]["pass_at"] == 0.75


def test_threshold_changes_are_validated_and_kept_in_history_with_who_and_why(owner, suite):
    threshold = suite.thresholds.get()
    services.threshold_set(
        actor=owner,
        suite=suite,
        threshold=threshold,
        fields={"value": 0.6},
        reason="Pilot feedback: drafts below 0.6 get rewritten",
    )
    latest = threshold.history.first()
    assert latest.value == 0.6 and latest.history_user == owner
    assert latest.history_change_reason == "Pilot feedback: drafts below 0.6 get rewritten"
    with pytest.raises(ValidationFailed) as refused:
        services.threshold_set(
            actor=owner,
            suite=suite,
            fields={
                "metric": "bleu",
                "aggregate": "mode",
                "comparator": "~",
                "value": "x",
                "segment_key": "language",
            },
        )
    assert set(refused.value.errors) == {
        "metric",
        "aggregate",
        "comparator",
        "value",
        "segment_key",
    }
    pk = threshold.pk
    services.threshold_delete(actor=owner, threshold=threshold, reason="Replaced by pass rate")
    assert not Threshold.objects.filter(pk=pk).exists()
    removal = Threshold.history.filter(id=pk).first()
    assert (removal.history_type, removal.history_user) == ("-", owner)


def test_removing_the_scorer_a_threshold_needs_is_refused(owner, suite):
    with pytest.raises(ValidationFailed) as refused:
        services.suite_update(
            actor=owner, suite=suite, fields={"scorers": [{"scorer": "exact_match"}]}
        )
    assert "token_f1" in refused.value.errors["scorers"][0]


def test_outsiders_cannot_see_suites(outsider, suite):
    with pytest.raises(Http404):
        services.suite_update(actor=outsider, suite=suite, fields={"name": "x"})
