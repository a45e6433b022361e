"""Signed audit checkpoints, and PostgreSQL triggers that keep immutable rows immutable.

On PostgreSQL the database itself refuses UPDATE and DELETE of approval decisions, label
moves and checkpoints (audit events already, 0002), any change to a submitted prompt
version's content or its return to draft, and TRUNCATE of all of these: row triggers do not
fire on TRUNCATE, so each table also has a statement-level BEFORE TRUNCATE trigger. That one
lets a session through that sets `aifactory.allow_truncate = on`, which only `manage.py flush`
does (the test runner flushes between `transaction=True` tests).
"""

from django.db import migrations, models

APPEND_ONLY_TABLES = ("approvals_decision", "prompts_labelmove", "core_auditcheckpoint")
NO_TRUNCATE_TABLES = ("core_auditevent", "prompts_promptversion", *APPEND_ONLY_TABLES)
# A submitted version's content (PromptVersion.CONTENT_FIELDS, its hash and identity). Status,
# submission and decision columns stay writable: review and approval set them after submit.
FROZEN_COLUMNS = (
    "prompt_id",
    "number",
    "template_kind",
    "messages",
    "text",
    "variables",
    "model_config",
    "release_notes",
    "change_kind",
    "content_hash",
)

FUNCTIONS = """
CREATE OR REPLACE FUNCTION aifactory_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION aifactory_refuse_truncate() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('aifactory.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only (TRUNCATE refused)', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION prompts_promptversion_frozen() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'draft' THEN
        RAISE EXCEPTION 'prompt version % was submitted: it cannot return to draft', OLD.id;
    END IF;
    IF {changed} THEN
        RAISE EXCEPTION 'prompt version % was submitted and is immutable (content change refused)',
            OLD.id;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
""".replace(
    "{changed}",
    "\n       OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FROZEN_COLUMNS),
)


def _create_sql() -> str:
    statements = [FUNCTIONS]
    for table in APPEND_ONLY_TABLES:
        statements.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION aifactory_append_only();"
        )
    for table in NO_TRUNCATE_TABLES:
        statements.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION aifactory_refuse_truncate();"
        )
    statements.append(
        "CREATE TRIGGER prompts_promptversion_frozen BEFORE UPDATE ON prompts_promptversion "
        "FOR EACH ROW WHEN (OLD.status <> 'draft') "
        "EXECUTE FUNCTION prompts_promptversion_frozen();"
    )
    return "\n".join(statements)


def _drop_sql() -> str:
    statements = ["DROP TRIGGER IF EXISTS prompts_promptversion_frozen ON prompts_promptversion;"]
    statements += [
        f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};" for table in APPEND_ONLY_TABLES
    ]
    statements += [
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};" for table in NO_TRUNCATE_TABLES
    ]
    statements += [
        "DROP FUNCTION IF EXISTS prompts_promptversion_frozen();",
        "DROP FUNCTION IF EXISTS aifactory_refuse_truncate();",
        "DROP FUNCTION IF EXISTS aifactory_append_only();",
    ]
    return "\n".join(statements)


def refuse_changes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_create_sql(), params=None)


def allow_changes(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_drop_sql(), params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_audit_chain"),
        ("prompts", "0001_initial"),
        ("approvals", "0002_endpoint_requests"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "sequence",
                    models.BigIntegerField(help_text="The id of the newest event it covers."),
                ),
                ("head_hash", models.CharField(max_length=64)),
                (
                    "event_count",
                    models.BigIntegerField(help_text="How many events have an id up to sequence."),
                ),
                ("created_at", models.DateTimeField()),
                ("database", models.CharField(blank=True, max_length=255)),
                ("key_id", models.CharField(max_length=16)),
                ("seals", models.JSONField(blank=True, default=dict)),
                ("signature", models.CharField(max_length=64)),
            ],
            options={
                "ordering": ["id"],
            },
        ),
        migrations.RunPython(refuse_changes, allow_changes),
    ]
