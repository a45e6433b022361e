"""Drift: a production version re-run through its route regresses against the run that
certified it, and the respond-to-drift people hear of it."""

import pytest

from apps.core.models import Notification
from apps.gateway.models import Route
from apps.scorecards.drift import drift_check_all
from apps.scorecards.models import DriftAlert
from apps.scorecards.selectors import portfolio, scorecard
from tests.evaluations.fixtures import ANSWERS, good_outputs, score_posted
from tests.evaluations.openai_stub import OpenAIStub, last_user_message
from tests.factories import approved_endpoint

pytestmark = pytest.mark.django_db


def _answer_well(body):
    return ANSWERS[last_user_message(body).rsplit(" ", 1)[-1]]


def test_a_regressed_production_version_raises_a_drift_alert(
    owner, engineer, suite, support_prompt, django_capture_on_commit_callbacks
):
    v1 = support_prompt.versions.get(number=1)
    certified = score_posted(owner, suite, v1, good_outputs(), django_capture_on_commit_callbacks)
    with OpenAIStub(responder=lambda body: "I cannot help with that.") as stub:
        Route.objects.create(prompt=support_prompt, endpoint=approved_endpoint(stub.base_url))
        with django_capture_on_commit_callbacks(execute=True):
            started = drift_check_all()
    assert len(started) == 1
    alert = DriftAlert.objects.get()
    assert alert.certified_run == certified and alert.run.purpose == "drift"
    assert "the gate now fails" in alert.summary and "token_f1" in alert.summary
    assert Notification.objects.filter(recipient=engineer, verb="drift.alert").exists()
    assert scorecard(support_prompt.charter)["drift_alerts"][0]["summary"] == alert.summary
    assert portfolio(owner)[0]["open_drift_alerts"] == 1


def test_a_stable_version_raises_nothing_and_uncertified_ones_are_skipped(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    with OpenAIStub(responder=_answer_well) as stub:
        Route.objects.create(prompt=support_prompt, endpoint=approved_endpoint(stub.base_url))
        assert drift_check_all() == []  # nothing certified this content yet
        score_posted(
            owner,
            suite,
            support_prompt.versions.get(number=1),
            good_outputs(),
            django_capture_on_commit_callbacks,
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert len(drift_check_all()) == 1
    assert not DriftAlert.objects.exists()
