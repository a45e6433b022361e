"""Generation renders each case into chat messages and calls an OpenAI-compatible endpoint
with retries and bounded concurrency, against a local stub server."""

import socket
import threading

import pytest

from apps.core import egress
from apps.evaluations import generation
from apps.evaluations.generation import (
    Completion,
    Endpoint,
    GenerationError,
    RenderError,
    build_messages,
    build_request,
    complete,
    generate_many,
)
from tests.evaluations.openai_stub import OpenAIStub, StubFailure, last_user_message

CHAT = [
    {"role": "system", "content": "You answer for {{ company }}."},
    {"role": "user", "content": "Customer {{ name }} asks: {{ question }}"},
]
DECLARED = [
    {"name": "company", "required": True},
    {"name": "name", "required": True},
    {"name": "question", "required": True},
]


@pytest.fixture
def stub():
    with OpenAIStub() as server:
        yield server


@pytest.fixture
def sleeps():
    """Stands in for time.sleep: records the delays instead of waiting."""
    return []


def local(base_url: str, **fields) -> Endpoint:
    """An endpoint on a test server on the loopback (a private address, allowed explicitly)."""
    return Endpoint(
        base_url=base_url,
        opener=egress.build_opener(base_url=base_url, allow_private=True),
        **fields,
    )


def endpoint_for(server, **overrides):
    return local(server.base_url, **{"backoff_s": 0.5, **overrides})


# Rendering and request bodies


def test_build_messages_renders_case_variables_into_each_message():
    messages = build_messages(
        "chat",
        CHAT,
        "",
        DECLARED,
        {"company": "Acme", "name": "Ada", "question": "Where is my order?", "expected": "x"},
    )

    assert messages == [
        {"role": "system", "content": "You answer for Acme."},
        {"role": "user", "content": "Customer Ada asks: Where is my order?"},
    ]


def test_build_messages_turns_a_text_template_into_one_user_message():
    messages = build_messages(
        "text", [], "Summarise: {{ doc }}", [{"name": "doc"}], {"doc": "A long story."}
    )

    assert messages == [{"role": "user", "content": "Summarise: A long story."}]


def test_build_messages_names_the_missing_variable():
    with pytest.raises(RenderError) as exc:
        build_messages("chat", CHAT, "", DECLARED, {"company": "Acme", "question": "Hi?"})

    assert exc.value.variables == ["name"]
    assert "Variable 'name' is required but no value was given" in str(exc.value)
    assert isinstance(exc.value, GenerationError)


def test_build_request_passes_known_model_parameters_through():
    config = {
        "model": "llama-3-8b",
        "temperature": 0.2,
        "max_tokens": 64,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "response_format": {"type": "json_object"},
        "stream": True,
        "n": 3,
        "provider_notes": "ignored",
    }
    messages = [{"role": "user", "content": "Hi"}]

    payload = build_request(messages, config, Endpoint(base_url="http://127.0.0.1:1/v1"))

    assert payload == {
        "model": "llama-3-8b",
        "messages": messages,
        "temperature": 0.2,
        "max_tokens": 64,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "response_format": {"type": "json_object"},
    }


def test_build_request_falls_back_to_the_endpoint_model_and_may_name_none():
    messages = [{"role": "user", "content": "Hi"}]

    with_model = build_request(messages, {}, Endpoint(base_url="http://h/v1", model="m"))
    without = build_request(messages, {}, Endpoint(base_url="http://h/v1"))

    assert with_model["model"] == "m"
    assert "model" not in without


def test_endpoint_rejects_other_schemes_and_keeps_the_key_out_of_sight():
    with pytest.raises(ValueError, match="http:// or https://"):
        Endpoint(base_url="file:///etc/passwd")
    with pytest.raises(ValueError, match="concurrency"):
        Endpoint(base_url="http://h/v1", concurrency=0)

    endpoint = Endpoint(base_url="https://llm.internal/v1/", api_key="sk-secret")

    assert endpoint.url == "https://llm.internal/v1/chat/completions"
    assert "sk-secret" not in repr(endpoint)
    assert "sk-secret" not in str(endpoint.public())


# One completion


def test_complete_posts_the_body_with_the_bearer_key_and_reads_the_answer(stub, sleeps):
    endpoint = endpoint_for(stub, api_key="sk-test", extra_headers={"X-Team": "evals"})
    payload = {"model": "m", "messages": [{"role": "user", "content": "ping"}], "seed": 1}

    result = complete(endpoint, payload, sleep=sleeps.append)

    assert result.text == "echo: ping"
    assert result.finish_reason == "stop"
    assert result.usage["completion_tokens"] == 2
    assert result.attempts == 1
    assert result.latency_ms > 0
    assert result.model == "m"
    (request,) = stub.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == payload
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-team"] == "evals"
    assert sleeps == []


def test_complete_sends_no_authorization_without_a_key(stub):
    complete(endpoint_for(stub), {"messages": [{"role": "user", "content": "hi"}]})

    assert "authorization" not in stub.requests[0].headers


def test_retries_a_429_after_the_servers_retry_after(stub, sleeps):
    stub.fail_next(status=429, retry_after=2)

    result = complete(endpoint_for(stub), {"messages": []}, sleep=sleeps.append)

    assert result.attempts == 2
    assert sleeps == [2.0]
    assert len(stub.requests) == 2


def test_a_long_retry_after_is_capped(stub, sleeps):
    stub.fail_next(status=429, retry_after=3600)

    complete(endpoint_for(stub), {"messages": []}, sleep=sleeps.append)

    assert sleeps == [generation.MAX_RETRY_AFTER_S]


def test_retries_5xx_with_growing_jittered_backoff(stub, sleeps):
    stub.fail_next(status=500, times=2)

    result = complete(endpoint_for(stub, backoff_s=0.5), {"messages": []}, sleep=sleeps.append)

    assert result.attempts == 3
    assert result.text == "echo: "
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_retries_a_timed_out_request(stub, sleeps):
    stub.slow_next(2.0)

    result = complete(endpoint_for(stub, timeout_s=0.2), {"messages": []}, sleep=sleeps.append)

    assert result.attempts == 2
    assert len(sleeps) == 1


def test_gives_up_on_repeated_timeouts_saying_so(stub, sleeps):
    stub.slow_next(2.0, times=2)

    with pytest.raises(GenerationError) as exc:
        complete(
            endpoint_for(stub, timeout_s=0.1, max_retries=1), {"messages": []}, sleep=sleeps.append
        )

    assert exc.value.attempts == 2
    assert "timed out after 0.1 s" in exc.value.message


def test_retries_a_dropped_connection(stub, sleeps):
    stub.disconnect_next()

    result = complete(endpoint_for(stub), {"messages": []}, sleep=sleeps.append)

    assert result.attempts == 2


def test_gives_up_after_max_retries_with_the_last_reason(stub, sleeps):
    stub.fail_next(status=503, times=10, message="Model is loading")

    with pytest.raises(GenerationError) as exc:
        complete(endpoint_for(stub, max_retries=2), {"messages": []}, sleep=sleeps.append)

    assert exc.value.attempts == 3
    assert exc.value.status == 503
    assert "Gave up after 3 attempts" in exc.value.message
    assert "HTTP 503" in exc.value.message
    assert "Model is loading" in exc.value.message
    assert len(stub.requests) == 3
    assert len(sleeps) == 2


def test_gives_up_on_an_unreachable_server_naming_the_cause(sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = local(f"http://127.0.0.1:{port}/v1", max_retries=1)

    with pytest.raises(GenerationError) as exc:
        complete(endpoint, {"messages": []}, sleep=sleeps.append)

    assert exc.value.attempts == 2
    assert "Could not reach" in exc.value.message
    assert "refused" in exc.value.message.lower()


def test_a_client_error_is_not_retried_and_surfaces_the_servers_message(stub, sleeps):
    stub.fail_next(status=400, message="The model 'gpt-9' does not exist")

    with pytest.raises(GenerationError) as exc:
        complete(endpoint_for(stub), {"model": "gpt-9", "messages": []}, sleep=sleeps.append)

    assert exc.value.status == 400
    assert exc.value.attempts == 1
    assert exc.value.message == "HTTP 400 from the endpoint: The model 'gpt-9' does not exist"
    assert len(stub.requests) == 1
    assert sleeps == []


def test_a_wrong_key_is_not_retried():
    with OpenAIStub(api_key="right") as server:
        with pytest.raises(GenerationError) as exc:
            complete(local(server.base_url, api_key="wrong"), {"messages": []})

        assert exc.value.status == 401
        assert "Incorrect API key" in exc.value.message
        assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (lambda s: s.malformed_next(), "not JSON"),
        (lambda s: s.reply_next({"choices": []}), "no choices"),
        (lambda s: s.reply_next({"choices": [{"message": {"role": "assistant"}}]}), "no content"),
        (lambda s: s.reply_next([1, 2]), "expected a JSON object"),
    ],
)
def test_an_unreadable_answer_fails_at_once_with_a_clear_message(stub, sleeps, script, reason):
    script(stub)

    with pytest.raises(GenerationError) as exc:
        complete(endpoint_for(stub), {"messages": []}, sleep=sleeps.append)

    assert exc.value.message.startswith("Unreadable answer from the endpoint")
    assert reason in exc.value.message
    assert len(stub.requests) == 1


# Many cases at once


def test_generate_many_keeps_to_the_concurrency_limit_and_keys_each_result():
    with OpenAIStub(delay=0.15) as server:
        endpoint = local(server.base_url, concurrency=3)
        items = (
            (case_id, {"messages": [{"role": "user", "content": f"case {case_id}"}]})
            for case_id in range(1, 8)
        )
        seen = []

        results = generate_many(
            endpoint,
            items,
            on_result=lambda key, result: seen.append((key, threading.current_thread())),
        )

        assert server.max_in_flight == 3
    assert set(results) == set(range(1, 8))
    assert all(results[k].text == f"echo: case {k}" for k in results)
    assert sorted(key for key, _ in seen) == list(range(1, 8))
    assert {thread for _, thread in seen} == {threading.current_thread()}


def test_one_failing_case_does_not_stop_the_others(sleeps):
    def responder(body):
        if "boom" in last_user_message(body):
            raise StubFailure(status=422, message="Prompt is too long")
        return last_user_message(body).upper()

    with OpenAIStub(responder=responder) as server:
        items = [
            (f"case-{i}", {"messages": [{"role": "user", "content": text}]})
            for i, text in enumerate(["a", "b", "boom", "c", "d"])
        ]

        results = generate_many(local(server.base_url, concurrency=2), items, sleep=sleeps.append)

    failed = results.pop("case-2")
    assert isinstance(failed, GenerationError)
    assert failed.status == 422
    assert "Prompt is too long" in failed.message
    assert {k: r.text for k, r in results.items()} == {
        "case-0": "A",
        "case-1": "B",
        "case-3": "C",
        "case-4": "D",
    }
    assert all(isinstance(r, Completion) for r in results.values())


def test_generate_many_refuses_duplicate_keys(stub):
    items = [("same", {"messages": []}), ("same", {"messages": []})]

    with pytest.raises(ValueError, match="Duplicate case key 'same'"):
        generate_many(endpoint_for(stub), items)


def test_a_loopback_server_is_refused_without_an_explicit_allowance(stub, sleeps):
    with pytest.raises(GenerationError) as exc:
        complete(Endpoint(base_url=stub.base_url), {"messages": []}, sleep=sleeps.append)
    assert "Refused to contact the endpoint" in exc.value.message
    assert exc.value.attempts == 1 and not exc.value.retryable
    assert stub.requests == []
