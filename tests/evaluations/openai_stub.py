"""A local OpenAI-compatible chat completions server for tests and the demo.

It listens on 127.0.0.1 on a free port in a daemon thread, answers
`POST /v1/chat/completions` (and `GET /v1/models`) deterministically, records
every request it receives and the most requests it ever had in flight at once,
and plays scripted failures on the next requests it receives:

    with OpenAIStub(responder=lambda body: "text") as stub:
        endpoint = Endpoint(base_url=stub.base_url)
        stub.fail_next(status=429, times=1, retry_after=0)   # then answers normally
        stub.slow_next(1.0)                                  # outlasts a short client timeout
        stub.malformed_next()                                # 200 with broken JSON
        stub.reply_next({"choices": []})                     # any raw body and status
        stub.disconnect_next()                               # closes without answering
        ...
        stub.requests[0].headers["authorization"], stub.requests[0].body
        stub.max_in_flight

Scripted steps are consumed in the order requests arrive. To fail one particular
case whatever the arrival order, let the responder raise `StubFailure`:

    def responder(body):
        if "boom" in last_user_message(body):
            raise StubFailure(status=400, message="bad case")
        return "ok"

The `openai_stub` pytest fixture yields a started stub with the default echo responder
(add `"tests.evaluations.openai_stub"` to a conftest's `pytest_plugins`, or import it).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Responder = Callable[[dict], "str | dict"]


def last_user_message(body: Mapping) -> str:
    """The content of the last user message of a chat completions body ('' if none)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def echo(body: Mapping) -> str:
    """The default responder: 'echo: ' followed by the last user message."""
    return f"echo: {last_user_message(body)}"


class StubFailure(Exception):
    """Raised by a responder to answer this request with an OpenAI-style error."""

    def __init__(
        self, status: int = 500, message: str = "", *, retry_after: float | str | None = None
    ):
        super().__init__(message or f"stub failure {status}")
        self.status = status
        self.message = message or f"stub failure {status}"
        self.retry_after = retry_after


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub received it; header names are lower-case."""

    number: int
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any = None  # the parsed JSON body, None when it was not JSON


@dataclass(frozen=True)
class _Step:
    """What to do with one request instead of (or before) answering normally."""

    status: int = 200
    message: str = ""
    retry_after: float | str | None = None
    delay: float = 0.0
    raw: bytes | None = None
    disconnect: bool = False


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    script: deque[_Step] = field(default_factory=deque)
    in_flight: int = 0
    max_in_flight: int = 0


class OpenAIStub:
    """An OpenAI-compatible server on loopback with programmable answers and failures."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        delay: float = 0.0,
        model: str = "stub-model",
        api_key: str | None = None,
    ) -> None:
        """`responder(body)` returns the answer text, or a dict sent as the whole JSON body.

        `delay` holds every answer that long (seconds); with `api_key`, requests without
        `Authorization: Bearer <api_key>` get a 401.
        """
        self.responder = responder or echo
        self.delay = delay
        self.model = model
        self.api_key = api_key
        self._lock = threading.Lock()
        self._state = _State()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> OpenAIStub:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.stub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes slow answers so they give up at once
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Addresses

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("The stub is not started.")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """What an Endpoint's base_url should be, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    # Scripting

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        message: str = "",
    ) -> None:
        """Answer the next `times` requests with an OpenAI-style error (and Retry-After)."""
        self._push(_Step(status=status, message=message, retry_after=retry_after), times)

    def slow_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` answers for `seconds` before answering normally."""
        self._push(_Step(delay=seconds), times)

    def malformed_next(self, *, times: int = 1, body: bytes = b'{"choices": [{"message": ') -> None:
        """Answer the next `times` requests 200 with a body that is not valid JSON."""
        self._push(_Step(raw=body), times)

    def reply_next(self, body: Any, *, status: int = 200, times: int = 1) -> None:
        """Answer the next `times` requests with exactly this body (a dict is sent as JSON)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._push(_Step(status=status, raw=raw), times)

    def disconnect_next(self, *, times: int = 1) -> None:
        """Close the connection of the next `times` requests without answering."""
        self._push(_Step(disconnect=True), times)

    def reset(self) -> None:
        """Forget recorded requests, the in-flight high-water mark and any pending script."""
        with self._lock:
            self._state = _State(in_flight=self._state.in_flight)

    def _push(self, step: _Step, times: int) -> None:
        with self._lock:
            self._state.script.extend([step] * times)

    # What was observed

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order."""
        with self._lock:
            return list(self._state.requests)

    @property
    def bodies(self) -> list[Any]:
        """The parsed JSON bodies of the chat completion requests received so far."""
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being answered at the same time."""
        with self._lock:
            return self._state.max_in_flight

    @property
    def pending_script(self) -> int:
        """Scripted steps not yet consumed."""
        with self._lock:
            return len(self._state.script)

    # Called by the handler threads

    def _arrive(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, body: Any
    ) -> tuple[int, _Step | None]:
        """Record a request, count it in flight and take the next scripted step."""
        with self._lock:
            number = len(self._state.requests) + 1
            self._state.requests.append(RecordedRequest(number, method, path, headers, raw, body))
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)
            step = self._state.script.popleft() if self._state.script else None
            return number, step

    def _leave(self) -> None:
        with self._lock:
            self._state.in_flight -= 1

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the stub is stopping; False when it is."""
        return not self._stopping.wait(seconds) if seconds > 0 else True

    def _completion(self, body: dict, number: int) -> tuple[int, dict]:
        answer = self.responder(body)
        if isinstance(answer, Mapping):
            return 200, dict(answer)
        text = str(answer)
        prompt_words = sum(
            len(str(m.get("content", "")).split())
            for m in body.get("messages") or []
            if isinstance(m, dict)
        )
        completion_words = len(text.split())
        return 200, {
            "id": f"chatcmpl-stub-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion_words,
                "total_tokens": prompt_words + completion_words,
            },
        }


def _error_body(status: int, message: str) -> dict:
    kind = (
        "rate_limit_error"
        if status == 429
        else "server_error"
        if status >= 500
        else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "code": status}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: OpenAIStub

    def handle_error(self, request, client_address) -> None:
        # A client that timed out and hung up is expected here, not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "OpenAIStub/1"

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        stub = self.server.stub
        self._record_and_answer(
            b"",
            lambda body, number: (
                (200, {"object": "list", "data": [{"id": stub.model, "object": "model"}]})
                if self.path.rstrip("/").endswith("/models")
                else (404, _error_body(404, f"No route for GET {self.path}."))
            ),
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        stub = self.server.stub

        def answer(body: Any, number: int) -> tuple[int, dict]:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return 404, _error_body(404, f"No route for POST {self.path}.")
            if not isinstance(body, dict):
                return 400, _error_body(400, "The request body is not a JSON object.")
            return stub._completion(body, number)

        self._record_and_answer(raw, answer)

    def _record_and_answer(
        self, raw: bytes, answer: Callable[[Any, int], tuple[int, dict]]
    ) -> None:
        stub = self.server.stub
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        number, step = stub._arrive(self.command, self.path, headers, raw, body)
        try:
            if not stub._wait(stub.delay + (step.delay if step else 0)):
                return
            if step and step.disconnect:
                self.close_connection = True
                return
            if (
                stub.api_key is not None
                and headers.get("authorization") != f"Bearer {stub.api_key}"
            ):
                self._send(401, _error_body(401, "Incorrect API key provided."))
                return
            if step and step.raw is not None:
                self._send(step.status, step.raw)
                return
            if step and step.status != 200:
                message = step.message or f"Scripted failure {step.status}."
                self._send(step.status, _error_body(step.status, message), step.retry_after)
                return
            try:
                status, payload = answer(body, number)
            except StubFailure as failure:
                status, payload = failure.status, _error_body(failure.status, failure.message)
                self._send(status, payload, failure.retry_after)
                return
            self._send(status, payload)
        finally:
            stub._leave()

    def _send(self, status: int, payload: dict | bytes, retry_after: Any = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def openai_stub():
    """A started OpenAIStub with the echo responder, stopped after the test."""
    with OpenAIStub() as stub:
        yield stub
