"""The API fails in its own JSON shape: deep bodies, a database that does not answer, errors
in any mode, and no traceback ever reaches a client."""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from rest_framework.test import APIClient

from apps.core import groups
from apps.core.services import api_key_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(db):
    user = UserFactory(username="ci-pipeline", groups=[groups.INTEGRATIONS])
    return api_key_create(user=user, name="ci")[1]


def _keyed(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


@pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"a":', "}")])
@pytest.mark.parametrize("depth", [100, 1000, 100_000])
def test_a_deeply_nested_body_is_a_json_400(owner, opening, closing, depth):
    client = APIClient()
    client.force_authenticate(owner)
    body = opening * depth + "1" + closing * depth
    response = client.post("/api/v1/charters/", body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["errors"] == {"body": ["The JSON body nests deeper than 64 levels."]}


def test_a_reasonably_nested_body_is_read(owner):
    client = APIClient()
    client.force_authenticate(owner)
    body = {"title": "Nested", "dependencies": [{"kind": "team", "name": "x", "notes": "y"}]}
    response = client.post("/api/v1/charters/", body, format="json")
    assert response.status_code == 201, response.content


@pytest.fixture
def database_down(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    def down():
        monkeypatch.setattr(BaseDatabaseWrapper, "cursor", refuse)

    return down


def test_while_the_database_is_down_the_api_answers_json_503(key, database_down, owner):
    client = _keyed(key)
    database_down()
    for method, path, body in (
        ("get", "/api/v1/charters/", None),
        ("post", "/api/v1/telemetry", {"observations": []}),
        ("get", "/api/v1/me/", None),
    ):
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 503, (path, response.content)
        assert response["Retry-After"] == "5"
        assert response.json()["code"] == "unavailable"


def test_while_the_database_is_down_pages_answer_a_plain_503(client, owner, database_down):
    client.force_login(owner)
    database_down()
    response = client.get("/charters/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"Traceback" not in response.content


@pytest.mark.parametrize("debug", [False, True])
def test_an_unhandled_api_error_is_a_json_500_without_a_traceback(
    owner, monkeypatch, settings, debug
):
    settings.DEBUG = debug
    from apps.core.api import views

    def boom(self, request):
        raise RuntimeError("secret path /srv/aifactory/settings.py")

    monkeypatch.setattr(views.MeView, "get", boom)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(owner)
    response = client.get("/api/v1/me/")
    assert response.status_code == 500
    assert response.json() == {
        "detail": "Internal server error.",
        "code": "server_error",
        "errors": {},
    }
    assert b"secret path" not in response.content


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_url_answers_in_the_api_shape(owner, settings, debug):
    settings.DEBUG = debug
    client = APIClient()
    client.force_authenticate(owner)
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert b"urlpatterns" not in response.content


def test_the_embedded_default_runs_with_debug_off():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"}
    env["DJANGO_SETTINGS_MODULE"] = "aifactory.settings.base"
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
    env["DJANGO_DEBUG"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"


def test_static_files_are_served_with_debug_off(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200, [
        p.name for p in (django_settings.BASE_DIR / "static").rglob("*.css")
    ]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"{" in body


@pytest.mark.parametrize("hot_cache", [0, 300])
def test_a_hidden_prompt_resolves_like_a_missing_one_in_queries_too(
    support_prompt, outsider, settings, hot_cache
):
    """Status, body and the work done (so the time) are the same: existence does not leak."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.HOT_CACHE_SECONDS = hot_cache
    client = APIClient(enforce_csrf_checks=False)
    client.force_login(outsider)
    answers = {}
    for slug in (support_prompt.slug, "no-such-prompt"):
        for path in (f"/api/v1/prompts/{slug}/resolve", f"/api/v1/prompts/{slug}/render"):
            method = client.get if path.endswith("resolve") else client.post
            method(path, {}, format="json")  # warm, as a caller repeating itself would
            with CaptureQueriesContext(connection) as queries:
                response = method(path, {}, format="json")
            answers[(slug != support_prompt.slug, path.rsplit("/", 1)[1])] = (
                response.status_code,
                response.content.replace(slug.encode(), b"SLUG"),
                len(queries),
            )
    for kind in ("resolve", "render"):
        assert answers[(False, kind)] == answers[(True, kind)]
        assert answers[(False, kind)][0] == 404
