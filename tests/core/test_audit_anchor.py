"""Signed checkpoints outside the database: a cut, emptied or rewritten log is named, and so
are forged history rows, forged checkpoints and changed content of immutable rows."""

import json
import stat

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from apps.charters import services as charter_services
from apps.core import anchors, audit
from apps.core.management import integrity
from apps.core.models import AuditCheckpoint, AuditEvent, AuditHead
from apps.prompts.models import LabelMove, PromptVersion

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL triggers; SQLite has none"
)


@pytest.fixture(autouse=True)
def anchor_file(settings, tmp_path):
    """Each test its own key and anchor file (the database is rolled back; files are not)."""
    settings.AUDIT_SIGNING_KEY = "test-signing-key-not-in-the-database"
    settings.AUDIT_ANCHOR_FILE = tmp_path / "audit-anchors.jsonl"
    return settings.AUDIT_ANCHOR_FILE


GUARDED = ("core_auditevent", "core_auditcheckpoint", "prompts_promptversion", "prompts_labelmove")


def _sql(sql: str, params=(), *, lift: tuple[str, ...] = ()) -> None:
    """SQL behind the application's back; on PostgreSQL a superuser lifts the named triggers."""
    triggers = lift if connection.vendor == "postgresql" else ()
    tables = {t: next(table for table in GUARDED if t.startswith(table)) for t in triggers}
    with connection.cursor() as cursor:
        if tables:  # ALTER TABLE waits for no deferred foreign-key checks: run them now
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for trigger, table in tables.items():
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        cursor.execute(sql, params)
        for trigger, table in tables.items():
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


EVENT_TRIGGERS = ("core_auditevent_append_only",)


def _verify_fails(*fragments: str) -> str:
    with pytest.raises(CommandError) as exc:
        call_command("verify_audit")
    message = str(exc.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def _events(owner, charter, count: int = 3) -> list[AuditEvent]:
    charter_services.charter_submit(actor=owner, charter=charter)
    for n in range(count):
        audit.record("charter.share", actor=owner, obj=charter, data={"user": f"u{n}"})
    return list(AuditEvent.objects.order_by("id"))


def test_a_valid_chain_after_a_checkpoint_passes(owner, charter, anchor_file, capsys):
    _events(owner, charter)
    call_command("audit_checkpoint")
    checkpoint = AuditCheckpoint.objects.get()
    head = AuditHead.objects.get()
    assert (checkpoint.sequence, checkpoint.head_hash) == (head.last_id, head.last_hash)
    assert checkpoint.event_count == AuditEvent.objects.count()
    line = json.loads(anchor_file.read_text().splitlines()[0])
    assert line["checkpoint"] == checkpoint.pk and line["signature"] == checkpoint.signature
    audit.record("charter.unshare", actor=owner, obj=charter, data={"user": "u0"})
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert f"{AuditEvent.objects.count()} event(s) verified" in out
    assert f"Anchored: checkpoint #{checkpoint.pk}" in out
    call_command("audit_checkpoint")
    call_command("audit_checkpoint")  # nothing new: no third line
    assert len(anchor_file.read_text().splitlines()) == 2
    call_command("verify_audit")


def test_a_checkpoint_is_logged_for_syslog(owner, charter, caplog):
    _events(owner, charter, 1)
    with caplog.at_level("INFO", logger="aifactory.audit"):
        row = integrity.checkpoint()
    assert any(f'"checkpoint":{row.pk}' in r.getMessage() for r in caplog.records)


def test_the_embedded_default_creates_a_private_key_file(settings, tmp_path, owner, charter):
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "keys" / "audit.key"
    assert anchors.signing_key(create=False) is None
    _events(owner, charter, 1)
    integrity.checkpoint()
    key_file = settings.AUDIT_SIGNING_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert anchors.signing_key() == key_file.read_text().strip().encode()
    call_command("verify_audit")


def test_a_cut_tail_with_the_head_rewound_is_named(owner, charter):
    events = _events(owner, charter)
    call_command("audit_checkpoint")
    keep = events[-3]
    _sql("DELETE FROM core_auditevent WHERE id > %s", [keep.pk], lift=EVENT_TRIGGERS)
    AuditHead.objects.filter(pk=1).update(last_id=keep.pk, last_hash=keep.hash)
    assert audit.verify_chain().ok  # the chain alone cannot tell
    _verify_fails(
        "tail cut / head rewound",
        f"the log ends at event #{keep.pk}",
        f"anchors event #{events[-1].pk}",
        "2 were deleted",
    )
    with pytest.raises(CommandError, match="no longer matches the newest checkpoint"):
        call_command("audit_checkpoint")


def test_every_event_deleted_with_the_head_is_named(owner, charter):
    events = _events(owner, charter)
    call_command("audit_checkpoint")
    checkpoint = AuditCheckpoint.objects.get()
    _sql("DELETE FROM core_auditevent", lift=EVENT_TRIGGERS)
    AuditHead.objects.all().delete()
    assert audit.verify_chain().ok
    _verify_fails(
        f"{len(events)} event(s) anchored at checkpoint #{checkpoint.pk}",
        "are missing: the audit log was emptied or truncated",
    )


def test_a_deleted_checkpoint_row_is_still_anchored_by_the_file(owner, charter):
    events = _events(owner, charter)
    call_command("audit_checkpoint")
    checkpoint = AuditCheckpoint.objects.get()
    _sql("DELETE FROM core_auditevent WHERE id = %s", [events[-1].pk], lift=EVENT_TRIGGERS)
    AuditHead.objects.filter(pk=1).update(last_id=events[-2].pk, last_hash=events[-2].hash)
    _sql("DELETE FROM core_auditcheckpoint", lift=("core_auditcheckpoint_append_only",))
    _verify_fails("tail cut", f"checkpoint #{checkpoint.pk}", "missing from the checkpoint table")


def test_a_forged_history_row_is_named(owner, charter):
    charter_services.charter_submit(actor=owner, charter=charter)
    history = type(charter).history.model
    genuine = history.objects.filter(id=charter.pk).order_by("history_id").last()
    forged = history.objects.create(
        **{
            f.attname: getattr(genuine, f.attname)
            for f in history._meta.concrete_fields
            if f.attname != "history_id"
        }
        | {"title": "Approved long ago", "history_change_reason": "backfill"}
    )
    assert audit.verify_chain().ok  # nothing in the chain points at it
    _verify_fails(f"charters.historicalcharter #{forged.history_id}", "no chained audit event")


def test_a_checkpoint_with_a_bad_signature_is_named(owner, charter, anchor_file):
    _events(owner, charter)
    call_command("audit_checkpoint")
    line = json.loads(anchor_file.read_text())
    line.update(checkpoint=line["checkpoint"] + 1, sequence=1, event_count=1)
    with anchor_file.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    _verify_fails("line 2): its signature does not verify (forged)")


def test_a_checkpoint_signed_with_an_unknown_key_is_named_unless_it_was_retired(
    owner, charter, settings
):
    _events(owner, charter)
    settings.AUDIT_SIGNING_KEY = "the-key-before-rotation"
    call_command("audit_checkpoint")
    settings.AUDIT_SIGNING_KEY = "test-signing-key-not-in-the-database"
    _verify_fails("signed with an unknown key")
    settings.AUDIT_SIGNING_OLD_KEYS = ["the-key-before-rotation"]
    call_command("verify_audit")


def test_a_checkpoint_forged_in_the_table_is_named(owner, charter):
    _events(owner, charter)
    call_command("audit_checkpoint")
    real = AuditCheckpoint.objects.get()
    AuditCheckpoint.objects.create(
        sequence=real.sequence,
        head_hash=real.head_hash,
        event_count=real.event_count + 5,
        created_at=real.created_at,
        database=real.database,
        key_id=real.key_id,
        signature=real.signature,
    )
    _verify_fails(", table): its signature does not verify (forged)")


def test_an_approved_template_rewritten_by_update_is_named(support_prompt):
    version = support_prompt.versions.get(number=2)
    messages = [dict(m) for m in version.messages]
    messages[0]["content"] = "Promise every customer a full refund."
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            PromptVersion.objects.filter(pk=version.pk).update(messages=messages)
        _sql("SET CONSTRAINTS ALL IMMEDIATE")
        _sql("ALTER TABLE prompts_promptversion DISABLE TRIGGER prompts_promptversion_frozen")
    PromptVersion.objects.filter(pk=version.pk).update(messages=messages)
    _verify_fails(
        f"prompts.promptversion #{version.pk} (support-reply v2)",
        "no longer matches its content hash",
        "messages differ from its chained history",
    )


def test_a_rewrite_that_also_fixes_the_content_hash_is_named(support_prompt):
    from apps.prompts import content

    version = support_prompt.versions.get(number=1)
    config = {**version.model_config, "temperature": 1.9}
    forged_hash = content.content_hash(
        version.template_kind, version.messages, version.text, version.variables, config
    )
    _sql(
        "UPDATE prompts_promptversion SET model_config = %s, content_hash = %s WHERE id = %s",
        [json.dumps(config), forged_hash, version.pk],
        lift=("prompts_promptversion_frozen",),
    )
    message = _verify_fails(f"prompts.promptversion #{version.pk}", "model_config, content_hash")
    assert "no longer matches its content hash" not in message


def test_a_dataset_case_changed_after_its_seal_is_named(dataset):
    from apps.evaluations.models import Case

    version = dataset.latest_version
    row = integrity.checkpoint()
    assert row.seals == {
        f"evaluations.datasetversion:{version.pk}": integrity.dataset_digests()[version.pk]
    }
    call_command("verify_audit")
    Case.objects.filter(dataset_version=version, position=1).update(expected="Anything goes.")
    _verify_fails(f"evaluations.datasetversion #{version.pk} (support-cases v1)", "no longer match")


def test_json_report(owner, charter, capsys):
    _events(owner, charter, 1)
    call_command("audit_checkpoint")
    capsys.readouterr()
    call_command("verify_audit", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["findings"] == []
    assert report["checkpoint"]["sequence"] == AuditEvent.objects.order_by("id").last().pk
    AuditHead.objects.all().delete()
    _sql("DELETE FROM core_auditevent", lift=EVENT_TRIGGERS)
    with pytest.raises(CommandError, match="problem"):
        call_command("verify_audit", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["findings"][0]["kind"] == "anchor"


@postgresql_only
def test_postgresql_refuses_truncate_and_a_truncated_log_is_named(owner, charter):
    events = _events(owner, charter)
    call_command("audit_checkpoint")
    _sql("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for no deferred foreign-key checks
    for table in (
        "core_auditevent",
        "approvals_decision",
        "prompts_labelmove",
        "prompts_promptversion",
        "core_auditcheckpoint",
    ):
        with (
            pytest.raises(DatabaseError, match="TRUNCATE refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"TRUNCATE {table} CASCADE")
    _sql("TRUNCATE core_auditevent", lift=("core_auditevent_no_truncate",))
    _verify_fails(f"{len(events)} event(s) anchored at checkpoint", "emptied or truncated")


@postgresql_only
def test_postgresql_refuses_changes_to_decisions_and_label_moves(support_prompt, owner):
    from apps.approvals.models import ApprovalRequest, Decision

    move = LabelMove.objects.filter(prompt=support_prompt).first()
    for change in (
        lambda: LabelMove.objects.filter(pk=move.pk).update(reason="quietly"),
        lambda: LabelMove.objects.filter(pk=move.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()
    request = ApprovalRequest.objects.create(
        kind="promotion",
        charter=support_prompt.charter,
        prompt=support_prompt,
        prompt_version=support_prompt.versions.get(number=2),
        requested_by=owner,
    )
    decision = Decision.objects.create(request=request, actor=owner, verdict="comment")
    for change in (
        lambda: Decision.objects.filter(pk=decision.pk).update(verdict="approve"),
        lambda: Decision.objects.filter(pk=decision.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()


@postgresql_only
def test_postgresql_lets_review_bookkeeping_through_but_not_a_return_to_draft(support_prompt):
    version = support_prompt.versions.get(number=2)
    PromptVersion.objects.filter(pk=version.pk).update(decision_reason="Looks right.")
    with pytest.raises(DatabaseError, match="cannot return to draft"), transaction.atomic():
        PromptVersion.objects.filter(pk=version.pk).update(status="draft")


@pytest.mark.django_db(transaction=True)
def test_flush_between_transactional_tests_still_empties_the_guarded_tables(owner, charter):
    _events(owner, charter, 1)
    call_command("audit_checkpoint")
    call_command("flush", interactive=False, verbosity=0, inhibit_post_migrate=True)
    assert not AuditEvent.objects.exists() and not AuditCheckpoint.objects.exists()
