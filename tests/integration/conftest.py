"""A real Celery worker process on the configured broker and the test database."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from aifactory.celery import app

READY_TIMEOUT_SECONDS = 60


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """Handle on the worker process: its private queue and its log."""

    def __init__(self, queue: str, log: Path, process: subprocess.Popen):
        self.queue, self.log, self.process = queue, log, process

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, predicate, timeout: float = 60, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.process.poll() is not None:
                pytest.fail(
                    f"worker exited with {self.process.returncode}:\n{self.output()[-4000:]}"
                )
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; worker log:\n{self.output()[-4000:]}")


def spawn_worker(queue: str, log: Path) -> Worker:
    """Start `celery worker` as a separate process consuming `queue`, and wait until ready."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "AIFACTORY_VAR_DIR": str(settings.VAR_DIR),
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "aifactory",
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "INFO",
        "-Q",
        queue,
        "--hostname",
        f"{queue}-{uuid.uuid4().hex[:4]}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR
        )
    worker = Worker(queue, log, process)
    worker.wait_for(
        lambda: " ready." in worker.output(), READY_TIMEOUT_SECONDS, "the worker to be ready"
    )
    return worker


def stop(worker: Worker) -> None:
    worker.process.terminate()
    try:
        worker.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path):
    """Start `celery worker` as a separate process consuming a queue of its own."""
    queue = f"it-{uuid.uuid4().hex[:10]}"
    app.conf.task_always_eager = False
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    worker = None
    try:
        worker = spawn_worker(queue, tmp_path / "worker.log")
        yield worker
    finally:
        app.conf.task_default_queue = previous_queue
        if worker is not None:
            stop(worker)
