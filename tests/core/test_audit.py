"""The audit chain: every governed change is chained, and tampering is found."""

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.charters import services as charter_services
from apps.core import audit
from apps.core.models import AuditEvent

pytestmark = pytest.mark.django_db


def _tamper(sql: str, params) -> None:
    """An edit behind the application's back (a DBA lifts PostgreSQL's trigger first)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "ALTER TABLE core_auditevent DISABLE TRIGGER core_auditevent_append_only"
            )
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE core_auditevent ENABLE TRIGGER core_auditevent_append_only")


def test_governed_changes_and_business_events_form_one_verified_chain(owner, charter, capsys):
    charter_services.charter_submit(actor=owner, charter=charter)
    events = list(AuditEvent.objects.order_by("id"))
    assert events[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    verbs = {e.verb for e in events}
    assert {"history.created", "history.changed", "charter.submit"} <= verbs
    submit = next(e for e in events if e.verb == "charter.submit")
    assert (submit.actor, submit.charter_id, submit.object_type) == (
        owner,
        charter.pk,
        "charters.charter",
    )
    call_command("verify_audit")
    assert f"{len(events)} event(s) verified" in capsys.readouterr().out


def test_editing_an_audit_row_is_found(owner, charter):
    charter_services.charter_submit(actor=owner, charter=charter)
    victim = AuditEvent.objects.filter(verb="charter.submit").get()
    _tamper("UPDATE core_auditevent SET actor_name = %s WHERE id = %s", ["mallory", victim.pk])
    with pytest.raises(CommandError, match=f"broken at event #{victim.pk}: its content"):
        call_command("verify_audit")


def test_deleting_an_audit_row_is_found(owner, charter):
    charter_services.charter_submit(actor=owner, charter=charter)
    first, second = AuditEvent.objects.order_by("id")[:2]
    _tamper("DELETE FROM core_auditevent WHERE id = %s", [first.pk])
    result = audit.verify_chain()
    assert result.broken_at == second.pk and "removed or reordered" in result.reason


def test_editing_a_history_row_behind_the_app_is_found(owner, charter):
    charter_services.charter_submit(actor=owner, charter=charter)
    row = charter.history.order_by("history_id").first()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE charters_historicalcharter SET title = %s WHERE history_id = %s",
            ["Quietly renamed", row.history_id],
        )
    result = audit.verify_chain()
    assert not result.ok and f"#{row.history_id} was edited" in result.reason


def test_the_application_refuses_to_change_audit_rows(owner, charter):
    event = audit.record("charter.share", actor=owner, obj=charter, data={"user": "pat"})
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    with pytest.raises(ValueError, match="unknown audit verb"):
        audit.record("charter.teleport", actor=owner, obj=charter)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL trigger")
def test_postgresql_itself_refuses_updates(owner, charter):
    from django.db import DatabaseError, transaction

    event = audit.record("charter.share", actor=owner, obj=charter)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor_name="mallory")


def test_events_recorded_by_a_task_carry_its_task_id(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    from tests.evaluations.fixtures import good_outputs, score_posted

    run = score_posted(
        owner,
        suite,
        support_prompt.versions.get(number=2),
        good_outputs(),
        django_capture_on_commit_callbacks,
    )
    verdict = AuditEvent.objects.get(verb="evaluation.verdict", object_id=str(run.pk))
    assert verdict.correlation_id.startswith("task-")


def test_web_requests_put_their_request_id_on_events(client, owner, charter):
    client.force_login(owner)
    client.post(f"/charters/{charter.slug}/transition/submit/", HTTP_X_REQUEST_ID="req-42")
    assert AuditEvent.objects.get(verb="charter.submit").correlation_id == "req-42"


def test_exported_csv_cells_cannot_run_as_formulas(client, owner, charter):
    import csv
    import io

    from apps.core import csvsafe

    assert csvsafe.cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert csvsafe.cell("-2") == "'-2" and csvsafe.cell(-2) == -2 and csvsafe.cell("fine") == "fine"
    charter.title = "=cmd|' /C calc'!A0"
    charter.save()
    client.force_login(owner)
    text = client.get(f"/approvals/evidence/{charter.slug}.csv").content.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][5] == "'=cmd|' /C calc'!A0"
