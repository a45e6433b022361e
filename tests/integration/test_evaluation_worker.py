"""A small evaluation travels through the broker to a real worker process, which scores it with
the real default encoder and finalizes it exactly once."""

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from apps.evaluations import services
from apps.evaluations.models import CaseResult, Run
from apps.evaluations.services.artifacts import MODELS_DIR
from tests.evaluations.fixtures import case_rows, jsonl

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shared_encoder(default_pack_build):
    """The default pack under the MEDIA_ROOT the worker process uses too."""
    target = Path(settings.MEDIA_ROOT) / MODELS_DIR
    shutil.copytree(default_pack_build / MODELS_DIR, target, dirs_exist_ok=True)
    return services.artifact_register_default_pack()


def test_a_real_worker_scores_and_finalizes_a_run(
    celery_worker_process, shared_encoder, support_prompt, owner
):
    rows = case_rows(12)
    dataset = services.dataset_create(
        actor=owner, name="Support", charter=support_prompt.charter, prompt=support_prompt
    )
    services.dataset_version_upload(
        actor=owner, dataset=dataset, stream=jsonl(rows), filename="c.jsonl"
    )
    suite = services.suite_create(
        actor=owner,
        charter=support_prompt.charter,
        fields={
            "name": "Grounding",
            "dataset_version": dataset.latest_version,
            "scorers": [{"scorer": "semantic_similarity"}, {"scorer": "grounded_coverage"}],
        },
    )
    services.threshold_set(
        actor=owner,
        suite=suite,
        fields={
            "metric": "semantic_similarity",
            "aggregate": "mean",
            "comparator": ">=",
            "value": 0.8,
        },
    )
    with transaction.atomic():
        run = services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=support_prompt.versions.get(number=2),
            batch_size=5,
        )
        outputs = [{"id": r["id"], "output": r["expected"]} for r in rows]
        services.run_outputs_post(actor=owner, run=run, items=enumerate(outputs, 1), complete=True)

    done = celery_worker_process.wait_for(
        lambda: Run.objects.filter(pk=run.pk, status__in=["completed", "failed"]).first(),
        timeout=120,
        what="the run to finish",
    )
    assert done.status == "completed", done.error
    assert done.verdict == "pass"
    assert (done.done_batches, done.total_batches) == (3, 3)
    assert CaseResult.objects.filter(run=run).count() == 12
    assert done.summary["overall"]["semantic_similarity"]["mean"] > 0.99
    assert done.summary["overall"]["grounded_coverage"]["mean"] > 0.9
    assert done.scorer_artifacts == {"all-minilm-l6-v2": shared_encoder.sha256}
    celery_worker_process.wait_for(
        lambda: "'finalized'" in celery_worker_process.output(), what="the finalize task's log"
    )
    assert "runs on CPUExecutionProvider" in celery_worker_process.output()
