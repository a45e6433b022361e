"""Submitting checks the charter is complete and reports each gap on its own field."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.charters import services
from apps.charters.choices import CharterStatus, MetricDirection, MetricLayer, MetricRole
from apps.core.errors import ValidationFailed
from tests import factories

pytestmark = pytest.mark.django_db


def submit_errors(charter):
    with pytest.raises(ValidationFailed) as exc:
        services.charter_submit(actor=charter.business_owner, charter=charter)
    charter.refresh_from_db()
    assert charter.status == CharterStatus.DRAFT
    return exc.value.errors


def test_complete_charter_has_no_gaps(charter):
    assert services.charter_completeness_errors(charter) == {}


def test_empty_charter_reports_every_gap_separately(owner):
    charter = factories.CharterFactory(
        business_owner=owner,
        complete=False,
        problem="",
        process="",
        proof="",
        target_users="",
        intended_use="",
        retirement_condition="",
        review_date=None,
    )
    errors = submit_errors(charter)
    for field in (
        "problem",
        "process",
        "proof",
        "target_users",
        "intended_use",
        "retirement_condition",
        "review_date",
        "dependencies",
    ):
        assert field in errors, field
    assert errors["metrics"] == [
        "Exactly one primary business-outcome metric is required; found 0.",
        "At least two supporting metrics are required; found 0.",
    ]


def test_review_date_must_be_in_the_future(charter):
    charter.review_date = timezone.localdate()
    charter.save()
    assert submit_errors(charter) == {"review_date": ["The review date must be in the future."]}


def test_two_primary_metrics_are_refused(charter):
    factories.MetricFactory(
        charter=charter, role=MetricRole.PRIMARY, layer=MetricLayer.BUSINESS_OUTCOME
    )
    assert "found 2" in submit_errors(charter)["metrics"][0]


def test_primary_metric_must_be_a_business_outcome(charter):
    metric = charter.metrics.get(role=MetricRole.PRIMARY)
    metric.layer = MetricLayer.PLATFORM_HEALTH
    metric.save()
    errors = submit_errors(charter)
    assert errors == {
        "metrics[Average handle time].layer": [
            "The primary metric must be in the business outcome layer."
        ]
    }


def test_one_supporting_metric_is_not_enough(charter):
    charter.metrics.filter(role=MetricRole.SUPPORTING).first().delete()
    assert submit_errors(charter) == {
        "metrics": ["At least two supporting metrics are required; found 1."]
    }


def test_each_metric_needs_baseline_and_target(charter):
    factories.MetricFactory(
        charter=charter, name="Escalations", baseline_value=None, target_value=None
    )
    errors = submit_errors(charter)
    assert errors == {
        "metrics[Escalations].baseline_value": ["A baseline value is required."],
        "metrics[Escalations].target_value": ["A target value is required."],
    }


@pytest.mark.parametrize(
    ("direction", "baseline", "target", "ok"),
    [
        (MetricDirection.INCREASE, "40", "70", True),
        (MetricDirection.INCREASE, "40", "40", False),
        (MetricDirection.DECREASE, "12", "9", True),
        (MetricDirection.DECREASE, "12", "15", False),
    ],
)
def test_target_must_improve_on_the_baseline_in_the_metric_direction(
    charter, direction, baseline, target, ok
):
    factories.MetricFactory(
        charter=charter,
        name="Extra",
        direction=direction,
        baseline_value=Decimal(baseline),
        target_value=Decimal(target),
    )
    errors = services.charter_completeness_errors(charter)
    assert ("metrics[Extra].target_value" not in errors) is ok


def test_at_least_one_dependency(charter):
    charter.dependencies.all().delete()
    assert submit_errors(charter) == {
        "dependencies": [
            "At least one dependency (system, data, team, vendor or model) is required."
        ]
    }


def test_review_date_far_in_the_future_is_fine(charter):
    charter.review_date = timezone.localdate() + dt.timedelta(days=1)
    charter.save()
    assert services.charter_completeness_errors(charter) == {}
