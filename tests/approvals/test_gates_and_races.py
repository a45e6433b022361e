"""The evaluation gate on the exact content hash, stale evidence at execution, and two
approvers deciding at the same moment."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from apps.approvals import services
from apps.core.errors import InvalidTransition
from apps.evaluations.models import Run
from apps.prompts.models import LabelMove
from tests.evaluations.fixtures import bad_outputs, good_outputs, score_posted

pytestmark = pytest.mark.django_db


def _gate(request, name):
    return next(r for r in request.evidence if r["check"] == name)


def test_evaluation_gate_needs_a_passing_run_on_this_exact_content(
    owner, compliance, suite, support_prompt, django_capture_on_commit_callbacks
):
    v1, v2 = support_prompt.versions.order_by("number")
    score_posted(
        owner, suite, v1, good_outputs(), django_capture_on_commit_callbacks
    )  # other content
    request = services.promotion_request(actor=owner, version=v2)
    check = _gate(request, "evaluation_passed")
    assert not check["passed"] and "No passing evaluation of this exact content" in check["reason"]
    failing = score_posted(owner, suite, v2, bad_outputs(), django_capture_on_commit_callbacks)
    assert not services.refresh_evidence(request)[3].passed
    assert (
        f"run #{failing.pk}" in request.evidence[3]["reason"]
        and "failed" in request.evidence[3]["reason"]
    )
    passing = score_posted(owner, suite, v2, good_outputs(), django_capture_on_commit_callbacks)
    results = services.refresh_evidence(request)
    assert results[3].passed and results[3].evidence["run"] == passing.pk
    done = services.approval_decide(actor=compliance, request=request, verdict="approve")
    assert done.status == "executed"


def test_evidence_that_went_stale_is_refused_at_execution(
    owner, compliance, suite, support_prompt, django_capture_on_commit_callbacks, settings
):
    v2 = support_prompt.versions.get(number=2)
    run = score_posted(owner, suite, v2, good_outputs(), django_capture_on_commit_callbacks)
    request = services.promotion_request(actor=owner, version=v2)
    assert _gate(request, "evaluation_passed")["passed"]
    # The run ages out of its validity window before the approver gets to it.
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now() - dt.timedelta(days=31))
    decided = services.approval_decide(actor=compliance, request=request, verdict="approve")
    assert decided.status == "open"
    assert "evaluation_passed: No passing evaluation" in decided.outcome
    assert support_prompt.labels.get(name="production").version.number == 1


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_the_same_moment_execute_once(owner, compliance, support_prompt, suite):
    if connection.vendor != "postgresql":
        pytest.skip("real row locks under concurrency: PostgreSQL CI runs this")
    from apps.evaluations import services as evaluation_services
    from tests import factories

    second = factories.compliance_officer("cora")
    v2 = support_prompt.versions.get(number=2)
    run = evaluation_services.run_start(actor=owner, suite=suite, prompt_version=v2)
    evaluation_services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), 1), complete=True, enqueue=False
    )
    from apps.evaluations.services import runs as run_services

    for batch in run.batches.all():
        run_services.run_batch_execute(batch.pk)
    run_services.run_finalize(run.pk)
    request = services.promotion_request(actor=owner, version=v2)
    start = threading.Barrier(2)
    outcomes = []

    def decide(person):
        try:
            start.wait()
            outcomes.append(
                services.approval_decide(actor=person, request=request, verdict="approve").status
            )
        except InvalidTransition:
            outcomes.append("refused")
        except Exception as exc:  # noqa: BLE001 - shown in the assertion
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(p,)) for p in (compliance, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["executed", "refused"]
    assert LabelMove.objects.filter(prompt=support_prompt, to_version=v2).count() == 1
    request.refresh_from_db()
    assert request.decisions.count() == 1 and request.status == "executed"
