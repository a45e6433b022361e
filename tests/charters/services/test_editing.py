"""Creating and editing charters: validation, nested rows, draft-only edits, ownership."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from apps.charters import services
from apps.charters.models import Charter, Dependency, Metric
from apps.charters.permissions import VIEW, can
from apps.core.errors import InvalidTransition, ValidationFailed
from tests import factories

pytestmark = pytest.mark.django_db

METRICS = [
    {
        "name": "Resolution rate",
        "layer": "business_outcome",
        "role": "primary",
        "direction": "increase",
        "baseline_value": Decimal("61"),
        "target_value": Decimal("70"),
        "unit": "%",
    },
    {
        "name": "Handle time",
        "layer": "workflow_efficiency",
        "role": "supporting",
        "direction": "decrease",
        "baseline_value": Decimal("12"),
        "target_value": Decimal("9"),
    },
]
DEPENDENCIES = [{"kind": "system", "name": "Zendesk", "criticality": "high"}]


def test_create_makes_a_draft_with_rows_and_grants_the_owner(owner):
    charter = services.charter_create(
        actor=owner, fields={"title": "Claims triage"}, metrics=METRICS, dependencies=DEPENDENCIES
    )
    assert charter.status == "draft" and charter.slug == "claims-triage"
    assert charter.business_owner == owner and charter.created_by == owner
    assert charter.metrics.count() == 2 and charter.dependencies.count() == 1
    assert can(owner, VIEW, charter)
    assert charter.history.latest().history_user == owner
    assert Metric.history.filter(charter_id=charter.pk).first().history_user == owner


def test_slugs_stay_unique(owner):
    first = services.charter_create(actor=owner, fields={"title": "Claims triage"})
    second = services.charter_create(actor=owner, fields={"title": "Claims triage"})
    assert (first.slug, second.slug) == ("claims-triage", "claims-triage-2")


def test_bad_input_reports_every_field_and_writes_nothing(owner):
    with pytest.raises(ValidationFailed) as exc:
        services.charter_create(
            actor=owner,
            fields={"title": "", "risk_tier": "extreme", "colour": "red"},
            metrics=[{"name": "", "layer": "vibes", "direction": "increase"}],
        )
    errors = exc.value.errors
    assert {"title", "risk_tier", "colour"} <= set(errors)
    assert Charter.objects.count() == 0 and Metric.objects.count() == 0


def test_bad_metric_rows_roll_back_the_whole_charter(owner):
    with pytest.raises(ValidationFailed) as exc:
        services.charter_create(
            actor=owner,
            fields={"title": "Claims"},
            metrics=[METRICS[0], {"name": "", "layer": "vibes", "direction": "up"}],
        )
    assert {"metrics[1].name", "metrics[1].layer", "metrics[1].direction"} <= set(exc.value.errors)
    assert Charter.objects.count() == 0 and Metric.objects.count() == 0


def test_duplicate_metric_names_are_refused(owner):
    with pytest.raises(ValidationFailed) as exc:
        services.charter_create(
            actor=owner, fields={"title": "Claims"}, metrics=[METRICS[0], METRICS[0]]
        )
    assert "metrics[1].name" in exc.value.errors


def test_only_business_owners_create_charters(engineer):
    with pytest.raises(PermissionDenied):
        services.charter_create(actor=engineer, fields={"title": "Shadow IT"})


def test_update_replaces_metric_and_dependency_lists(charter, owner):
    keep = charter.metrics.get(name="Average handle time")
    services.charter_update(
        actor=owner,
        charter=charter,
        fields={"title": "Renamed"},
        metrics=[{"id": keep.pk, "target_value": Decimal("8")}, METRICS[1]],
        dependencies=DEPENDENCIES,
    )
    charter.refresh_from_db()
    assert charter.title == "Renamed"
    assert sorted(charter.metrics.values_list("name", flat=True)) == [
        "Average handle time",
        "Handle time",
    ]
    assert charter.metrics.get(pk=keep.pk).target_value == Decimal("8")
    assert list(charter.dependencies.values_list("name", flat=True)) == ["Zendesk"]


def test_update_with_another_charters_metric_id_is_refused(charter, owner):
    other = factories.CharterFactory(business_owner=owner)
    foreign = other.metrics.first()
    with pytest.raises(ValidationFailed) as exc:
        services.charter_update(
            actor=owner, charter=charter, fields={}, metrics=[{"id": foreign.pk}]
        )
    assert exc.value.errors == {"metrics[0].id": ["No such metric on this charter."]}
    assert other.metrics.filter(pk=foreign.pk).exists()


def test_submitted_charters_are_not_editable(charter, owner):
    services.charter_submit(actor=owner, charter=charter)
    with pytest.raises(InvalidTransition):
        services.charter_update(actor=owner, charter=charter, fields={"title": "Sneaky"})
    with pytest.raises(InvalidTransition):
        services.metric_create(actor=owner, charter=charter, fields=METRICS[1])
    charter.refresh_from_db()
    assert charter.title == "Support reply drafting"


def test_changing_the_owner_grants_the_new_owner(charter, owner, outsider):
    outsider_before = can(outsider, VIEW, charter)
    services.charter_update(actor=owner, charter=charter, fields={"business_owner": outsider})
    outsider = type(outsider).objects.get(pk=outsider.pk)
    assert not outsider_before and can(outsider, VIEW, charter)


def test_metric_services_edit_a_draft(charter, owner):
    metric = services.metric_create(actor=owner, charter=charter, fields=METRICS[1])
    services.metric_update(actor=owner, metric=metric, fields={"unit": "minutes"})
    assert Metric.objects.get(pk=metric.pk).unit == "minutes"
    metric_id = metric.pk
    services.metric_delete(actor=owner, metric=metric)
    assert not Metric.objects.filter(pk=metric_id).exists()
    assert Metric.history.filter(id=metric_id, history_type="-").get().history_user == owner


def test_delete_draft_only(charter, owner):
    services.charter_delete(actor=owner, charter=charter)
    assert not Charter.objects.filter(pk=charter.pk).exists()
    assert not Dependency.objects.exists()


def test_swapping_two_metric_names_saves_cleanly(charter, owner):
    a = charter.metrics.get(name="Draft acceptance rate")
    b = charter.metrics.get(name="Time to first draft")
    primary = charter.metrics.get(name="Average handle time")
    services.charter_update(
        actor=owner,
        charter=charter,
        fields={},
        metrics=[{"id": primary.pk}, {"id": a.pk, "name": b.name}, {"id": b.pk, "name": a.name}],
    )
    assert charter.metrics.get(pk=a.pk).name == "Time to first draft"
    assert charter.metrics.get(pk=b.pk).name == "Draft acceptance rate"
    assert a.history.latest().history_user == owner
    assert not Metric.history.filter(name__startswith="~renaming~").exists()
