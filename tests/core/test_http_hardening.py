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


@pytest.fixture
def run(suite, support_prompt, owner):
    from apps.evaluations import services as evaluation_services

    return evaluation_services.run_start(
        actor=owner,
        suite=suite,
        prompt_version=support_prompt.versions.get(number=1),
        output_source="posted",
    )


# (method, hidden path, missing path): Olivia's objects, asked for by Oscar, who sees none.
DETAIL_REQUESTS = [
    ("get", "/api/v1/charters/{charter}/", "/api/v1/charters/no-such-charter/"),
    ("get", "/api/v1/prompts/{prompt}/", "/api/v1/prompts/no-such-prompt/"),
    (
        "get",
        "/api/v1/evaluations/datasets/{dataset}/",
        "/api/v1/evaluations/datasets/no-such-dataset/",
    ),
    ("get", "/api/v1/evaluations/suites/{suite}/", "/api/v1/evaluations/suites/no-such-suite/"),
    ("get", "/api/v1/evaluations/runs/{run}/", "/api/v1/evaluations/runs/999999/"),
    # What a curious outsider tries next: the nested reads and the write actions.
    ("get", "/api/v1/prompts/{prompt}/versions/", "/api/v1/prompts/no-such-prompt/versions/"),
    ("get", "/api/v1/prompts/{prompt}/versions/1/", "/api/v1/prompts/no-such-prompt/versions/1/"),
    ("get", "/api/v1/charters/{charter}/raci/", "/api/v1/charters/no-such-charter/raci/"),
    ("get", "/api/v1/evaluations/runs/{run}/results/", "/api/v1/evaluations/runs/999999/results/"),
    ("patch", "/api/v1/charters/{charter}/", "/api/v1/charters/no-such-charter/"),
    ("post", "/api/v1/charters/{charter}/submit/", "/api/v1/charters/no-such-charter/submit/"),
    ("post", "/api/v1/prompts/{prompt}/fork/", "/api/v1/prompts/no-such-prompt/fork/"),
    (
        "post",
        "/api/v1/evaluations/runs/{run}/cancel/",
        "/api/v1/evaluations/runs/999999/cancel/",
    ),
]


@pytest.mark.parametrize("method, hidden, missing", DETAIL_REQUESTS)
def test_a_hidden_object_answers_like_a_missing_one(outsider, run, method, hidden, missing):
    """Same status, same body, same queries (so the same time): existence does not leak."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    suite = run.suite
    names = {
        "charter": suite.charter.slug,
        "prompt": run.prompt_version.prompt.slug,
        "dataset": suite.dataset_version.dataset.slug,
        "suite": suite.slug,
        "run": run.pk,
    }
    hidden = hidden.format(**names)
    client = APIClient()
    client.force_authenticate(outsider)
    answers = []
    for path in (hidden, missing):
        send = getattr(client, method)
        send(path, {}, format="json")  # warm, as a caller repeating itself would
        with CaptureQueriesContext(connection) as queries:
            response = send(path, {}, format="json")
        body = response.content
        for name, value in names.items():
            body = body.replace(str(value).encode(), name.encode())
        answers.append((response.status_code, body, [q["sql"] for q in queries]))
    assert answers[0][0] == 404
    assert answers[0][:2] == answers[1][:2]
    assert len(answers[0][2]) == len(answers[1][2]), answers


DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deep_jsonl_line_is_a_row_error_not_a_500(client, owner, run):
    client.force_login(owner)
    lines = f'{{"id": "c1", "output": "fine"}}\n{{"id": "c2", "output": {DEEP}}}\n'.encode()
    response = client.generic(
        "POST",
        f"/api/v1/evaluations/runs/{run.pk}/outputs.jsonl",
        lines,
        content_type="application/x-ndjson",
    )
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert "nested too deeply" in str(response.json()["errors"])


@pytest.mark.parametrize("raw", [DEEP, "[" * 65 + "]" * 65, '{"a":' * 65 + "1" + "}" * 65])
def test_web_forms_refuse_deep_json_as_a_field_error(raw):
    from apps.charters.models import Charter
    from apps.evaluations.forms import SuiteForm
    from apps.evaluations.models import DatasetVersion
    from apps.prompts.forms import VersionForm
    from apps.prompts.models import Prompt

    message = "The JSON nests deeper than 64 levels."
    prompt_form = VersionForm(data={"model_config": raw})
    assert not prompt_form.is_valid()
    assert prompt_form.errors["model_config"] == [message]
    none = {
        "charters": Charter.objects.none(),
        "prompts": Prompt.objects.none(),
        "versions": DatasetVersion.objects.none(),
    }
    suite_form = SuiteForm(data={"scorers": raw}, **none)
    assert not suite_form.is_valid()
    assert suite_form.errors["scorers"] == [message]


def test_a_deep_output_is_not_json_to_the_scorers():
    from apps.evaluations.scoring.builtin import parse_json_output

    assert parse_json_output(DEEP) == (False, None)


def test_a_database_lost_in_the_middle_of_an_ingest_keeps_nothing(owner, charter):
    """The connection drops after the observations are written: 503, and none of them kept."""
    from django.db import connection
    from django.utils import timezone

    from apps.scorecards.models import Observation

    metric = charter.metrics.first()
    items = [
        {
            "metric_id": metric.pk,
            "value": 1 + i,
            "time": timezone.now().isoformat(),
            "idempotency_key": f"k{i}",
        }
        for i in range(3)
    ]
    written, dropped = [], []

    def drop_after_the_insert(execute, sql, params, many, context):
        # The statement after the insert fails; the rollback that follows goes through, as
        # the server's own rollback of a dropped connection's transaction would.
        if written and not dropped:
            dropped.append(sql)
            raise OperationalError("server closed the connection unexpectedly")
        result = execute(sql, params, many, context)
        if sql.startswith("INSERT") and Observation._meta.db_table in sql:
            written.append(sql)
        return result

    client = APIClient()
    client.force_authenticate(owner)
    with connection.execute_wrapper(drop_after_the_insert):
        response = client.post("/api/v1/telemetry", {"observations": items}, format="json")
    assert written, "the observations were inserted before the connection dropped"
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "unavailable"
    assert not Observation.objects.exists()


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path, api", [("/api/v1/me/", True), ("/charters/", False)])
def test_a_database_failure_in_a_middleware_is_a_503_too(
    owner, monkeypatch, settings, debug, path, api
):
    """Sessions are read by a middleware, before any view: its failure is answered alike."""
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.test import Client

    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    client.force_login(owner)

    def refuse(self, request):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(SessionMiddleware, "process_request", refuse)
    response = client.get(path)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"Traceback" not in response.content and b"Connection refused" not in response.content
    if api:
        assert response.json()["code"] == "unavailable"


@pytest.mark.parametrize("debug", [False, True])
def test_an_error_in_a_middleware_is_a_json_500_without_a_traceback(
    owner, monkeypatch, settings, debug
):
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.test import Client

    settings.DEBUG = debug

    def boom(self, request):
        raise RuntimeError("secret path /srv/aifactory/settings.py")

    monkeypatch.setattr(SessionMiddleware, "process_request", boom)
    response = Client(raise_request_exception=False).get("/api/v1/me/")
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
    assert b"secret path" not in response.content
