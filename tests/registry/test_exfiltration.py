"""The attack this registry closes: someone allowed to start a run (or edit a route) used to
make a worker send any server environment variable, as a bearer token, to any URL.

Each test plays it against a listener on the loopback and checks the listener heard nothing."""

import http.server
import threading

import pytest
from rest_framework.test import APIClient

from apps.core import groups
from apps.core.errors import ValidationFailed
from apps.core.services import api_key_create
from apps.evaluations import services as evaluation_services
from apps.evaluations.models import Run, RunOutput
from apps.gateway.models import Route
from apps.gateway.services import GatewayError, prompt_execute
from apps.registry.models import ModelEndpoint
from tests.evaluations.openai_stub import OpenAIStub
from tests.factories import UserFactory, approved_endpoint

pytestmark = pytest.mark.django_db

FREE_ENDPOINTS = [
    {"base_url": "{listener}", "api_key_env": "DJANGO_SECRET_KEY"},
    {"base_url": "{listener}", "api_key_env": "DATABASE_URL", "model": "x"},
    {"base_url": "{listener}"},
    {"slug": "local-llm", "api_key_env": "DJANGO_SECRET_KEY"},
]


class Listener:
    """An HTTP server on the loopback that records every request it receives."""

    def __init__(self):
        heard = self.heard = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                heard.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"choices":[{"message":{"content":"ok"}}]}')

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def _free(template, listener):
    return {
        k: (v.format(listener=listener.url) if isinstance(v, str) else v)
        for k, v in template.items()
    }


@pytest.mark.parametrize("template", FREE_ENDPOINTS)
def test_a_run_naming_a_free_url_or_variable_is_refused_and_nothing_is_sent(
    owner,
    suite,
    support_prompt,
    listener,
    template,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-server-secret")
    with (
        pytest.raises(ValidationFailed) as refused,
        django_capture_on_commit_callbacks(execute=True),
    ):
        evaluation_services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=support_prompt.versions.get(number=2),
            output_source="generated",
            endpoint=_free(template, listener),
        )
    message = " ".join(refused.value.errors["endpoint"])
    assert "registered endpoint" in message or "registry" in message
    assert "DJANGO_SECRET_KEY" not in message and "not set" not in message
    assert listener.heard == []
    assert not Run.objects.exists()


def test_the_api_refuses_it_too_for_people_and_integration_keys(
    owner, suite, support_prompt, listener
):
    service = UserFactory(username="ci-pipeline", groups=[groups.INTEGRATIONS])
    _, key = api_key_create(user=service, name="ci")
    session = APIClient()
    session.force_authenticate(owner)
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    body = {
        "suite": suite.slug,
        "prompt": support_prompt.slug,
        "version": 2,
        "output_source": "generated",
        "endpoint": {"base_url": listener.url, "api_key_env": "DJANGO_SECRET_KEY"},
    }
    for client in (session, keyed):
        response = client.post("/api/v1/evaluations/runs/", body, format="json")
        assert response.status_code == 400, response.content
        assert "endpoint" in response.json()["errors"]
        assert b"DJANGO_SECRET_KEY" not in response.content
    # An unset variable answers word for word like a set one: nothing tells them apart.
    body["endpoint"] = {"base_url": listener.url, "api_key_env": "SURELY_NOT_SET_ANYWHERE"}
    other = session.post("/api/v1/evaluations/runs/", body, format="json")
    assert other.json() == response.json()
    assert listener.heard == []


def test_the_web_form_offers_only_approved_endpoints(client, owner, suite, stub_endpoints):
    client.force_login(owner)
    page = client.get(suite.get_absolute_url())
    assert page.status_code == 200
    text = page.content.decode()
    assert "approved-llm" in text
    assert "proposed-llm" not in text
    assert 'name="base_url"' not in text and 'name="api_key_env"' not in text


@pytest.fixture
def stub_endpoints(listener):
    approved = approved_endpoint(listener.url, slug="approved-llm")
    proposed = approved_endpoint(listener.url, slug="proposed-llm", status="proposed")
    return approved, proposed


@pytest.mark.parametrize("status", ["proposed", "suspended", "retired"])
def test_a_run_on_an_endpoint_that_is_not_approved_is_refused(
    owner, suite, support_prompt, listener, status
):
    endpoint = approved_endpoint(listener.url, status=status)
    with pytest.raises(ValidationFailed) as refused:
        evaluation_services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=support_prompt.versions.get(number=2),
            output_source="generated",
            endpoint={"slug": endpoint.slug, "model": "local-llm"},
        )
    assert f"is {status}, not approved" in refused.value.errors["endpoint"][0]
    assert listener.heard == []


def test_a_run_whose_endpoint_is_suspended_mid_way_calls_it_no_more(
    owner, suite, support_prompt, listener, django_capture_on_commit_callbacks
):
    endpoint = approved_endpoint(listener.url)
    run = evaluation_services.run_start(
        actor=owner,
        suite=suite,
        prompt_version=support_prompt.versions.get(number=2),
        output_source="generated",
        endpoint={"slug": endpoint.slug, "model": "local-llm"},
        batch_size=50,
    )
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(status="suspended")
    from apps.evaluations.services import runs

    for batch in run.batches.all():
        runs.run_batch_execute(batch.pk)
    assert listener.heard == []
    errors = set(RunOutput.objects.filter(run=run).values_list("error", flat=True))
    assert errors == {f"Not generated: Endpoint {endpoint.slug} is suspended, not approved."}


def test_a_credential_never_follows_a_redirect_to_another_host(
    owner, suite, support_prompt, listener, settings, monkeypatch
):
    """The approved endpoint answers 307 to another server: the worker does not follow."""
    monkeypatch.setenv("ONPREM_KEY", "the-endpoint-secret")
    settings.MODEL_CREDENTIALS = {"ONPREM_KEY": "redirecting"}

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(307)
            self.send_header("Location", listener.url.replace("/v1", "/stolen"))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = approved_endpoint(
            f"http://127.0.0.1:{server.server_address[1]}/v1",
            slug="redirecting",
            credential="ONPREM_KEY",
        )
        run = evaluation_services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=support_prompt.versions.get(number=2),
            output_source="generated",
            endpoint={"slug": endpoint.slug, "model": "local-llm"},
            batch_size=50,
        )
        from apps.evaluations.services import runs

        runs.run_batch_execute(run.batches.first().pk)
    finally:
        server.shutdown()
        server.server_close()
    assert listener.heard == []
    errors = RunOutput.objects.filter(run=run).values_list("error", flat=True)
    assert errors and all("redirect" in e.lower() for e in errors)


def test_an_address_that_turns_private_at_connect_time_is_refused(
    owner, support_prompt, listener, monkeypatch
):
    """DNS can change after the endpoint was saved: the address is checked again at connect."""
    import socket

    endpoint = approved_endpoint(
        "http://models.example.com/v1", allow_private=False, allow_private_reason=""
    )
    Route.objects.create(prompt=support_prompt, endpoint=endpoint, model="local-llm")
    port = int(listener.url.rsplit(":", 1)[1].split("/")[0])
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "models.example.com":
            return real("127.0.0.1", port, *args[1:], **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(GatewayError) as failed:
        prompt_execute(actor=owner, key=None, slug=support_prompt.slug, variables=_variables())
    assert failed.value.status_code == 502
    assert listener.heard == []


def _variables():
    return {"message": "Where is my parcel?", "context": "Parcels arrive in 3 days."}


def test_gateway_execution_on_a_suspended_endpoint_answers_503(owner, support_prompt):
    with OpenAIStub(responder=lambda body: "fine") as stub:
        endpoint = approved_endpoint(stub.base_url, status="suspended")
        Route.objects.create(prompt=support_prompt, endpoint=endpoint, model="local-llm")
        with pytest.raises(GatewayError) as failed:
            prompt_execute(actor=owner, key=None, slug=support_prompt.slug, variables=_variables())
        assert failed.value.status_code == 503
        assert failed.value.code == "endpoint_unavailable"
        assert stub.requests == []


def test_drift_checks_name_the_route_endpoint_and_skip_a_suspended_one(
    owner, suite, support_prompt, listener, django_capture_on_commit_callbacks
):
    from apps.scorecards.drift import drift_check_all
    from tests.evaluations.fixtures import good_outputs, score_posted

    score_posted(
        owner,
        suite,
        support_prompt.versions.get(number=1),
        good_outputs(),
        django_capture_on_commit_callbacks,
    )
    endpoint = approved_endpoint(listener.url, status="suspended")
    Route.objects.create(prompt=support_prompt, endpoint=endpoint, model="local-llm")
    assert drift_check_all() == []
    assert listener.heard == []
