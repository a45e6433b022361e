"""The gateway: render, call, filter, record; and each way an execution fails."""

import pytest
from rest_framework.test import APIClient

from apps.charters.services import charter_share
from apps.gateway.models import Call, Route
from apps.prompts import services
from apps.scorecards.selectors import scorecard
from tests import factories
from tests.evaluations.openai_stub import OpenAIStub, last_user_message
from tests.factories import approved_endpoint
from tests.prompts.factories import PromptFactory, version_fields

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(charter, owner, compliance):
    charter.status = "pilot"
    charter.save(update_fields=["status"])
    prompt = PromptFactory(charter=charter, owner=owner, slug="support-reply", name="Support reply")
    version = services.version_create(actor=owner, prompt=prompt, fields=version_fields())
    services.version_submit(actor=owner, version=version)
    services.version_approve(actor=compliance, version=version)
    services.promotion_execute(actor=owner, version=version)
    return prompt


@pytest.fixture
def app_key(live, owner):
    ada = factories.platform_engineer("ada")
    application = services.application_create(actor=ada, name="Helpdesk sidebar")
    charter_share(actor=owner, charter=live.charter, user=application.service_user, access="view")
    _, plain = services.application_key_create(actor=ada, application=application, name="prod")
    return application, plain


@pytest.fixture
def stub():
    with OpenAIStub(responder=lambda body: f"Reply to: {last_user_message(body)[-30:]}") as server:
        yield server


def _route(prompt, stub, **kw):
    endpoint = approved_endpoint(
        stub.base_url,
        timeout_s=kw.pop("timeout_s", 5),
        max_retries=kw.pop("max_retries", 0),
        price_per_1k_input=kw.pop("price_in", 1),
        price_per_1k_output=kw.pop("price_out", 2),
    )
    return Route.objects.create(prompt=prompt, endpoint=endpoint, model="local-llm", **kw)


def _execute(app_key, variables=None, slug="support-reply", **body):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {app_key[1]}")
    return api.post(
        f"/api/v1/prompts/{slug}/execute",
        {
            "variables": variables
            or {"context": "Returns within 30 days.", "message": "Can I return?"},
            **body,
        },
        format="json",
    )


def test_executes_the_live_version_and_records_platform_telemetry(live, app_key, stub):
    _route(live, stub)
    response = _execute(app_key)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (
        body["output"].startswith("Reply to:") and body["version"] == 1 and body["status"] == "ok"
    )
    assert stub.requests[0].body["model"] == "local-llm"
    assert "Returns within 30 days." in stub.requests[0].body["messages"][1]["content"]
    call = Call.objects.get()
    assert (call.status, call.application, call.charter_id) == ("ok", app_key[0], live.charter_id)
    assert call.tokens_in > 0 and float(call.cost) > 0
    health = scorecard(live.charter)["gateway"]
    assert health["calls"] == 1 and health["error_rate"] == 0.0
    assert live.consumers.filter(application=app_key[0]).exists()  # lineage from real use


@pytest.mark.parametrize(
    ("mode", "status", "expected"),
    [("flag", 200, "flagged"), ("redact", 200, "redacted"), ("block", 422, None)],
)
def test_output_filters_flag_redact_or_block(live, app_key, mode, status, expected):
    with OpenAIStub(responder=lambda body: "Write to jane.doe@example.com for a refund.") as stub:
        _route(live, stub, filter_mode=mode)
        response = _execute(app_key)
    assert response.status_code == status
    if expected:
        assert response.json()["status"] == expected
        assert any(f["code"].startswith("PII") for f in response.json()["findings"])
        if mode == "redact":
            assert "jane.doe@example.com" not in response.json()["output"]
    else:
        assert response.json()["code"] == "output_blocked" and "output" not in response.json()
    assert Call.objects.get().status == (expected or "blocked")


def test_each_failure_has_its_status(live, app_key, stub, settings):
    assert _execute(app_key).status_code == 409  # no route yet
    route = _route(live, stub)
    missing = _execute(app_key, variables={"context": "x"})
    assert missing.status_code == 400 and "variables.message" in missing.json()["errors"]
    assert _execute(app_key, label="canary").status_code == 404
    stub.fail_next(status=500, times=1)
    failed = _execute(app_key)
    assert failed.status_code == 502 and failed.json()["code"] == "upstream_error"
    route.endpoint.timeout_s = 0.2
    route.endpoint.save()
    stub.slow_next(1.0)
    timed_out = _execute(app_key)
    assert timed_out.status_code == 504
    assert Call.objects.filter(status="error").count() == 2


def test_retries_a_429_then_succeeds(live, app_key, stub):
    _route(live, stub, max_retries=2)
    stub.fail_next(status=429, times=1, retry_after=0)
    assert _execute(app_key).status_code == 200
    assert len(stub.requests) == 2


def test_rate_limit_per_application(live, app_key, stub):
    _route(live, stub, rate_limit_per_minute=2)
    assert [_execute(app_key).status_code for _ in range(3)] == [200, 200, 429]
    limited = _execute(app_key)
    assert int(limited["Retry-After"]) > 0 and limited.json()["code"] == "rate_limited"


def test_invisible_or_retired_prompts(live, app_key, stub, owner):
    _route(live, stub)
    outsider_app = services.application_create(actor=factories.outsider("oscar"), name="Other app")
    _, other_key = services.application_key_create(
        actor=outsider_app.owner, application=outsider_app, name="k"
    )
    assert _execute((outsider_app, other_key)).status_code == 404
    services.prompt_retire(actor=owner, prompt=live, reason="gone")
    assert _execute(app_key).status_code == 410
