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
