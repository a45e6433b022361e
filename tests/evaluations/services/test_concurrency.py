"""Batches finishing at the same moment on separate connections: exactly one finalization."""

import threading

import pytest
from django.db import connection

from apps.evaluations import services
from apps.evaluations.services import runs as run_services
from tests.evaluations.fixtures import good_outputs

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_last_batches_enqueue_finalization_exactly_once(
    owner, suite, support_prompt, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("row-level locking under real concurrency is what PostgreSQL CI proves")
    run = services.run_start(
        actor=owner, suite=suite, prompt_version=support_prompt.versions.get(number=2), batch_size=3
    )
    services.run_outputs_post(
        actor=owner, run=run, items=enumerate(good_outputs(), 1), complete=True, enqueue=False
    )
    finalizations = []
    monkeypatch.setattr(
        run_services, "_enqueue_finalize", lambda r, q="": finalizations.append(r.pk)
    )
    batch_ids = list(run.batches.values_list("pk", flat=True))
    start = threading.Barrier(len(batch_ids))
    outcomes, errors = [], []

    def work(batch_id):
        try:
            start.wait()
            outcomes.append(run_services.run_batch_execute(batch_id))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(pk,)) for pk in batch_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert outcomes == ["done"] * 8
    assert finalizations == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.done_batches, run.done_cases) == ("finalizing", 8, 24)
    results = [run_services.run_finalize(run.pk) for _ in range(2)]
    assert results == ["finalized", "skipped"]
