"""Validate an uploaded model in a child process that cannot hang, exhaust or call out.

An uploaded ONNX file is untrusted input until it is validated: a 733-byte graph with a `Loop`
of huge trip count runs forever, a `ConstantOfShape` can ask for terabytes. `inspect_bounded`
runs `validate.inspect_artifact` in a fresh interpreter with

- a wall-clock limit (the child is killed when it passes),
- an address-space limit (RLIMIT_AS) and a CPU-time limit (RLIMIT_CPU),
- an environment holding nothing of the server's (no secrets, no database, no proxies) and
  Python's sockets replaced by a refusal before anything is loaded. This blocks the network
  at the Python level only (a native library could still open a socket): it is a bound on
  untrusted *data*, not a kernel sandbox for untrusted code, and ONNX models are data.

and passes the report back as JSON on stdout. A child that exceeds a limit yields a report
with the reason, never an exception.

    python -m apps.evaluations.onnx.sandbox < {"limits": {...}, "request": {...}}
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
# Variables the child may keep: nothing that names a secret, a database or a proxy.
KEPT_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class Limits:
    """What one validation may use."""

    wall_seconds: float = 60
    memory_mb: int = 2048

    @property
    def cpu_seconds(self) -> int:
        return int(self.wall_seconds) + 5


def _limit_self(memory_mb: int, cpu_seconds: int) -> None:
    """In the child, first thing: set in the child rather than by a `preexec_fn`, which is
    unsafe in a worker that has threads."""
    import resource

    memory = int(memory_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_seconds), int(cpu_seconds) + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in KEPT_ENV if name in os.environ}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONNOUSERSITE="1",
        # One thread each: thread pools reserve address space per thread.
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _refused(problem: str, task: str) -> dict[str, Any]:
    return {"task": task, "ok": False, "problems": [problem], "warnings": []}


def inspect_bounded(request: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Run `inspect_artifact(**request)` in a bounded child; return its report as a dict."""
    task = str(request.get("task", ""))
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "apps.evaluations.onnx.sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(ROOT),
            env=_child_env(),
            start_new_session=True,  # its own process group: a timeout kills all it started
        )
    except OSError as exc:
        return _refused(f"Validation could not start: {exc}.", task)
    message = {
        "limits": {"memory_mb": limits.memory_mb, "cpu_seconds": limits.cpu_seconds},
        "request": request,
    }
    try:
        out, err = child.communicate(json.dumps(message).encode(), timeout=limits.wall_seconds)
    except BaseException as exc:
        _kill(child)  # a soft time limit or shutdown in the worker leaves no child behind
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        return _refused(
            f"Validation exceeded the {limits.wall_seconds:g} s time limit: the model runs too "
            "long on a one-text smoke run (a loop with a huge trip count?).",
            task,
        )
    text = err.decode("utf-8", "replace")
    if child.returncode == 0:
        try:
            report = json.loads(out)
        except ValueError:
            return _refused("Validation gave an unreadable answer.", task)
        if isinstance(report, dict) and "ok" in report:
            # ONNX Runtime turns a refused allocation into an ordinary failure: name the limit.
            if _out_of_memory(" ".join(map(str, report.get("problems", [])))):
                report["problems"].insert(0, _over_memory(limits))
            return report
        return _refused("Validation gave an unreadable answer.", task)
    if _out_of_memory(text):
        return _refused(_over_memory(limits), task)
    if child.returncode == -signal.SIGXCPU:
        return _refused(f"Validation exceeded its CPU-time limit ({limits.cpu_seconds} s).", task)
    if child.returncode == -signal.SIGKILL:
        return _refused(
            f"Validation was killed: it exceeded its CPU-time limit ({limits.cpu_seconds} s) "
            f"or the {limits.memory_mb} MB memory limit.",
            task,
        )
    last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
    return _refused(
        f"Validation stopped (exit {child.returncode}): {last[:300] or 'no message'}", task
    )


OUT_OF_MEMORY = ("MemoryError", "bad_alloc", "Failed to allocate", "alloc failed")


def _out_of_memory(text: str) -> bool:
    return any(marker in text for marker in OUT_OF_MEMORY)


def _over_memory(limits: Limits) -> str:
    return (
        f"Validation exceeded the {limits.memory_mb} MB memory limit: the model allocates "
        "more than a scorer may."
    )


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()
    child.communicate()


def _block_network() -> None:
    import socket

    def refused(*args, **kwargs):
        raise OSError("network access is disabled while validating a model")

    class NoSocket(socket.socket):
        # Still a class: `ssl` subclasses socket.socket when it is first imported.
        def __init__(self, *args, **kwargs):
            refused()

    socket.socket = NoSocket  # type: ignore[misc]
    socket.create_connection = refused  # type: ignore[assignment]
    socket.getaddrinfo = refused  # type: ignore[assignment]


def main() -> int:
    message = json.loads(sys.stdin.buffer.read())
    _limit_self(**message["limits"])
    _block_network()
    from apps.evaluations.onnx.validate import inspect_artifact

    try:
        report = inspect_artifact(**message["request"])
    except MemoryError:
        print("MemoryError", file=sys.stderr)
        return 3
    sys.stdout.write(json.dumps(report.to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
