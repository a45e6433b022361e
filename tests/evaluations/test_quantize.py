"""Dynamic int8 quantization: loadable by ONNX Runtime 1.31, measured, kept only above the floor."""

import json

import numpy as np
import onnx
import pytest

from apps.evaluations.onnx import builder, quantize
from apps.evaluations.onnx.encoder import Encoder
from apps.evaluations.onnx.quantize import (
    AgreementTooLow,
    agreement,
    derive_int8_encoder_dir,
    quantize_dynamic_int8,
    score_correlation,
)
from apps.evaluations.onnx.validate import SENTENCE_EMBEDDING, inspect_artifact
from tests.evaluations.test_onnx_builder import TINY, tiny_weights, write_tiny_tokenizer

CALIBRATION = [
    "Refunds are accepted within 30 days of purchase.",
    "How do I reset my password?",
    "The quarterly report shows revenue up twelve percent.",
    "Our support team answers on weekdays from nine to six.",
    "The patient reported mild headaches after the second dose.",
    "Please restart the router and try again.",
    "The Eiffel Tower was completed in 1889.",
    "Der Kunde möchte seine Bestellung stornieren.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The contract may be terminated with thirty days' written notice.",
    "I can't log in to my account since yesterday.",
    "Bananas are rich in potassium.",
]
TINY_TEXTS = ["the cat sat on the mat", "a big red dog ran fast", "the small blue cat", "dog"]


@pytest.fixture
def tiny_encoder_dir(tmp_path):
    write_tiny_tokenizer(tmp_path / "tok.json")
    builder.write_encoder_dir(
        tmp_path / "tiny",
        builder.build_bert_encoder(TINY, tiny_weights(TINY, seed=3)),
        tmp_path / "tok.json",
        {
            "name": "tiny",
            "dimension": 32,
            "max_seq_length": 16,
            "pooling": "mean",
            "normalize": True,
        },
    )
    return tmp_path / "tiny"


def test_agreement_and_correlation_arithmetic():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 8))
    same = agreement(a, a * 3.0)  # scale does not matter: rows are normalised
    assert same == pytest.approx({"min_cosine": 1.0, "mean_cosine": 1.0, "p05_cosine": 1.0})
    flipped = a.copy()
    flipped[0] *= -1
    moved = agreement(a, flipped)
    assert moved["min_cosine"] == pytest.approx(-1.0)
    assert moved["mean_cosine"] == pytest.approx((19 - 1) / 20)
    assert moved["min_cosine"] <= moved["p05_cosine"] <= moved["mean_cosine"]
    with pytest.raises(ValueError):
        agreement(a, a[:3])

    scores = rng.random(50)
    assert score_correlation(scores, 2 * scores + 1) == pytest.approx(1.0)
    assert score_correlation(scores, -scores) == pytest.approx(-1.0)
    assert score_correlation(np.ones(4), np.ones(4)) == 1.0
    assert score_correlation(np.ones(4), np.zeros(4)) == 0.0
    probabilities = rng.random((10, 3))
    assert score_correlation(probabilities, probabilities) == pytest.approx(1.0)


def test_quantized_tiny_encoder_is_int8_ir10_and_smaller(tiny_encoder_dir, tmp_path):
    src = tiny_encoder_dir / "model.onnx"
    dst = quantize_dynamic_int8(src, tmp_path / "q" / "model.onnx")
    model = onnx.load(str(dst))
    assert model.ir_version == 10
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {node.op_type for node in model.graph.node}
    int8 = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8 and not (tmp_path / "q" / "model.onnx.part").exists()
    assert dst.stat().st_size < src.stat().st_size


def test_derive_refuses_below_the_floor_and_leaves_nothing(tiny_encoder_dir, tmp_path):
    dst = tmp_path / "tiny-int8"
    with pytest.raises(AgreementTooLow) as caught:
        derive_int8_encoder_dir(tiny_encoder_dir, dst, TINY_TEXTS, floor=1.0)
    assert caught.value.floor == 1.0
    assert 0.5 < caught.value.agreement["mean_cosine"] < 1.0
    assert "below the floor of 1.0000" in str(caught.value)
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    with pytest.raises(ValueError, match="calibration text"):
        derive_int8_encoder_dir(tiny_encoder_dir, dst, ["  ", ""])


def test_int8_minilm_agrees_with_fp32_and_is_smaller(minilm_dir, minilm, tmp_path):
    dst = tmp_path / "minilm-int8"
    manifest = derive_int8_encoder_dir(minilm_dir, dst, CALIBRATION)
    on_disk = json.loads((dst / "manifest.json").read_text())
    assert on_disk == manifest

    q = manifest["quantization"]
    assert q["method"] == "dynamic-int8" and q["per_channel"] and q["reduce_range"]
    assert q["source_sha256"] == builder.sha256_file(minilm_dir / "model.onnx")
    assert q["agreement"]["mean_cosine"] >= 0.98
    assert q["agreement"]["min_cosine"] >= 0.95
    assert q["agreement"]["texts"] == len(CALIBRATION)
    assert q["bytes"] < 0.3 * q["source_bytes"]  # 23.4 MB from 90.3 MB
    assert manifest["name"] == "all-minilm-l6-v2-int8"
    assert (manifest["dimension"], manifest["max_seq_length"]) == (384, 256)
    assert manifest["model"]["sha256"] == builder.sha256_file(dst / "model.onnx")
    assert manifest["model"]["ir_version"] <= 10
    assert sorted(p.name for p in dst.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "tokenizer.json",
    ]

    # The derived folder is an ordinary encoder folder: it validates and encodes.
    report = inspect_artifact(
        dst / "model.onnx",
        task=SENTENCE_EMBEDDING,
        tokenizer_path=dst / "tokenizer.json",
        max_seq_length=256,
    )
    assert report.ok, report.problems
    fresh = ["A refund takes five business days.", "Where is the nearest station?"]
    measured = agreement(minilm.encode(fresh), Encoder(dst, device="cpu").encode(fresh))
    assert measured["mean_cosine"] >= 0.98

    with pytest.raises(FileExistsError):
        derive_int8_encoder_dir(minilm_dir, dst, CALIBRATION)


def test_a_quantizer_that_stamps_a_newer_ir_version_is_corrected(
    tiny_encoder_dir, tmp_path, monkeypatch
):
    import onnxruntime.quantization as ort_quantization

    real = ort_quantization.quantize_dynamic

    def newer_ir(model_input, model_output, **kwargs):
        real(model_input, model_output, **kwargs)
        model = onnx.load(str(model_output))
        model.ir_version = onnx.IR_VERSION  # 14 with onnx 1.23: ORT 1.31 would refuse it
        onnx.save(model, str(model_output))

    monkeypatch.setattr(ort_quantization, "quantize_dynamic", newer_ir)
    dst = quantize.quantize_dynamic_int8(tiny_encoder_dir / "model.onnx", tmp_path / "m.onnx")
    assert onnx.load(str(dst)).ir_version == 10
