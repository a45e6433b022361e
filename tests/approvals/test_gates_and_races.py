"""The evaluation gate on the exact content hash, stale evidence at execution, and two
approvers deciding at the same moment, two promotions of one label racing."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from apps.approvals import services
from apps.core.errors import InvalidTransition
from apps.core.models import AuditEvent
from apps.evaluations.models import Run
from apps.prompts import services as prompt_services
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


def _at_once(call, *argument_lists):
    """Run `call` once per argument list, in threads released together; their outcomes (the
    value returned, "refused" for InvalidTransition, or the repr of another error)."""
    start = threading.Barrier(len(argument_lists))
    outcomes = []

    def one(args):
        try:
            start.wait()
            outcomes.append(call(*args))
        except InvalidTransition:
            outcomes.append("refused")
        except Exception as exc:  # noqa: BLE001 - shown in the assertion
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(args,)) for args in argument_lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def _scored(owner, suite, version):
    """A passing evaluation of `version`, scored here (the test commits for real)."""
    from apps.evaluations import services as evaluation_services
    from apps.evaluations.services import runs as run_services

    run = evaluation_services.run_start(actor=owner, suite=suite, prompt_version=version)
    evaluation_services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), 1), complete=True, enqueue=False
    )
    for batch in run.batches.all():
        run_services.run_batch_execute(batch.pk)
    run_services.run_finalize(run.pk)
    return run


real_locks = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="real row locks under concurrency: PostgreSQL CI runs this (SQLite takes one writer)",
)


@real_locks
@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_the_same_moment_execute_once(owner, compliance, support_prompt, suite):
    from tests import factories

    second = factories.compliance_officer("cora")
    v2 = support_prompt.versions.get(number=2)
    _scored(owner, suite, v2)
    request = services.promotion_request(actor=owner, version=v2)

    def decide(person):
        return services.approval_decide(actor=person, request=request, verdict="approve").status

    outcomes = _at_once(decide, (compliance,), (second,))

    assert sorted(outcomes) == ["executed", "refused"]
    assert LabelMove.objects.filter(prompt=support_prompt, to_version=v2).count() == 1
    request.refresh_from_db()
    assert request.decisions.count() == 1 and request.status == "executed"


@real_locks
@pytest.mark.django_db(transaction=True)
def test_two_promotions_of_the_same_label_at_the_same_moment_move_it_once(
    owner, support_prompt, suite
):
    v2 = support_prompt.versions.get(number=2)
    _scored(owner, suite, v2)

    def promote():
        label = prompt_services.promotion_execute(actor=owner, version=v2, label="production")
        return f"production -> v{label.version.number}"

    outcomes = _at_once(promote, (), ())

    assert sorted(outcomes) == ["production -> v2", "refused"]
    assert support_prompt.labels.get(name="production").version == v2
    moves = LabelMove.objects.filter(prompt=support_prompt, label="production", to_version=v2)
    assert [move.from_version.number for move in moves] == [1]
    promoted = AuditEvent.objects.filter(verb="prompt.promote", data__to_version=2)
    assert promoted.count() == 1


@real_locks
@pytest.mark.django_db(transaction=True)
def test_two_label_moves_at_the_same_moment_are_both_recorded_in_order(owner, support_prompt):
    v1, v2 = support_prompt.versions.order_by("number")

    def move(version):
        label = prompt_services.label_move(actor=owner, version=version, label="staging")
        return f"v{label.version.number}"

    outcomes = _at_once(move, (v1,), (v2,))

    assert sorted(outcomes) == ["v1", "v2"]
    moves = list(LabelMove.objects.filter(prompt=support_prompt, label="staging").order_by("pk"))
    # Serialized on the prompt's row: the second move starts from where the first left it,
    # and the label ends where the last recorded move put it.
    assert [m.from_version for m in moves] == [None, moves[0].to_version]
    assert support_prompt.labels.get(name="staging").version == moves[1].to_version
