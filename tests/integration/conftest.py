"""A real Celery worker process on the configured broker and the test database."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import kombu.pools
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


def spawn_worker(queue: str, log: Path, broker_url: str = "") -> Worker:
    """Start `celery worker` as a separate process consuming `queue`, and wait until ready."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker_url or settings.CELERY_BROKER_URL,
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


class RedisServer:
    """A private, memory-only `redis-server` on a free port that a test may kill and restart."""

    BINARY = "/usr/bin/redis-server"

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_port(), None
        folder.mkdir(parents=True, exist_ok=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server") or self.BINARY
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        with (self.folder / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._answers, 20, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            log = (self.folder / "redis.log").read_text(errors="replace")
            pytest.fail(f"redis-server exited with {self.process.returncode}:\n{log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: everything the server held in memory is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=20)

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own: it can be killed without touching the shared one."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _reset_producer_pools() -> None:
    """Close this process's broker connections and forget them, kombu's shared registry
    included (it would hand the closed pools out again to the next test)."""
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def app_broker(url: str):
    """Publish from this process to `url` for the duration (a Redis URL: no transport options).

    The write and read URLs are set because a CELERY_BROKER_URL in the environment takes
    precedence over `broker_url` in Celery's configuration."""
    names = ("broker_write_url", "broker_read_url", "broker_transport_options")
    previous = {name: app.conf.get(name) for name in names}
    _reset_producer_pools()
    app.conf.update(broker_write_url=url, broker_read_url=url, broker_transport_options={})
    try:
        yield
    finally:
        _reset_producer_pools()
        app.conf.update(previous)


@contextmanager
def default_queue(queue: str):
    """Send this process's tasks to `queue` and run them on a worker, not eagerly."""
    previous = (app.conf.task_default_queue, app.conf.task_always_eager)
    app.conf.task_default_queue, app.conf.task_always_eager = queue, False
    try:
        yield
    finally:
        app.conf.task_default_queue, app.conf.task_always_eager = previous


def server_env(var_dir: Path, tmp_dir: Path) -> dict[str, str]:
    """The environment of a web process on the test database, with its own var and temp dirs."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aifactory.settings.base",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "AIFACTORY_VAR_DIR": str(var_dir),
        "TMPDIR": str(tmp_dir),
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "PYTHONUNBUFFERED": "1",
    }


class WebServer:
    """gunicorn serving `aifactory.wsgi` (as deployed) in a process group of its own."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 2):
        self.env, self.log, self.workers = env, log, workers
        self.port, self.process = free_port(), None

    def start(self) -> None:
        command = [sys.executable, "-m", "gunicorn", "aifactory.wsgi"]
        command += ["--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers)]
        command += ["--timeout", "120"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=settings.BASE_DIR,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._answers, READY_TIMEOUT_SECONDS, "the web server to answer")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            log = self.log.read_text(errors="replace")
            pytest.fail(f"gunicorn exited with {self.process.returncode}:\n{log[-4000:]}")
        try:
            return self.request("GET", "/accounts/login/")[0] == 200
        except OSError:
            return False

    def request(self, method: str, path: str, headers=None, body=None):
        """(status, headers, body) of one request on a fresh connection."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
