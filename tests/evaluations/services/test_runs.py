"""Runs: posted outputs, idempotent batches, cancellation, the sweeper, finalization, comparison."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone

from apps.core.errors import InvalidTransition, ValidationFailed
from apps.evaluations import services
from apps.evaluations.models import CaseResult, RunBatch
from apps.evaluations.services import runs as run_services
from apps.evaluations.services.execution import RetryBatch
from tests.evaluations.fixtures import bad_outputs, case_rows, good_outputs, score_posted

pytestmark = pytest.mark.django_db


def _start(owner, suite, version, **kw):
    return services.run_start(actor=owner, suite=suite, prompt_version=version, **kw)


def test_posted_run_scores_every_case_and_passes_its_threshold(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    v2 = support_prompt.versions.get(number=2)
    run = score_posted(
        owner, suite, v2, good_outputs(), django_capture_on_commit_callbacks, batch_size=5
    )
    assert run.status == "completed" and run.verdict == "pass"
    assert (run.total_batches, run.done_batches, run.done_cases) == (5, 5, 24)
    assert run.content_hash == v2.content_hash
    assert run.summary["overall"]["token_f1"]["mean"] == pytest.approx(1.0)
    assert run.summary["overall"]["exact_match"]["pass_rate"] == 1.0
    assert set(run.summary["segments"]["token_f1"]) == {"language", "user_role", "topic"}
    assert run.gate[0]["status"] == "pass" and "token_f1" in run.gate[0]["reason"]
    assert CaseResult.objects.filter(run=run).count() == 24


def test_failing_outputs_fail_the_gate_with_the_reason(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    run = score_posted(
        owner,
        suite,
        support_prompt.versions.get(number=2),
        bad_outputs(),
        django_capture_on_commit_callbacks,
    )
    assert run.verdict == "fail"
    assert run.gate[0]["passed"] is False
    assert "needs >= 0.500" in run.gate[0]["reason"]


def test_outputs_for_unknown_cases_are_refused_and_nothing_is_kept(owner, suite, support_prompt):
    run = _start(owner, suite, support_prompt.versions.get(number=2))
    items = [{"id": "c1", "output": "fine"}, {"id": "nope", "output": "x"}, {"id": "c2"}]
    with pytest.raises(ValidationFailed) as refused:
        services.run_outputs_post(actor=owner, run=run, items=enumerate(items, start=1))
    assert refused.value.errors["outputs"] == [
        "line 2: no case 'nope' in the suite's dataset.",
        "line 3: 'output' must be text.",
    ]
    assert run.outputs.count() == 0


def test_missing_outputs_count_as_errored_failures(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    outputs = good_outputs()[:20]
    run = score_posted(
        owner,
        suite,
        support_prompt.versions.get(number=2),
        outputs,
        django_capture_on_commit_callbacks,
    )
    assert run.summary["errors"] == 4
    assert run.summary["overall"]["token_f1"]["pass_rate"] == pytest.approx(20 / 24)
    assert any("produced no output" in g["reason"] for g in run.gate)
    errored = CaseResult.objects.filter(run=run).exclude(error="")
    assert errored.count() == 4 and errored.first().error == "No output was posted for this case."


def test_redelivered_batch_changes_nothing(owner, suite, support_prompt):
    run = _start(owner, suite, support_prompt.versions.get(number=2), batch_size=10)
    services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), start=1), complete=True, enqueue=False
    )
    batch = run.batches.get(index=0)
    assert run_services.run_batch_execute(batch.pk) == "done"
    assert run_services.run_batch_execute(batch.pk) == "skipped"
    run.refresh_from_db()
    assert (run.done_batches, run.done_cases) == (1, 10)
    assert CaseResult.objects.filter(run=run).count() == 10


def test_a_retried_batch_after_partial_results_writes_each_case_once(owner, suite, support_prompt):
    run = _start(owner, suite, support_prompt.versions.get(number=2), batch_size=10)
    services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), start=1), complete=True, enqueue=False
    )
    batch = run.batches.get(index=0)
    run_services.run_batch_execute(batch.pk)
    # The worker died after writing but before the batch was marked: the sweeper hands it out again.
    RunBatch.objects.filter(pk=batch.pk).update(status="pending")
    assert run_services.run_batch_execute(batch.pk) == "done"
    run.refresh_from_db()
    assert CaseResult.objects.filter(run=run).count() == 10
    assert run.done_batches == 2  # counted again: the batch really ran twice …
    # … but two workers racing on the same claim count it once.
    RunBatch.objects.filter(pk=batch.pk).update(status="claimed")
    assert RunBatch.objects.filter(pk=batch.pk, status="claimed").update(status="done") == 1
    assert RunBatch.objects.filter(pk=batch.pk, status="claimed").update(status="done") == 0


def test_the_last_batch_enqueues_finalization_exactly_once(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    run = _start(owner, suite, support_prompt.versions.get(number=2), batch_size=12)
    services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), start=1), complete=True, enqueue=False
    )
    first, last = run.batches.order_by("index")
    run_services.run_batch_execute(first.pk)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_services.run_batch_execute(last.pk)
    assert len(callbacks) == 1
    run.refresh_from_db()
    assert run.status == "finalizing"
    assert run_services.run_finalize(run.pk) == "finalized"
    assert run_services.run_finalize(run.pk) == "skipped"


def test_a_failing_batch_is_retried_then_fails_the_run(owner, suite, support_prompt, monkeypatch):
    run = _start(owner, suite, support_prompt.versions.get(number=2), batch_size=24)
    services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), start=1), complete=True, enqueue=False
    )

    def broken(*args, **kwargs):
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr(run_services.execution, "score_cases", broken)
    batch = run.batches.get()
    for _ in range(2):
        with pytest.raises(RetryBatch):
            run_services.run_batch_execute(batch.pk)
        batch.refresh_from_db()
        assert batch.status == "pending" and "scorer exploded" in batch.error
    assert run_services.run_batch_execute(batch.pk) == "failed"
    run.refresh_from_db()
    assert run.status == "failed"
    assert "gave up after 3 attempts" in run.error


def test_cancel_stops_pending_batches_and_keeps_finished_results(owner, suite, support_prompt):
    run = _start(owner, suite, support_prompt.versions.get(number=2), batch_size=12)
    services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), start=1), complete=True, enqueue=False
    )
    first, second = run.batches.order_by("index")
    run_services.run_batch_execute(first.pk)
    services.run_cancel(actor=owner, run=run, reason="Wrong dataset")
    assert run_services.run_batch_execute(second.pk) == "skipped"
    run.refresh_from_db()
    assert run.status == "cancelled" and run.error == "Wrong dataset"
    assert CaseResult.objects.filter(run=run).count() == 12
    with pytest.raises(InvalidTransition):
        services.run_cancel(actor=owner, run=run)


def test_sweeper_requeues_a_stuck_batch_and_fails_one_out_of_attempts(
    owner, suite, support_prompt, monkeypatch
):
    run = _start(owner, suite, support_prompt.versions.get(number=2), batch_size=12)
    services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), start=1), complete=True, enqueue=False
    )
    enqueued = []
    monkeypatch.setattr(run_services, "_enqueue_batches", lambda r, ids: enqueued.extend(ids))
    long_ago = timezone.now() - dt.timedelta(hours=1)
    first, second = run.batches.order_by("index")
    RunBatch.objects.filter(pk=first.pk).update(status="claimed", claimed_at=long_ago, attempts=1)
    RunBatch.objects.filter(pk=second.pk).update(status="pending", enqueued_at=timezone.now())
    assert run_services.run_sweep() == {"requeued": 1, "failed": 0, "finalize": 0}
    assert enqueued == [first.pk]
    first.refresh_from_db()
    assert first.status == "pending"
    RunBatch.objects.filter(pk=first.pk).update(status="claimed", claimed_at=long_ago, attempts=3)
    assert run_services.run_sweep()["failed"] == 1
    run.refresh_from_db()
    assert run.status == "failed" and "got stuck 3 times" in run.error


def test_comparison_with_the_production_baseline_finds_the_regressed_segment(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    v1, v2 = support_prompt.versions.order_by("number")
    baseline = score_posted(owner, suite, v1, good_outputs(), django_capture_on_commit_callbacks)
    candidate = score_posted(
        owner,
        suite,
        v2,
        bad_outputs(only=lambda r: r["user_role"] == "partner"),
        django_capture_on_commit_callbacks,
    )
    assert candidate.baseline_id == baseline.pk
    delta = candidate.comparison["metrics"]["token_f1"]
    assert delta["delta"] < 0 and delta["low"] <= delta["delta"] <= delta["high"]
    assert delta["paired_cases"] == 24 and delta["worse"] is True
    regressed = {
        (r["metric"], r["key"], r["value"]) for r in candidate.comparison["regressed_segments"]
    }
    assert ("token_f1", "user_role", "partner") in regressed
    assert ("token_f1", "user_role", "customer") not in regressed


def test_a_worst_segment_threshold_ignores_segments_below_their_minimum(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    services.threshold_set(
        actor=owner,
        suite=suite,
        fields={
            "metric": "token_f1",
            "aggregate": "worst_segment",
            "comparator": ">=",
            "value": 0.9,
            "segment_key": "user_role",
            "min_cases": 7,
        },
    )
    outputs = bad_outputs(only=lambda r: r["user_role"] == "partner")  # 6 partner cases
    run = score_posted(
        owner,
        suite,
        support_prompt.versions.get(number=2),
        outputs,
        django_capture_on_commit_callbacks,
    )
    worst = next(g for g in run.gate if g["aggregate"] == "worst_segment")
    assert worst["passed"] is True and "fewer than 7" in worst["reason"]


def test_run_start_checks_permission_and_subject(owner, outsider, engineer, suite, support_prompt):
    v2 = support_prompt.versions.get(number=2)
    with pytest.raises(Http404):
        services.run_start(actor=outsider, suite=suite, prompt_version=v2)
    with pytest.raises(ValidationFailed) as refused:
        services.run_start(actor=owner, suite=suite)
    assert "subject" in refused.value.errors
    with pytest.raises(ValidationFailed) as refused:
        services.run_start(
            actor=owner, suite=suite, prompt_version=v2, output_source="generated", endpoint={}
        )
    assert "No such model endpoint in the registry." in refused.value.errors["endpoint"]
    assert len(case_rows()) == suite.dataset_version.case_count


def test_ci_service_users_may_run_any_suite_but_not_edit_it(suite, support_prompt, db):
    from apps.core import groups
    from apps.evaluations import permissions
    from tests.factories import UserFactory

    ci = UserFactory(username="ci-bot", groups=[groups.INTEGRATIONS])
    assert permissions.can(ci, permissions.RUN, suite)
    assert not permissions.can(ci, permissions.AUTHOR, suite)
    run = services.run_start(
        actor=ci, suite=suite, prompt_version=support_prompt.versions.get(number=2)
    )
    assert run.created_by == ci
    with pytest.raises(PermissionDenied):
        services.threshold_set(actor=ci, suite=suite, fields={"metric": "token_f1", "value": 0.1})
