"""Generate outputs for evaluation cases from an OpenAI-compatible chat completions endpoint.

A pure module, no database: render a prompt version with a case's variables
(`build_messages`), shape the request body (`build_request`), send it with retries
(`complete`), or send many at once with bounded concurrency (`generate_many`).
Only the standard library talks HTTP, so the air-gapped install needs nothing more, and only
through the egress opener (apps/core/egress.py): the endpoint's own host, its checked address,
no redirect to another host, no proxy from the environment. Callers get an `Endpoint` from the
model registry (`from_target`), never from a URL a user typed.

Every failure of one case is a `GenerationError` with a message fit to store next to
the case (`RunOutput.error`); one case failing never stops the others.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apps.core import egress
from apps.prompts import rendering

logger = logging.getLogger(__name__)

# Request parameters of the OpenAI chat completions API copied from a version's
# model_config. Anything else is dropped: model_config also carries provider-specific
# notes, and strict servers answer 400 to unknown fields, which would fail every case.
# `stream` and `n` are left out on purpose: we read one complete choice.
REQUEST_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
)

# Statuses worth another attempt: request timeout, rate limit and server-side errors.
RETRYABLE_STATUSES = frozenset({408, 429})
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 30.0
MAX_ERROR_CHARS = 500
USER_AGENT = "aifactory-evaluations"


class GenerationError(Exception):
    """One case could not be generated; `message` says why, `status` is the last HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 0,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.attempts = attempts
        self.retryable = retryable


class RenderError(GenerationError):
    """The case's variables do not render the prompt; `variables` names the ones at fault."""

    def __init__(self, message: str, *, problems: Sequence[rendering.TemplateProblem] = ()):
        super().__init__(message)
        self.problems = list(problems)
        self.variables = [p.variable for p in self.problems if p.variable]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call an OpenAI-compatible server; `base_url` ends before /chat/completions."""

    base_url: str
    api_key: str = field(default="", repr=False)
    model: str = ""
    timeout_s: float = 30
    max_retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 4
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    opener: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.base_url.strip())
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(
                f"Endpoint base URL must be an http:// or https:// URL, not {self.base_url!r}."
            )
        if self.timeout_s <= 0:
            raise ValueError("Endpoint timeout must be more than 0 seconds.")
        if self.max_retries < 0:
            raise ValueError("Endpoint max_retries cannot be negative.")
        if self.backoff_s < 0:
            raise ValueError("Endpoint backoff cannot be negative.")
        if self.concurrency < 1:
            raise ValueError("Endpoint concurrency must be at least 1.")
        object.__setattr__(self, "base_url", self.base_url.strip().rstrip("/"))
        object.__setattr__(self, "extra_headers", dict(self.extra_headers))

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def public(self) -> dict[str, Any]:
        """The settings safe to store on a run: no API key, no header values."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "backoff_s": self.backoff_s,
            "concurrency": self.concurrency,
            "extra_headers": sorted(self.extra_headers),
        }


def from_target(target) -> Endpoint:
    """The endpoint to call for a registry `CallTarget` (apps.registry.services.call_target)."""
    return Endpoint(
        base_url=target.base_url,
        api_key=target.api_key,
        model=target.model,
        timeout_s=target.timeout_s,
        max_retries=target.max_retries,
        concurrency=target.concurrency,
        opener=target.opener,
    )


@dataclass(frozen=True)
class Completion:
    """One generated answer; `latency_ms` times the successful attempt only, not the backoff."""

    text: str
    finish_reason: str
    usage: dict
    latency_ms: float
    attempts: int
    model: str = ""


def build_messages(
    template_kind: str,
    messages: Sequence[Mapping],
    text: str,
    variables_declared: Sequence[Mapping],
    case_variables: Mapping[str, object],
) -> list[dict[str, str]]:
    """Render a version's template with one case's variables into chat messages.

    A text template becomes a single user message. Case variables the version does not
    declare are ignored, since one dataset serves several versions of a prompt.
    """
    declared = {str(v.get("name")) for v in variables_declared}
    values = {name: value for name, value in case_variables.items() if name in declared}
    if template_kind == "text":
        roles = ["user"]
        sources = [("text", text or "")]
    elif template_kind == "chat":
        roles = [str(m.get("role", "user")) for m in messages]
        sources = [
            (f"messages[{i}] ({role})", str(m.get("content", "")))
            for i, (role, m) in enumerate(zip(roles, messages, strict=True))
        ]
    else:
        raise RenderError(f"Unknown template kind {template_kind!r}; expected 'chat' or 'text'.")
    try:
        rendered = rendering.render_many(sources, values, declared=variables_declared)
    except rendering.TemplateError as exc:
        raise RenderError(
            f"The prompt could not be rendered for this case: {exc}", problems=exc.problems
        ) from None
    return [
        {"role": role, "content": content} for role, content in zip(roles, rendered, strict=True)
    ]


def build_request(
    messages: Sequence[Mapping], model_config: Mapping[str, Any], endpoint: Endpoint
) -> dict[str, Any]:
    """The chat completions body: the messages, the model and the known `REQUEST_PARAMS`.

    The endpoint's model, when the run names one, wins over the version's
    `model_config["model"]`: the run says which server and model it evaluates on. With
    neither, the body names no model and the server uses its default (llama.cpp, vLLM).
    """
    payload: dict[str, Any] = {}
    model = endpoint.model or model_config.get("model")
    if model:
        payload["model"] = model
    payload["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
    for key in REQUEST_PARAMS:
        if key in model_config and model_config[key] is not None:
            payload[key] = model_config[key]
    return payload


def complete(
    endpoint: Endpoint,
    payload: Mapping[str, Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
    opener: urllib.request.OpenerDirector | None = None,
) -> Completion:
    """POST one chat completion, retrying transient failures; raise GenerationError otherwise.

    Connection errors, timeouts, 408, 429 and 5xx are retried up to `endpoint.max_retries`
    times (so at most 1 + max_retries attempts) with exponential backoff and jitter; a 429's
    Retry-After is honoured up to MAX_RETRY_AFTER_S. Other 4xx and unreadable answers fail
    at once, and so does an address the egress rules refuse. `opener` defaults to the
    endpoint's, else an egress opener for public addresses of the endpoint's host only.
    """
    try:
        data = json.dumps(payload).encode()
    except (TypeError, ValueError) as exc:
        raise GenerationError(f"The request body is not JSON: {exc}") from None
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    headers.update(endpoint.extra_headers)
    opener = opener or endpoint.opener or egress.build_opener(base_url=endpoint.base_url)

    attempt = 0
    while True:
        attempt += 1
        request = urllib.request.Request(endpoint.url, data=data, headers=headers, method="POST")
        started = time.perf_counter()
        try:
            with opener.open(request, timeout=endpoint.timeout_s) as response:
                body = response.read()
            latency_ms = (time.perf_counter() - started) * 1000
        except egress.EgressRefused as exc:
            raise GenerationError(
                f"Refused to contact the endpoint: {exc.message}", attempts=attempt
            ) from None
        except urllib.error.HTTPError as exc:
            failure = _http_failure(exc, attempt)
            retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut off
            failure = GenerationError(
                f"Could not reach {endpoint.url}: {_reason(exc, endpoint)}",
                attempts=attempt,
                retryable=True,
            )
            retry_after = None
        else:
            return _parse(body, latency_ms=latency_ms, attempts=attempt)

        if not failure.retryable:
            raise failure
        if attempt > endpoint.max_retries:
            raise GenerationError(
                f"Gave up after {attempt} attempts; last: {failure.message}",
                status=failure.status,
                attempts=attempt,
                retryable=True,
            )
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER_S)
        else:
            base = min(endpoint.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
            delay = base * random.uniform(0.5, 1.0)  # jitter spreads concurrent retries
        sleep(delay)


def generate_many(
    endpoint: Endpoint,
    items: Iterable[tuple[Hashable, Mapping[str, Any]]],
    *,
    on_result: Callable[[Hashable, Completion | GenerationError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    opener: urllib.request.OpenerDirector | None = None,
) -> dict[Hashable, Completion | GenerationError]:
    """Complete every (key, payload) with at most `endpoint.concurrency` requests in flight.

    Returns each key's Completion or GenerationError. `on_result(key, result)` is called in
    the calling thread as each one finishes (so it may use the database connection); if it
    raises, requests not yet started are cancelled and the exception propagates.
    Items are read lazily, a few ahead of the requests in flight.
    """
    results: dict[Hashable, Completion | GenerationError] = {}
    seen: set[Hashable] = set()
    pending: dict[Future, Hashable] = {}
    source = iter(items)
    ahead = endpoint.concurrency * 2

    def run_one(payload: Mapping[str, Any]) -> Completion | GenerationError:
        try:
            return complete(endpoint, payload, sleep=sleep, opener=opener)
        except GenerationError as exc:
            return exc

    with ThreadPoolExecutor(
        max_workers=endpoint.concurrency, thread_name_prefix="generation"
    ) as pool:
        try:
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < ahead:
                    try:
                        key, payload = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    if key in seen:
                        raise ValueError(f"Duplicate case key {key!r}.")
                    seen.add(key)
                    pending[pool.submit(run_one, payload)] = key
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    key = pending.pop(future)
                    results[key] = _outcome(future, key)
                    if on_result is not None:
                        on_result(key, results[key])
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return results


def _outcome(future: Future, key: Hashable) -> Completion | GenerationError:
    try:
        return future.result()
    except Exception as exc:  # a bug must cost one case, not the whole batch
        logger.exception("Generation for case %r failed unexpectedly", key)
        return GenerationError(f"Unexpected error: {type(exc).__name__}: {exc}")


def _http_failure(exc: urllib.error.HTTPError, attempt: int) -> GenerationError:
    try:
        raw = exc.read()
    except (OSError, ValueError, http.client.HTTPException):
        raw = b""
    finally:
        exc.close()
    detail = _server_message(raw) or exc.reason or "no details"
    status = exc.code
    return GenerationError(
        f"HTTP {status} from the endpoint: {detail}",
        status=status,
        attempts=attempt,
        retryable=status in RETRYABLE_STATUSES or status >= 500,
    )


def _server_message(raw: bytes) -> str:
    """The error message from an error body: OpenAI's {"error": {"message"}}, or the text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:MAX_ERROR_CHARS]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail")
            if message:
                return str(message)[:MAX_ERROR_CHARS]
        elif isinstance(error, str) and error:
            return error[:MAX_ERROR_CHARS]
        if isinstance(body.get("detail"), str):
            return body["detail"][:MAX_ERROR_CHARS]
    return text[:MAX_ERROR_CHARS]


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _reason(exc: BaseException, endpoint: Endpoint) -> str:
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"timed out after {endpoint.timeout_s:g} s"
    return str(reason) or type(reason).__name__


def _parse(body: bytes, *, latency_ms: float, attempts: int) -> Completion:
    def fail(message: str) -> GenerationError:
        return GenerationError(f"Unreadable answer from the endpoint: {message}", attempts=attempts)

    try:
        data = json.loads(body)
    except ValueError:
        snippet = body[:120].decode("utf-8", "replace")
        raise fail(f"not JSON ({snippet!r})") from None
    if not isinstance(data, dict):
        raise fail("expected a JSON object.")
    if "error" in data and not data.get("choices"):
        raise fail(_server_message(body))
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise fail("no choices.")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise fail("the first choice has no message.")
    content = message.get("content")
    if isinstance(content, list):  # content parts, as some servers return
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        if message.get("tool_calls"):
            raise fail("the model answered with tool calls and no text.")
        raise fail("the first choice's message has no content.")
    usage = data.get("usage")
    return Completion(
        text=content,
        finish_reason=str(choice.get("finish_reason") or ""),
        usage=usage if isinstance(usage, dict) else {},
        latency_ms=round(latency_ms, 3),
        attempts=attempts,
        model=str(data.get("model") or ""),
    )
