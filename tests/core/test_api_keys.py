"""Integrations get keys from a command; keys are hashed and shown once."""

import pytest
from django.core.management import CommandError, call_command

from apps.core.models import ApiKey

pytestmark = pytest.mark.django_db


def test_create_api_key_for_a_new_service_user(capsys):
    call_command("create_api_key", "--user", "ci-pipeline", "--name", "ci", "--create-user")
    out, err = capsys.readouterr()
    plain = out.strip().splitlines()[-1]
    key = ApiKey.objects.get()
    assert (
        key.user.username == "ci-pipeline" and key.user.groups.filter(name="integrations").exists()
    )
    assert not key.user.has_usable_password()
    assert key.is_valid(plain) and plain not in key.hashed_key
    assert "cannot be shown again" in err


def test_unknown_user_without_create_fails_clearly():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_api_key", "--user", "ghost", "--name", "x")
    assert not ApiKey.objects.exists()


def test_notifications_api_lists_and_marks_read(client, owner):
    from apps.core.services import notification_send

    notification_send(recipients=[owner], verb="test", title="Hello", dedupe_key="t1")
    client.force_login(owner)
    rows = client.get("/api/v1/notifications/").json()["results"]
    assert [r["title"] for r in rows] == ["Hello"] and rows[0]["read_at"] is None
    assert client.post(
        "/api/v1/notifications/mark-read/", {}, content_type="application/json"
    ).json() == {"marked": 1}
