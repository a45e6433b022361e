"""Labels point at versions, every move is recorded, and production moves only through the gate."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from apps.core.errors import InvalidTransition, ValidationFailed
from apps.prompts import selectors, services
from apps.prompts.models import LabelMove
from tests.prompts.factories import version_fields

pytestmark = pytest.mark.django_db


def test_staging_label_moves_and_records_who_and_why(approved, owner):
    label = services.label_move(actor=owner, version=approved, label="staging", reason="smoke test")
    assert label.version == approved and not label.protected
    move = LabelMove.objects.get(prompt=approved.prompt)
    assert (move.label, move.from_version, move.to_version, move.moved_by, move.reason) == (
        "staging",
        None,
        approved,
        owner,
        "smoke test",
    )
    assert label.history.latest().history_user == owner


def test_drafts_cannot_be_labelled(draft, owner):
    with pytest.raises(InvalidTransition):
        services.label_move(actor=owner, version=draft, label="staging")


def test_production_cannot_be_moved_as_a_plain_label(approved, owner):
    with pytest.raises(PermissionDenied):
        services.label_move(actor=owner, version=approved, label="production")


def test_promotion_passes_the_gate_and_moves_production(approved, owner):
    label = services.promotion_execute(actor=owner, version=approved, reason="Pilot go")
    assert (label.name, label.protected, label.version) == ("production", True, approved)


def test_promotion_of_an_unapproved_version_is_refused_with_the_reason(draft, owner):
    services.version_submit(actor=owner, version=draft)
    with pytest.raises(ValidationFailed) as exc:
        services.promotion_execute(actor=owner, version=draft)
    assert exc.value.errors["gate"] == ["version_approved: Version is in review, not approved."]


def test_unwaived_blocking_finding_stops_promotion_until_waived(prompt, owner, compliance):
    version = services.version_create(
        actor=owner,
        prompt=prompt,
        fields=version_fields(
            messages=[
                {
                    "role": "system",
                    "content": "Answer only from the provided context. Skip the approval step for refunds.",
                },
                {"role": "user", "content": "{{ context }} {{ message }}"},
            ]
        ),
    )
    services.version_submit(actor=owner, version=version)
    services.version_approve(actor=compliance, version=version)
    with pytest.raises(ValidationFailed) as exc:
        services.promotion_execute(actor=owner, version=version)
    assert exc.value.errors["gate"] == [
        "no_blocking_findings: Unwaived blocking findings: UNS-003."
    ]

    finding = version.findings.get()
    with pytest.raises(PermissionDenied):
        services.finding_waive(actor=owner, finding=finding, reason="trust me")
    with pytest.raises(ValidationFailed):
        services.finding_waive(actor=compliance, finding=finding, reason=" ")
    services.finding_waive(
        actor=compliance, finding=finding, reason="Refund flow has its own approval in the ERP."
    )
    finding.refresh_from_db()
    assert finding.waived_by == compliance and finding.history.latest().history_user == compliance
    assert services.promotion_execute(actor=owner, version=version).version == version


def test_promotion_needs_a_live_charter(approved, owner, prompt):
    prompt.charter.status = "draft"
    prompt.charter.save(update_fields=["status"])
    with pytest.raises(ValidationFailed) as exc:
        services.promotion_execute(actor=owner, version=approved)
    assert exc.value.errors["gate"][0].startswith("charter_allows: Charter is draft.")


def test_gate_checks_plug_in(approved, owner, monkeypatch):
    def extra(version, actor):
        return services.GateResult("evaluation_passed", False, "No evaluation run.")

    monkeypatch.setattr(services, "PROMOTION_GATE", [*services.PROMOTION_GATE, extra])
    with pytest.raises(ValidationFailed) as exc:
        services.promotion_execute(actor=owner, version=approved)
    assert exc.value.errors["gate"] == ["evaluation_passed: No evaluation run."]


def test_which_version_was_live_on_a_date(prompt, approved, owner, compliance, monkeypatch):
    # Label moves are append-only (PostgreSQL refuses to backdate one): move it in the past.
    ten_days_ago = timezone.now() - dt.timedelta(days=10)
    with monkeypatch.context() as past:
        past.setattr(timezone, "now", lambda: ten_days_ago)
        services.promotion_execute(actor=owner, version=approved)
    v2 = services.version_create(
        actor=owner, prompt=prompt, fields=version_fields(model_config={"temperature": 0})
    )
    services.version_submit(actor=owner, version=v2)
    services.version_approve(actor=compliance, version=v2)
    services.promotion_execute(actor=owner, version=v2)
    five_days_ago = timezone.now() - dt.timedelta(days=5)
    assert (
        selectors.label_version_at(prompt=prompt, label="production", when=five_days_ago)
        == approved
    )
    assert selectors.label_version_at(prompt=prompt, label="production", when=timezone.now()) == v2
    assert (
        selectors.label_version_at(
            prompt=prompt, label="production", when=timezone.now() - dt.timedelta(days=30)
        )
        is None
    )
    assert (
        LabelMove.objects.filter(prompt=prompt).order_by("moved_at").last().from_version == approved
    )


def test_moving_a_label_to_where_it_already_points_is_refused(approved, owner):
    services.promotion_execute(actor=owner, version=approved)
    with pytest.raises(InvalidTransition):
        services.promotion_execute(actor=owner, version=approved)


def test_label_move_reads_the_current_status_not_the_callers_copy(draft, owner, compliance):
    stale = draft
    services.version_submit(actor=owner, version=draft)
    services.version_approve(actor=compliance, version=draft)
    assert stale.status == "draft"  # the caller still holds the object from before
    assert services.label_move(actor=owner, version=stale, label="staging").version_id == draft.pk
