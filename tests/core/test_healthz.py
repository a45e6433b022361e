"""/healthz tells operators whether the database and the broker answer."""

from unittest import mock

import pytest

pytestmark = pytest.mark.django_db


def test_healthy_when_database_and_broker_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    assert response["Cache-Control"].startswith("max-age=0")


def test_503_names_the_broker_when_it_is_down(client):
    with mock.patch(
        "aifactory.celery.app.connection_for_write", side_effect=ConnectionRefusedError("refused")
    ):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("error: ConnectionRefusedError")


def test_503_names_the_database_when_it_is_down(client):
    with mock.patch("apps.core.views.connection") as conn:
        conn.cursor.side_effect = RuntimeError("gone")
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: RuntimeError: gone"


def test_every_response_carries_a_correlation_id(client):
    assert len(client.get("/healthz")["X-Request-ID"]) == 32
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"


def test_the_beat_schedule_lives_in_the_database_and_keeps_operator_edits(db, settings):
    from django_celery_beat.models import PeriodicTask

    from apps.core.groups import ensure_beat_schedule

    assert settings.CELERY_BEAT_SCHEDULER.endswith("DatabaseScheduler")
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert {"evaluation-sweep", "drift-check", "approvals-expire"} <= names
    sweep = PeriodicTask.objects.get(name="evaluation-sweep")
    sweep.enabled = False
    sweep.save()
    ensure_beat_schedule()
    assert PeriodicTask.objects.get(name="evaluation-sweep").enabled is False


def test_metrics_are_for_staff_and_scrapers(client, db, monkeypatch, owner, suite, support_prompt):
    from apps.evaluations import services

    services.run_start(
        actor=owner, suite=suite, prompt_version=support_prompt.versions.get(number=2)
    )
    assert client.get("/metrics").status_code == 403
    monkeypatch.setenv("AIFACTORY_METRICS_TOKEN", "s3cret")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").content.decode()
    assert 'aifactory_evaluation_runs{status="awaiting_outputs"} 1' in text
    assert 'aifactory_evaluation_batches{status="pending"} 1' in text
    assert "# TYPE aifactory_approvals_open gauge" in text


def test_json_log_lines_carry_the_correlation_id():
    import json
    import logging

    from apps.core.logformat import JsonFormatter
    from apps.core.middleware import correlation_id

    token = correlation_id.set("req-7")
    try:
        record = logging.LogRecord(
            "apps.x", logging.INFO, __file__, 1, "hello %s", ("world",), None
        )
        line = json.loads(JsonFormatter().format(record))
    finally:
        correlation_id.reset(token)
    assert line["message"] == "hello world" and line["correlation_id"] == "req-7"
