"""Property-based fuzzing of the whole API against its own OpenAPI schema (schemathesis).

Every operation the served schema documents is called with generated input, valid and
invalid, by Olivia signed in on the web (session cookie and CSRF token, as her browser
sends them) and by the helpdesk integration (its API key). Every answer must be no server
error, carry a status code and a content type the schema documents for the operation, and
have a body matching the documented schema. Path parameters are drawn partly from the real
objects of the demo workspace, so detail endpoints and commands reach real rows and not
only 404s.

The run is bounded and reproducible: a few derandomized examples per operation, each
inside a savepoint that is rolled back, so every example starts from the same workspace.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, transaction
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client, TestCase
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aifactory.wsgi import application
from apps.approvals.models import ApprovalRequest, RaciAssignment
from apps.charters.models import Charter, Metric
from apps.evaluations import services as evaluation_services
from apps.evaluations.models import Run
from apps.prompts.models import PolicyFinding, Prompt
from apps.workspace.demo import demo_setup
from tests.evaluations.fixtures import case_rows, good_outputs, jsonl

# Loaded from the running application, as a client would: the WSGI app serves it in-process.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
# Schemathesis has no serializer of its own for JSONL bodies (POST …/outputs.jsonl, documented
# as a string): send the generated string as it is, as for text/plain.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
# Credentials are the persona's, never generated at random.
schema.config.generation.update(with_security_parameters=False)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Five per operation and persona (about 1,000 requests) keep `make test` within a minute on
# two cores; AIFACTORY_FUZZ_EXAMPLES=100 digs deeper by hand (the same derandomized start).
FUZZ = settings(
    max_examples=int(os.environ.get("AIFACTORY_FUZZ_EXAMPLES", "5")),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        # The fixtures hold read-only credentials; each example rolls its own writes back.
        HealthCheck.function_scoped_fixture,
    ],
)


def _workspace_objects() -> dict[str, list]:
    """The demo workspace plus an evaluation (dataset, suite, a scored run and one awaiting
    outputs); returns real path values keyed by the URL segment before the parameter."""
    User = get_user_model()
    olivia = User.objects.get(username="olivia")
    prompt = Prompt.objects.get(slug="support-reply-draft")
    dataset = evaluation_services.dataset_create(
        actor=olivia,
        name="Support cases",
        slug="support-cases",
        charter=prompt.charter,
        prompt=prompt,
    )
    evaluation_services.dataset_version_upload(
        actor=olivia, dataset=dataset, stream=jsonl(case_rows(6)), filename="cases.jsonl"
    )
    suite = evaluation_services.suite_create(
        actor=olivia,
        charter=prompt.charter,
        slug="support-quality",
        fields={
            "name": "Support quality",
            "prompt": prompt,
            "dataset_version": dataset.latest_version,
            "scorers": [{"scorer": "token_f1"}, {"scorer": "exact_match"}],
        },
    )
    evaluation_services.threshold_set(
        actor=olivia,
        suite=suite,
        fields={"metric": "token_f1", "aggregate": "mean", "comparator": ">=", "value": 0.5},
    )
    live = prompt.versions.get(number=1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        scored = evaluation_services.run_start(actor=olivia, suite=suite, prompt_version=live)
        evaluation_services.run_outputs_post(
            actor=olivia,
            run=scored,
            items=enumerate(good_outputs(case_rows(6)), start=1),
            complete=True,
        )
    evaluation_services.run_start(actor=olivia, suite=suite, prompt_version=live)
    application_user = User.objects.get(username="app-helpdesk-sidebar")
    return {
        "charters": list(Charter.objects.values_list("slug", flat=True)),
        "metrics": list(Metric.objects.values_list("pk", flat=True)),
        "raci": list(RaciAssignment.objects.values_list("pk", flat=True)),
        "request": ["go_live", "resume", "retire"],
        "requests": list(ApprovalRequest.objects.values_list("pk", flat=True)),
        "prompts": list(Prompt.objects.values_list("slug", flat=True)),
        "versions": [1, 2],
        "findings": list(PolicyFinding.objects.values_list("pk", flat=True)),
        "applications": ["helpdesk-sidebar"],
        "keys": list(application_user.api_keys.values_list("prefix", flat=True)),
        "datasets": [dataset.slug],
        "suites": [suite.slug],
        "thresholds": list(suite.thresholds.values_list("pk", flat=True)),
        "runs": list(Run.objects.values_list("pk", flat=True)),
    }


@pytest.fixture(scope="module")
def workspace(django_db_setup, django_db_blocker):
    """Built once for this module inside a transaction rolled back at its end; each test's
    own transaction is a savepoint within it."""
    with django_db_blocker.unblock(), transaction.atomic():
        api_key = demo_setup(evaluations=False)["api_key"]
        objects = {"api_key": api_key, "path_values": _workspace_objects()}
        # Check the workspace's deferred foreign keys now, once. Left pending, PostgreSQL
        # checks them all again at the end of every test (its rolled-back savepoint restores
        # them), which cost more than the examples themselves.
        connection.check_constraints()
        yield objects
        transaction.set_rollback(True)


@pytest.fixture
def in_process(db, workspace, settings):
    """Requests reach the WSGI handler inside the test's transaction: as Django's test client
    does, keep the request signals from closing that connection."""
    # The verdict's long poll would sleep out its whole wait on a run nobody scores here.
    settings.EVALUATIONS_GATE_WAIT_SECONDS = 0
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield workspace
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def signed_in_user(in_process, settings):
    """Olivia, a business owner, signed in: her session cookie and a CSRF token."""
    client = Client()
    client.force_login(get_user_model().objects.get(username="olivia"))
    token = _get_new_csrf_string()
    return {
        "headers": {"X-CSRFToken": token},
        "cookies": {
            settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
            settings.CSRF_COOKIE_NAME: token,
        },
    }


@pytest.fixture
def integration(in_process):
    """The helpdesk sidebar application: its service user's API key."""
    return {"headers": {"Authorization": f"Api-Key {in_process['api_key']}"}, "cookies": {}}


def _call(case, data, workspace, credentials):
    """Point some path parameters at real objects, call, check, and roll the example back."""
    segments = case.operation.path.strip("/").split("/")
    for before, segment in zip(segments, segments[1:], strict=False):
        name = segment.strip("{}")
        real = workspace["path_values"].get(before, [])
        if segment.startswith("{") and real:
            generated = case.path_parameters[name]
            case.path_parameters[name] = data.draw(st.sampled_from([generated, *real]), name)
    with transaction.atomic():
        case.call_and_validate(
            headers=credentials["headers"], cookies=credentials["cookies"], checks=CHECKS
        )
        transaction.set_rollback(True)


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ
def test_api_as_a_signed_in_user(case, data, in_process, signed_in_user):
    _call(case, data, in_process, signed_in_user)


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ
def test_api_as_an_integration(case, data, in_process, integration):
    _call(case, data, in_process, integration)
