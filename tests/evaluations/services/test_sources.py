"""Outputs generated through an OpenAI-compatible endpoint, and predicted by an ONNX model
under test; scorer artifacts uploaded, validated, quantized and retired."""

import io

import onnx
import pytest
from django.core.exceptions import PermissionDenied

from apps.core.errors import ValidationFailed
from apps.evaluations import services
from apps.evaluations.models import ModelArtifact, RunOutput
from apps.evaluations.onnx import runners
from tests.evaluations.fixtures import ANSWERS, jsonl
from tests.evaluations.openai_stub import OpenAIStub, StubFailure, last_user_message
from tests.factories import approved_endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_runners():
    runners.clear_runners()
    yield
    runners.clear_runners()


def test_generated_run_renders_each_case_and_records_failures(
    owner, suite, support_prompt, django_capture_on_commit_callbacks
):
    def responder(body):
        message = last_user_message(body)
        if "Question 5 " in message:
            raise StubFailure(status=400, message="content filter")
        topic = message.rsplit(" ", 1)[-1]
        return ANSWERS[topic]

    with OpenAIStub(responder=responder) as stub, django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=support_prompt.versions.get(number=2),
            output_source="generated",
            endpoint={
                "slug": approved_endpoint(stub.base_url).slug,
                "model": "local-llm",
                "concurrency": 3,
            },
            batch_size=10,
        )
    run.refresh_from_db()
    assert run.status == "completed" and run.verdict == "pass"
    assert len(stub.requests) == 24
    body = stub.requests[0].body
    assert body["model"] == "local-llm" and body["temperature"] == 0.1
    rendered = [r.body["messages"][1]["content"] for r in stub.requests]
    assert any(m.startswith("Context:\nReturns are accepted within 30 days") for m in rendered)
    failed = RunOutput.objects.get(run=run, case__external_id="c6")
    assert "content filter" in failed.error
    assert run.summary["errors"] == 1


def test_generated_run_needs_a_registered_endpoint(owner, suite, support_prompt):
    with pytest.raises(ValidationFailed) as refused:
        services.run_start(
            actor=owner,
            suite=suite,
            prompt_version=support_prompt.versions.get(number=2),
            output_source="generated",
            endpoint={"slug": "no-such-endpoint", "token": 1},
        )
    assert refused.value.errors["endpoint"] == [
        "Unknown key 'token'.",
        "No such model endpoint in the registry.",
    ]


def _upload(actor, model: onnx.ModelProto, tokenizer, **kw):
    return services.artifact_upload(
        actor=actor,
        name=kw.pop("name", "Intent classifier"),
        task=kw.pop("task", "sequence_classification"),
        model_file=io.BytesIO(model.SerializeToString()),
        tokenizer_file=io.BytesIO(tokenizer.read_bytes()) if tokenizer else None,
        **kw,
    )


def test_uploaded_classifier_is_validated_on_commit_and_predicts_as_model_under_test(
    owner, charter, media, tiny_classifier, minilm_tokenizer, django_capture_on_commit_callbacks
):
    charter.status = "pilot"
    charter.save(update_fields=["status"])
    with django_capture_on_commit_callbacks(execute=True):
        artifact = _upload(
            owner,
            tiny_classifier(3),
            minilm_tokenizer,
            charter=charter,
            labels=["billing", "shipping", "other"],
            max_seq_length=64,
        )
    artifact.refresh_from_db()
    assert artifact.status == "valid", artifact.validation
    assert artifact.history.first().history_change_reason == "Validated"
    assert (media / artifact.storage_dir / "model.onnx").exists()

    dataset = services.dataset_create(actor=owner, name="Intents", charter=charter)
    rows = [
        {"id": f"t{i}", "variables": {"message": f"ticket {i}"}, "expected": label}
        for i, label in enumerate(["billing", "shipping", "other"] * 4)
    ]
    services.dataset_version_upload(
        actor=owner, dataset=dataset, stream=jsonl(rows), filename="t.jsonl"
    )
    suite = services.suite_create(
        actor=owner,
        charter=charter,
        fields={
            "name": "Routing accuracy",
            "dataset_version": dataset.latest_version,
            "scorers": [
                {"scorer": "label_accuracy", "params": {"labels": ["billing", "shipping", "other"]}}
            ],
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(
            actor=owner,
            suite=suite,
            model_under_test=artifact,
            output_source="model",
            input_variable="message",
        )
    run.refresh_from_db()
    assert run.status == "completed"
    outputs = set(run.outputs.values_list("output", flat=True))
    assert outputs <= {"billing", "shipping", "other"}
    labels = run.summary["labels"]
    assert set(labels) >= {"billing", "macro"} and labels["billing"]["support"] >= 4
    accuracy = run.summary["overall"]["label_correct"]["mean"]
    assert 0 <= accuracy <= 1 and run.summary["overall"]["label_correct"]["count"] == 12


def test_each_bad_upload_is_refused_or_marked_invalid_with_its_reason(
    owner,
    engineer,
    media,
    tiny_classifier,
    minilm_tokenizer,
    settings,
    django_capture_on_commit_callbacks,
):
    with pytest.raises(ValidationFailed) as refused:
        _upload(engineer, tiny_classifier(3), None, labels=["a", "b", "c"])
    assert refused.value.errors == {"tokenizer_file": ["A text model needs its tokenizer.json."]}
    with pytest.raises(ValidationFailed) as refused:
        _upload(engineer, tiny_classifier(3), minilm_tokenizer)
    assert "labels" in refused.value.errors
    settings.EVALUATIONS_MAX_ARTIFACT_BYTES = 1000
    with pytest.raises(ValidationFailed) as refused:
        _upload(engineer, tiny_classifier(3), minilm_tokenizer, labels=["a", "b", "c"])
    assert "larger than" in refused.value.message
    assert not ModelArtifact.objects.exists()
    assert not list((media / "models" / ".incoming").iterdir())
    settings.EVALUATIONS_MAX_ARTIFACT_BYTES = 10**9
    with django_capture_on_commit_callbacks(execute=True):
        garbage = services.artifact_upload(
            actor=engineer,
            name="Not a model",
            task="sequence_classification",
            model_file=io.BytesIO(tiny_classifier(2).SerializeToString()[:500]),  # truncated
            tokenizer_file=io.BytesIO(minilm_tokenizer.read_bytes()),
            labels=["a", "b"],
        )
        wrong_width = _upload(
            engineer, tiny_classifier(2), minilm_tokenizer, name="Two", labels=["a", "b", "c"]
        )
    garbage.refresh_from_db()
    wrong_width.refresh_from_db()
    assert garbage.status == "invalid" and garbage.validation["problems"]
    assert wrong_width.status == "invalid"
    assert any("label" in p.lower() for p in wrong_width.validation["problems"])


def test_library_uploads_are_for_platform_engineers(
    owner, outsider, media, tiny_classifier, minilm_tokenizer
):
    with pytest.raises(PermissionDenied):
        _upload(outsider, tiny_classifier(3), minilm_tokenizer, labels=["a", "b", "c"])


def test_quantization_keeps_an_int8_encoder_that_agrees_and_refuses_one_that_does_not(
    engineer, default_encoder, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.artifact_quantize(actor=engineer, artifact=default_encoder, floor=0.9999)
    default_encoder.refresh_from_db()
    assert "below the floor" in default_encoder.validation["quantization_refused"] or (
        "0.9999" in default_encoder.validation["quantization_refused"]
    )
    assert not ModelArtifact.objects.filter(quantized_from=default_encoder).exists()

    with django_capture_on_commit_callbacks(execute=True):
        services.artifact_quantize(actor=engineer, artifact=default_encoder, floor=0.98)
    derived = ModelArtifact.objects.get(quantized_from=default_encoder)
    assert derived.status == "valid" and derived.slug == "all-minilm-l6-v2-int8"
    assert derived.agreement["mean_cosine"] >= 0.98 and derived.agreement["floor"] == 0.98
    assert derived.size_bytes < default_encoder.size_bytes / 2
    assert derived.sha256 != default_encoder.sha256


def test_retired_artifacts_cannot_back_new_suites(
    engineer, owner, default_encoder, dataset, support_prompt
):
    services.artifact_retire(actor=engineer, artifact=default_encoder, reason="Replaced")
    with pytest.raises(ValidationFailed) as refused:
        services.suite_create(
            actor=owner,
            charter=support_prompt.charter,
            fields={
                "name": "Semantic",
                "dataset_version": dataset.latest_version,
                "scorers": [{"scorer": "semantic_similarity", "artifact": "all-minilm-l6-v2"}],
            },
        )
    assert "retired" in refused.value.errors["scorers"][0]
