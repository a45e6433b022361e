"""Faults with real worker processes: a worker killed in the middle of a batch."""

import datetime as dt
import os
import signal

import pytest
from django.conf import settings
from django.utils import timezone

from apps.core.models import Notification
from apps.evaluations import services
from apps.evaluations.models import CaseResult, Run, RunBatch
from apps.evaluations.services.runs import run_sweep
from tests.evaluations.fixtures import ANSWERS
from tests.evaluations.openai_stub import OpenAIStub, last_user_message
from tests.factories import approved_endpoint
from tests.integration.conftest import spawn_worker, stop

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_mid_batch_is_replaced_and_the_run_completes_once(
    celery_worker_process, tmp_path, owner, suite, support_prompt
):
    def answer(body):
        return ANSWERS[last_user_message(body).rsplit(" ", 1)[-1]]

    with OpenAIStub(responder=answer, delay=0.25) as stub:
        run = services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=support_prompt.versions.get(number=2),
            output_source="generated",
            endpoint={"slug": approved_endpoint(stub.base_url).slug, "concurrency": 1},
            batch_size=6,
        )
        first = celery_worker_process
        first.wait_for(
            lambda: RunBatch.objects.filter(run=run, status="claimed").exists(),
            what="a batch to be claimed",
        )
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=20)
        # The claimed batch's message died with the worker: the sweeper hands it out again.
        later = timezone.now() + dt.timedelta(seconds=settings.EVALUATIONS_BATCH_STALE_SECONDS + 5)
        assert run_sweep(now=later)["requeued"] >= 1
        second = spawn_worker(first.queue, tmp_path / "second.log")
        try:
            done = second.wait_for(
                lambda: Run.objects.filter(pk=run.pk, status__in=["completed", "failed"]).first(),
                timeout=180,
                what="the run to finish on the second worker",
            )
        finally:
            stop(second)
    assert done.status == "completed", done.error
    assert CaseResult.objects.filter(run=run).count() == 24
    assert CaseResult.objects.filter(run=run).values("case").distinct().count() == 24
    assert done.summary["overall"]["token_f1"]["count"] == 24
    assert done.done_cases >= 24 and done.verdict == "pass"
    assert Notification.objects.filter(recipient=owner, verb="evaluation.finished").count() == 1
