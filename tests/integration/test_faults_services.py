"""Faults in the services around the workers: the broker restarted mid-run, a database
connection dropped mid-batch, and the web process killed in the middle of an upload."""

import contextlib
import datetime as dt
import json
import os
import socket
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.core.models import Notification
from apps.core.services import api_key_create
from apps.evaluations import services
from apps.evaluations.models import CaseResult, DatasetVersion, ModelArtifact, Run, RunBatch
from apps.evaluations.services.runs import run_sweep
from tests.evaluations.fixtures import ANSWERS, good_outputs
from tests.evaluations.openai_stub import OpenAIStub, last_user_message
from tests.factories import approved_endpoint
from tests.integration.conftest import (
    WebServer,
    app_broker,
    default_queue,
    server_env,
    spawn_worker,
    stop,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

requires_postgresql = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="drops a server connection with pg_terminate_backend: PostgreSQL only (CI runs it "
    "there); an SQLite database is a file with no connection to drop",
)


def _answer(body):
    return ANSWERS[last_user_message(body).rsplit(" ", 1)[-1]]


def _generated_run(owner, suite, support_prompt, stub, batch_size=6):
    """A 24-case run whose outputs come from the stub endpoint, one request at a time."""
    return services.run_start(
        actor=owner,
        suite=suite,
        prompt_version=support_prompt.versions.get(number=2),
        output_source="generated",
        endpoint={"slug": approved_endpoint(stub.base_url).slug, "concurrency": 1},
        batch_size=batch_size,
    )


def _finished(run):
    return lambda: Run.objects.filter(pk=run.pk, status__in=["completed", "failed"]).first()


def _assert_completed_once(run, owner, cases=24):
    done = Run.objects.get(pk=run.pk)
    assert done.status == "completed", done.error
    assert CaseResult.objects.filter(run=run).count() == cases
    assert CaseResult.objects.filter(run=run).values("case").distinct().count() == cases
    assert (done.done_cases, done.done_batches) == (cases, done.total_batches)
    assert done.summary["overall"]["token_f1"]["count"] == cases
    assert not RunBatch.objects.filter(run=run).exclude(status="done").exists()
    assert Notification.objects.filter(recipient=owner, verb="evaluation.finished").count() == 1
    return done


def _queued_messages(server, queue: str) -> int:
    client = redis.Redis(port=server.port)
    keys = [key for key in client.scan_iter(f"{queue}*") if client.type(key) == b"list"]
    return sum(client.llen(key) for key in keys)


def test_a_redis_restart_mid_run_loses_queued_batches_and_the_sweeper_requeues_them(
    private_redis, tmp_path, owner, suite, support_prompt
):
    # The shared Redis must not be restarted, so the run goes through a private one whatever
    # broker this session is configured with (the embedded filesystem broker included).
    queue = f"it-{uuid.uuid4().hex[:10]}"
    with app_broker(private_redis.url()), default_queue(queue):
        worker = spawn_worker(queue, tmp_path / "worker.log", broker_url=private_redis.url())
        try:
            with OpenAIStub(responder=_answer, delay=0.4) as stub:
                run = _generated_run(owner, suite, support_prompt, stub)
                worker.wait_for(
                    lambda: RunBatch.objects.filter(run=run, status="claimed").exists(),
                    what="a batch to be claimed",
                )
                lost = _queued_messages(private_redis, queue)
                assert lost >= 1
                private_redis.restart()
                # No persistence: the batches still waiting in the broker are gone.
                assert _queued_messages(private_redis, queue) == 0
                worker.wait_for(
                    lambda: worker.output().count("Connected to redis://") >= 2,
                    what="the worker to reconnect to the restarted broker",
                )
                # The batch in hand is finished and written; nothing is left to deliver the rest.
                worker.wait_for(
                    lambda: not RunBatch.objects.filter(run=run, status="claimed").exists(),
                    what="the batch in hand to be written",
                )
                waiting = Run.objects.get(pk=run.pk)
                assert waiting.status == "scoring" and waiting.done_batches == 4 - lost
                assert RunBatch.objects.filter(run=run, status="pending").count() == lost

                later = timezone.now() + dt.timedelta(
                    seconds=settings.EVALUATIONS_BATCH_STALE_SECONDS + 5
                )
                assert run_sweep(now=later)["requeued"] == lost
                worker.wait_for(_finished(run), timeout=60, what="the run to finish")
        finally:
            stop(worker)
    _assert_completed_once(run, owner)


@contextmanager
def _side_connection():
    """A second connection to the test database that holds row locks for the test."""
    db = connection.settings_dict
    side = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
    )
    try:
        yield side
    finally:
        side.close()


def _hold_batch_row(side, batch_id: int) -> str:
    """Lock the batch row against updates (not against reads or foreign-key checks)."""
    row = side.execute(
        "SELECT status FROM evaluations_runbatch WHERE id = %s FOR NO KEY UPDATE", [batch_id]
    ).fetchone()
    return row[0]


def _waiting_on(side) -> tuple[int, str] | None:
    """(pid, statement) of the backend waiting for a lock `side` holds, if any."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            [side.info.backend_pid],
        )
        return cursor.fetchone()


def _holds_write_lock(pid: int, table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.pid = %s AND c.relname = %s AND l.mode = 'RowExclusiveLock'",
            [pid, table],
        )
        return cursor.fetchone() is not None


def _drop(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone()[0]


@requires_postgresql
def test_a_connection_dropped_while_results_are_written_leaves_nothing_and_the_batch_is_retried(
    celery_worker_process, owner, suite, support_prompt
):
    worker = celery_worker_process
    with OpenAIStub(responder=_answer, delay=0.4) as stub, _side_connection() as side:
        run = _generated_run(owner, suite, support_prompt, stub)
        while True:  # catch a batch between its claim and its write
            batch = worker.wait_for(
                lambda: RunBatch.objects.filter(run=run, status="claimed").first(),
                what="a batch to be claimed",
            )
            if _hold_batch_row(side, batch.pk) == "claimed":
                break
            side.rollback()
        pid, statement = worker.wait_for(
            lambda: _waiting_on(side), what="the worker to reach the batch's write"
        )
        # Inside one transaction the worker has inserted the batch's results and now waits to
        # mark the batch done: drop its connection right there.
        assert "evaluations_runbatch" in statement
        assert _holds_write_lock(pid, "evaluations_caseresult")
        _drop(pid)
        side.rollback()
        worker.wait_for(_finished(run), timeout=60, what="the run to finish")
    _assert_completed_once(run, owner)
    retried = RunBatch.objects.get(pk=batch.pk)
    assert retried.attempts == 2 and retried.error == ""
    assert "terminating connection due to administrator command" in worker.output()


@requires_postgresql
@pytest.mark.parametrize(
    ("held_row", "attempts"),
    [
        # The claim itself waits: it never happened, and the task tries the claim again.
        ("evaluations_runbatch", 1),
        # The claim is in, then marking the run as scoring waits: the batch is handed back.
        ("evaluations_run", 2),
    ],
)
def test_a_connection_dropped_as_a_worker_takes_up_a_batch_is_retried(
    held_row, attempts, tmp_path, owner, suite, support_prompt
):
    run = services.run_start(
        actor=owner, suite=suite, prompt_version=support_prompt.versions.get(number=2), batch_size=6
    )
    first = run.batches.get(index=0)
    queue = f"it-{uuid.uuid4().hex[:10]}"
    with default_queue(queue), _side_connection() as side:
        services.run_outputs_post(
            actor=owner, run=run, items=enumerate(good_outputs(), 1), complete=True
        )
        # The batches are queued; hold one row before any worker is there to take them.
        held = first.pk if held_row == "evaluations_runbatch" else run.pk
        side.execute(f"SELECT 1 FROM {held_row} WHERE id = %s FOR NO KEY UPDATE", [held])
        worker = spawn_worker(queue, tmp_path / "worker.log")
        try:
            pid, statement = worker.wait_for(
                lambda: _waiting_on(side), what="the worker to wait on the held row"
            )
            assert f'UPDATE "{held_row}"' in statement
            _drop(pid)
            side.rollback()
            worker.wait_for(_finished(run), timeout=60, what="the run to finish")
        finally:
            stop(worker)
    done = _assert_completed_once(run, owner)
    assert done.verdict == "pass"
    assert RunBatch.objects.get(pk=first.pk).attempts == attempts


def _worker_pids(master: int) -> list[int]:
    """The gunicorn workers: processes whose parent is the master."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    return pids


def _spooling_to(folder: Path, pids: list[int]) -> bool:
    """Whether one of `pids` holds a file open in `folder` (an upload being spooled)."""
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(f"{folder}/"):
                    return True
    return False


def _multipart_head(boundary: str, fields: dict[str, str], file_field: str, filename: str):
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    return "".join(parts).encode()


UPLOADS = {
    # what: (path, form fields, file field, file name, first bytes of the file)
    "dataset": ("/api/v1/evaluations/datasets/support-cases/versions/", {}, "file", "cases.jsonl",
                b'{"id": "c1", "variables": {"message": "hello"}, "expected": "hi"}\n'),
    "model": ("/api/v1/evaluations/artifacts/",
              {"name": "Cut short", "task": "sequence_classification", "charter": "support-reply-drafting"},
              "model_file", "model.onnx", b"\x08\x07"),
}  # fmt: skip


@pytest.mark.parametrize("what", UPLOADS)
def test_the_web_process_killed_during_an_upload_leaves_nothing_behind(
    what, tmp_path, owner, dataset
):
    path, fields, file_field, filename, first = UPLOADS[what]
    var_dir, upload_tmp = tmp_path / "web-var", tmp_path / "upload-tmp"
    upload_tmp.mkdir()
    env = {**server_env(var_dir, tmp_path), "AIFACTORY_UPLOAD_TEMP_DIR": str(upload_tmp)}
    server = WebServer(env, tmp_path / "web.log")
    _, key = api_key_create(user=owner, name="uploads")
    auth = {"Authorization": f"Api-Key {key}"}
    versions = DatasetVersion.objects.filter(dataset=dataset).count()
    boundary = uuid.uuid4().hex
    head = _multipart_head(boundary, fields, file_field, filename)
    declared = len(head) + 64 * 1024 * 1024  # a 64 MB upload, of which 8 MB arrive
    server.start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth['Authorization']}"
            f"\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        sock.sendall(request + head + first)
        chunk = b"\x00" * (1024 * 1024)
        for _ in range(8):
            sock.sendall(chunk)
        workers = _worker_pids(server.process.pid)
        wait_until(lambda: _spooling_to(upload_tmp, workers), 30, "the upload to spool to disk")
        server.kill()
        # The client is cut off without an answer: the upload visibly did not complete.
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
        sock.close()
        assert answer == b""
        # No partial file in the web's temporary folder or in storage, no rows.
        assert list(upload_tmp.iterdir()) == []
        media = var_dir / "media"
        assert [p for p in media.rglob("*") if p.is_file()] == [] if media.exists() else True
        assert DatasetVersion.objects.filter(dataset=dataset).count() == versions
        assert not ModelArtifact.objects.exists()

        server.start()  # restarted, the server shows the data as it was before the upload
        status, _, body = server.request(
            "GET", "/api/v1/evaluations/datasets/support-cases/versions/", headers=auth
        )
        assert status == 200 and len(json.loads(body)) == versions
        status, _, body = server.request("GET", "/api/v1/evaluations/artifacts/", headers=auth)
        assert status == 200 and json.loads(body)["count"] == 0
    finally:
        server.stop()
