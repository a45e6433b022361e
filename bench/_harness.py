"""Pieces shared by benchmarks that run the product as an operator does.

Child processes that never outlive the benchmark, an HTTP client with a cookie jar, a paced
load loop, and the figures of one kind of request. Not a benchmark itself (the Makefile's
`bench` target runs it as a script, which does nothing).
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1


def _child_setup(nice: int, death_signal: int) -> Callable[[], None]:
    """What runs in the child before exec (after setsid): send it `death_signal` when the
    benchmark itself dies (even by SIGKILL), and lower its priority by `nice`."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, death_signal)
        if nice:
            os.nice(nice)
            # With autogroup scheduling (Linux's default for desktops and many servers) a
            # process's nice only counts inside its session's group; the group's own nice
            # weighs it against the other sessions, as CPUWeight= does for a systemd unit.
            with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
                group.write(str(nice))

    return setup


def exit_on_sigterm() -> None:
    """Turn SIGTERM (and SIGHUP: the terminal went away) into SystemExit so that `finally` and
    `with` blocks stop the children."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Children:
    """Child processes, each in its own process group, all stopped when the block ends.

    Ctrl-C (which reaches only the benchmark, the children having their own groups),
    SIGTERM (with `exit_on_sigterm`) and errors all leave through `__exit__`; a SIGKILLed
    benchmark takes its children down through PR_SET_PDEATHSIG.
    """

    def __init__(self, grace: float = 20.0) -> None:
        self.grace = grace
        self.running: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(
        self,
        name: str,
        command: list[str],
        *,
        env: dict,
        log: Path,
        ready: Callable[[], bool],
        timeout: float = 90.0,
        nice: int = 0,
        death_signal: int = signal.SIGTERM,
    ) -> subprocess.Popen:
        """Start `command` with its output in `log`; return once `ready()` holds, or exit.

        `death_signal` is what the child gets if the benchmark is killed outright: SIGQUIT
        makes a Celery worker stop at once (SIGTERM would let it finish its task first).
        """
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup(nice, death_signal),
            )
        self.running.append((name, process))
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None:
                sys.exit(f"{name} exited with status {process.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                sys.exit(f"{name} was not ready after {timeout:.0f} s:\n{tail(log)}")
            time.sleep(0.2)
        return process

    def exited(self) -> list[str]:
        """What has stopped on its own: '<name> (status <code>)' for each such child."""
        return [
            f"{name} (status {process.returncode})"
            for name, process in self.running
            if process.poll() is not None
        ]

    def stop(self) -> None:
        """SIGTERM every group (newest first), wait up to `grace`, then SIGKILL what is left.

        The whole group gets SIGTERM, so a Celery worker's pool child stops at once rather than
        after its batch (its log then shows a WorkerLostError). A second Ctrl-C or SIGTERM
        while stopping is ignored: it would otherwise cut the clean-up short.
        """
        shielded = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                shielded[signum] = signal.signal(signum, signal.SIG_IGN)
        try:
            for _, process in reversed(self.running):
                self._signal(process, signal.SIGTERM)
            deadline = time.monotonic() + self.grace
            for _, process in reversed(self.running):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                # The leader may be gone while a forked member of its group lingers.
                self._signal(process, signal.SIGKILL)
                process.wait()
            self.running.clear()
        finally:
            for signum, handler in shielded.items():
                signal.signal(signum, handler)

    @staticmethod
    def _signal(process: subprocess.Popen, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(groups: Iterable[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by the live processes of each process group,
    and under key 0 by the whole machine (Linux /proc; zeros elsewhere)."""
    wanted = set(groups)
    used = dict.fromkeys(wanted, 0.0)
    used[0] = 0.0
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
        used[0] = (sum(map(int, fields)) - int(fields[3]) - int(fields[4])) / TICKS  # not idle
    except (OSError, ValueError, IndexError):
        return used
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                # The command name may hold spaces: fields after its closing parenthesis.
                after = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        group = int(after[2])
        if group in wanted:
            used[group] += (int(after[11]) + int(after[12])) / TICKS
    return used


class Client:
    """One HTTP/1.1 connection to the loopback server with a cookie jar; reopened after errors."""

    def __init__(
        self,
        port: int,
        headers: dict | None = None,
        cookies: dict | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.headers = dict(headers or {})
        self.cookies = dict(cookies or {})
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        sent = {**self.headers, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            self.connection.request(method, path, body=body, headers=sent)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # the next request opens a new connection
            raise
        for cookie in response.msg.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response.status, data

    def close(self) -> None:
        self.connection.close()


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Workload:
    """Latencies, status codes and errors of one kind of request, from any number of threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.errors = 0
        self.statuses: Counter = Counter()
        self.samples: list[str] = []  # the first few errors, to say what went wrong
        self.began: float | None = None
        self.ended: float | None = None
        self.lock = threading.Lock()

    def call(
        self, send: Callable[[], tuple[int, bytes]], expect: Iterable[int] = (200,)
    ) -> tuple[int, bytes] | None:
        """Time one request; a status outside `expect` or a broken connection is an error."""
        started = time.perf_counter()
        try:
            status, body = send()
        except (OSError, http.client.HTTPException) as exc:
            self._record(time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}")
            return None
        problem = None if status in expect else f"HTTP {status}: {body[:300]!r}"
        self._record(time.perf_counter() - started, status, problem)
        return status, body

    def fail(self, problem: str) -> None:
        """Count an error found after the response (a run that failed, a body that is wrong)."""
        with self.lock:
            self.errors += 1
            if len(self.samples) < 3:
                self.samples.append(problem)

    def _record(self, seconds: float, status: int | None, problem: str | None) -> None:
        now = time.monotonic()
        with self.lock:
            self.began = self.began or now - seconds
            self.ended = now
            self.statuses[status or "error"] += 1
            if problem is None:
                self.latencies.append(seconds)
            else:
                self.errors += 1
                if len(self.samples) < 3:
                    self.samples.append(problem)

    def figures(self, seconds: float | None = None) -> dict:
        """Requests per second over `seconds` (default: first to last request), p50, p99 in ms."""
        ordered = sorted(self.latencies)
        span = seconds or ((self.ended - self.began) if self.began and self.ended else 0.0)
        total = len(ordered) + self.errors
        return {
            "requests": total,
            "rps": total / span if span else 0.0,
            "p50_ms": percentile(ordered, 0.50) * 1000,
            "p99_ms": percentile(ordered, 0.99) * 1000,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "error_samples": list(self.samples),
        }


def paced(
    rate: float, stop: threading.Event, step: Callable[[], object], offset: float = 0.0
) -> None:
    """Call `step` `rate` times a second until `stop` is set, the first after `offset` seconds
    (so that several paced threads interleave); a slow step delays the next one but never
    causes a catch-up burst (the achieved rate shows the shortfall)."""
    interval = 1.0 / rate
    if stop.wait(offset):
        return
    due = time.monotonic()
    while not stop.is_set():
        step()
        due += interval
        now = time.monotonic()
        if due < now:
            due = now
        else:
            stop.wait(due - now)


def closed_loop(stop: threading.Event, step: Callable[[], bool]) -> None:
    """Call `step` back to back until `stop` is set; after a failed step (False) pause a
    little, so that a client of a server that is gone does not spin."""
    while not stop.is_set():
        if not step():
            stop.wait(0.05)


class Budget:
    """At most `count` of something, taken from any number of threads."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


class Background(threading.Thread):
    """A daemon thread that keeps what its target raised in `error` (a load thread that died
    would otherwise only print a traceback and leave its workload short, not in error)."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.work = target
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:  # reported by the benchmark as an error
            self.error = f"{type(exc).__name__}: {exc}"
            raise


def background(targets: Iterable[Callable[[], object]]) -> list[Background]:
    """Start each target on a daemon thread (a stuck request cannot keep the benchmark alive)."""
    threads = [Background(t) for t in targets]
    for thread in threads:
        thread.start()
    return threads
