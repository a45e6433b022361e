"""Artifact checks: every refusal has its own plain reason, and good artifacts pass."""

import json
import pickle
import shutil
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from apps.evaluations.onnx import builder, runners, validate
from apps.evaluations.onnx.validate import (
    CROSS_ENCODER,
    SENTENCE_EMBEDDING,
    SEQUENCE_CLASSIFICATION,
    ArtifactImportError,
    import_optimum_folder,
    inspect_artifact,
)
from tests.evaluations.conftest import TINY_WIDE, with_token_output
from tests.evaluations.test_onnx_builder import TINY, tiny_weights


def save(model: onnx.ModelProto, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def bag_of_words(
    inputs=("input_ids", "attention_mask"),
    *,
    vocab=30522,
    dim=8,
    output="sentence_embedding",
    input_type=TensorProto.INT64,
    extra_output=None,
):
    """A hand-made text model: the mean of word vectors, [batch, dim]. Fast to build and load."""
    table = np.random.default_rng(0).standard_normal((vocab, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["words"]),
        helper.make_node("ReduceMean", ["words"], [output], axes=[1], keepdims=0),
    ]
    graph_inputs = [helper.make_tensor_value_info(n, input_type, ["batch", "seq"]) for n in inputs]
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", dim])]
    for name in inputs:
        if name not in ("input_ids",):  # consume every input so none is pruned
            nodes.append(helper.make_node("Identity", [name], [f"{name}_used"]))
            outputs.append(helper.make_tensor_value_info(f"{name}_used", input_type, None))
    if extra_output:
        outputs = [*outputs[:1], extra_output, *outputs[1:]]
    graph = helper.make_graph(
        nodes,
        "bow",
        graph_inputs,
        outputs,
        initializer=[numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


@pytest.fixture
def tiny_encoder_model():
    return builder.build_bert_encoder(TINY_WIDE, tiny_weights(TINY_WIDE, seed=5))


def test_a_good_encoder_passes_with_everything_reported(minilm_dir):
    report = inspect_artifact(
        minilm_dir / "model.onnx",
        task=SENTENCE_EMBEDDING,
        tokenizer_path=minilm_dir / "tokenizer.json",
        max_seq_length=256,
    )
    assert report.ok and report.problems == [], report.problems
    assert (report.dimension, report.normalized, report.needs_pooling) == (384, True, False)
    assert (report.ir_version, report.opset, report.providers) == (10, 17, ["CPUExecutionProvider"])
    assert report.runtime["max_ir_version"] == 13 and report.runtime["max_opset"] >= 17
    assert [i["name"] for i in report.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert report.outputs == [
        {"name": "sentence_embedding", "type": "tensor(float)", "shape": ["batch", 384]}
    ]
    assert report.vocab_size == report.embedding_rows == 30522
    assert report.sha256 == builder.sha256_file(minilm_dir / "model.onnx")
    json.dumps(report.to_dict())  # stored as JSON


def test_runtime_limits_come_from_onnx_runtime_itself():
    limits = validate.runtime_limits()
    assert limits["max_ir_version"] == 13  # ONNX Runtime 1.31
    assert limits["max_ir_version"] < onnx.IR_VERSION  # the onnx package runs ahead of it
    assert validate._loads(limits["max_ir_version"], 17) is None
    assert validate._loads(limits["max_ir_version"] + 1, 17) is not None
    assert validate._loads(10, limits["max_opset"]) is None
    assert validate._loads(10, limits["max_opset"] + 1) is not None


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = save(bag_of_words(), tmp_path / "model.onnx")
    monkeypatch.setattr(onnx, "load", lambda *a, **k: pytest.fail("must not be parsed"))
    report = inspect_artifact(path, task=SENTENCE_EMBEDDING, max_bytes=1000)
    assert not report.ok
    assert report.problems == [
        f"The model file is {path.stat().st_size:,} bytes, over the 1,000-byte limit."
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is not a model at all, just some text" * 4, "does not parse as one"),
        (pickle.dumps({"weights": [1, 2, 3]}, protocol=4), "is a Python pickle"),
        (None, "is a zip archive"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a":{}}' * 2, "is a safetensors weights file"),
        (b"", "The model file is empty."),
    ],
    ids=["garbage", "pickle", "zip", "safetensors", "empty"],
)
def test_files_that_are_not_onnx_are_named_for_what_they_are(tmp_path, content, reason):
    path = tmp_path / "model.onnx"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({"a": 1}))
    else:
        path.write_bytes(content)
    report = inspect_artifact(path, task=SENTENCE_EMBEDDING)
    assert not report.ok and len(report.problems) == 1
    assert reason in report.problems[0]


def test_an_ir_version_newer_than_the_runtime_is_explained(tmp_path):
    model = bag_of_words()
    model.ir_version = validate.runtime_limits()["max_ir_version"] + 1
    report = inspect_artifact(save(model, tmp_path / "m.onnx"), task=SENTENCE_EMBEDDING)
    assert report.problems == [
        f"The model's IR version is {model.ir_version}, newer than ONNX Runtime "
        f"{validate.runtime_limits()['onnxruntime']} reads (IR 13 at most). Re-save it with "
        "model.ir_version = 13 or lower (the exporter's onnx package is newer than the runtime)."
    ]


def test_an_opset_newer_than_the_runtime_is_explained(tmp_path):
    model = bag_of_words()
    newest = validate.runtime_limits()["max_opset"]
    model.opset_import[0].version = newest + 1
    report = inspect_artifact(save(model, tmp_path / "m.onnx"), task=SENTENCE_EMBEDDING)
    assert report.opset == newest + 1
    assert len(report.problems) == 1
    assert f"opset {newest + 1}" in report.problems[0]
    assert f"supports opset {newest} at most" in report.problems[0]


def test_a_model_onnx_runtime_cannot_load_carries_its_message(tmp_path):
    model = bag_of_words()
    model.graph.node[1].op_type = "NoSuchOperator"
    report = inspect_artifact(save(model, tmp_path / "m.onnx"), task=SENTENCE_EMBEDDING)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("ONNX Runtime could not load the model: ")
    assert "NoSuchOperator" in report.problems[0]


def test_external_weights_outside_the_folder_are_refused(tmp_path):
    model = bag_of_words()
    table = model.graph.initializer[0]
    table.ClearField("raw_data")
    table.ClearField("float_data")
    table.data_location = TensorProto.EXTERNAL
    table.external_data.add(key="location", value="../../etc/passwd")
    report = inspect_artifact(save(model, tmp_path / "m.onnx"), task=SENTENCE_EMBEDDING)
    assert len(report.problems) == 1 and "outside the model's folder" in report.problems[0]


def test_inputs_a_text_runner_cannot_feed_are_named(tmp_path, minilm_tokenizer):
    model = bag_of_words(("input_ids", "attention_mask", "pixel_values"))
    report = inspect_artifact(
        save(model, tmp_path / "m.onnx"), task=SENTENCE_EMBEDDING, tokenizer_path=minilm_tokenizer
    )
    assert report.problems == [
        "The model takes input(s) pixel_values that a text runner cannot feed; a text model "
        "takes only input_ids, attention_mask, token_type_ids."
    ]


def test_a_model_without_attention_mask_or_with_int32_ids_is_refused(tmp_path, minilm_tokenizer):
    no_mask = inspect_artifact(
        save(bag_of_words(("input_ids",)), tmp_path / "a.onnx"),
        task=SENTENCE_EMBEDDING,
        tokenizer_path=minilm_tokenizer,
    )
    assert len(no_mask.problems) == 1 and "no attention_mask input" in no_mask.problems[0]
    int32 = inspect_artifact(
        save(bag_of_words(input_type=TensorProto.INT32), tmp_path / "b.onnx"),
        task=SENTENCE_EMBEDDING,
        tokenizer_path=minilm_tokenizer,
    )
    assert "Input input_ids is tensor(int32) ['batch', 'seq']" in int32.problems[0]


@pytest.mark.parametrize(
    ("task", "output", "reason"),
    [
        (SEQUENCE_CLASSIFICATION, "sentence_embedding", "No output fits a classifier"),
        (CROSS_ENCODER, "sentence_embedding", "No output fits a cross-encoder"),
        (SENTENCE_EMBEDDING, "logits", "No output is a sentence embedding"),
    ],
)
def test_outputs_that_do_not_fit_the_task_are_refused(
    tmp_path, minilm_tokenizer, task, output, reason
):
    model = bag_of_words(output=output)
    report = inspect_artifact(
        save(model, tmp_path / "m.onnx"),
        task=task,
        labels=["a", "b"],
        tokenizer_path=minilm_tokenizer,
    )
    assert len(report.problems) == 1 and report.problems[0].startswith(reason)
    assert f"{output} tensor(float) ['batch', 8]" in report.problems[0]


def test_classifier_labels_must_be_given_and_match_the_logits(
    tmp_path, tiny_classifier, minilm_tokenizer
):
    path = save(tiny_classifier(3), tmp_path / "m.onnx")
    missing = inspect_artifact(path, task=SEQUENCE_CLASSIFICATION, tokenizer_path=minilm_tokenizer)
    assert missing.problems == ["A classifier needs its label names, in the order of its outputs."]
    wrong = inspect_artifact(
        path, task=SEQUENCE_CLASSIFICATION, tokenizer_path=minilm_tokenizer, labels=["neg", "pos"]
    )
    assert wrong.n_labels == 3
    assert wrong.problems == [
        "2 label(s) were given (neg, pos) but the model outputs 3 logits per text."
    ]


def test_the_tokenizer_must_be_there_and_load(tmp_path, tiny_encoder_model):
    path = save(tiny_encoder_model, tmp_path / "m.onnx")
    missing = inspect_artifact(path, task=SENTENCE_EMBEDDING)
    assert missing.problems == [
        "The tokenizer is missing: a text model needs the tokenizer.json it was exported with "
        "(the Hugging Face fast-tokenizer file)."
    ]
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    report = inspect_artifact(path, task=SENTENCE_EMBEDDING, tokenizer_path=broken)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("The tokenizer could not be loaded: ")


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(tmp_path, minilm_tokenizer):
    small = builder.build_bert_encoder(TINY, tiny_weights(TINY))  # 100 rows
    report = inspect_artifact(
        save(small, tmp_path / "m.onnx"), task=SENTENCE_EMBEDDING, tokenizer_path=minilm_tokenizer
    )
    assert report.problems == [
        "The tokenizer has 30,522 tokens but the model's word embedding has 100 rows: they do "
        "not belong together."
    ]


def test_the_smoke_run_catches_a_max_seq_length_beyond_the_positions(
    tmp_path, tiny_encoder_model, minilm_tokenizer
):
    path = save(tiny_encoder_model, tmp_path / "m.onnx")
    fits = inspect_artifact(
        path, task=SENTENCE_EMBEDDING, tokenizer_path=minilm_tokenizer, max_seq_length=512
    )
    assert fits.ok, fits.problems
    too_long = inspect_artifact(
        path, task=SENTENCE_EMBEDDING, tokenizer_path=minilm_tokenizer, max_seq_length=600
    )
    assert len(too_long.problems) == 1
    assert too_long.problems[0].startswith(
        "The model fails on a batch of two texts (12 and 600 tokens, the longer at max_seq_length): "
    )


def test_the_smoke_run_refuses_non_finite_outputs(tmp_path, tiny_classifier, minilm_tokenizer):
    model = tiny_classifier(2)
    bias = next(t for t in model.graph.initializer if t.name == "head.bias")
    bias.CopyFrom(numpy_helper.from_array(np.array([np.nan, 0.0], dtype=np.float32), "head.bias"))
    report = inspect_artifact(
        save(model, tmp_path / "m.onnx"),
        task=SEQUENCE_CLASSIFICATION,
        tokenizer_path=minilm_tokenizer,
        labels=["a", "b"],
    )
    assert report.problems == ["The model returned NaN or infinite values on ordinary text."]


def test_good_classifier_and_cross_encoder_pass(tmp_path, tiny_classifier, minilm_tokenizer):
    classifier = inspect_artifact(
        save(tiny_classifier(3), tmp_path / "c.onnx"),
        task=SEQUENCE_CLASSIFICATION,
        tokenizer_path=minilm_tokenizer,
        labels=["negative", "neutral", "positive"],
        max_seq_length=64,
    )
    assert classifier.ok, classifier.problems
    assert (classifier.output, classifier.n_labels) == ("logits", 3)
    cross = inspect_artifact(
        save(tiny_classifier(1), tmp_path / "x.onnx"),
        task=CROSS_ENCODER,
        tokenizer_path=minilm_tokenizer,
    )
    assert cross.ok and cross.n_labels == 1 and cross.labels is None


# --- Optimum folders ------------------------------------------------------------------------


def optimum_folder(path, model, tokenizer, config, files=None):
    """An Optimum export's layout; `files` maps more relative paths to their JSON content."""
    path.mkdir(parents=True, exist_ok=True)
    save(model, path / "model.onnx")
    shutil.copyfile(tokenizer, path / "tokenizer.json")
    (path / "config.json").write_text(json.dumps(config))
    for name, content in (files or {}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content))
    return path


BERT_CONFIG = {"model_type": "bert", "hidden_size": 32, "max_position_embeddings": 512}


def test_an_optimum_classifier_folder_imports_validates_and_runs(
    tmp_path, tiny_classifier, minilm_tokenizer
):
    folder = optimum_folder(
        tmp_path / "sentiment",
        tiny_classifier(3),
        minilm_tokenizer,
        {
            **BERT_CONFIG,
            "architectures": ["BertForSequenceClassification"],
            "id2label": {"2": "positive", "0": "negative", "1": "neutral"},
        },
        {
            "tokenizer_config.json": {"model_max_length": 128},
            "special_tokens_map.json": {"pad_token": "[PAD]", "cls_token": "[CLS]"},
        },
    )
    declared = import_optimum_folder(folder)
    assert declared["task"] == SEQUENCE_CLASSIFICATION
    assert declared["labels"] == ["negative", "neutral", "positive"]  # ordered by id
    assert declared["max_seq_length"] == 128
    assert declared["max_seq_length_source"] == "tokenizer_config.json model_max_length"
    assert declared["pad_token_id"] == 0
    assert declared["paths"]["model"] == str(folder / "model.onnx")
    assert set(declared["paths"]) == {
        "model",
        "tokenizer",
        "config",
        "tokenizer_config",
        "special_tokens_map",
    }

    report = inspect_artifact(
        declared["paths"]["model"],
        task=declared["task"],
        tokenizer_path=declared["paths"]["tokenizer"],
        labels=declared["labels"],
        max_seq_length=declared["max_seq_length"],
    )
    assert report.ok, report.problems

    runners.clear_runners()
    classifier = runners.get_runner("classifier", folder, report.sha256)
    assert classifier.labels == ["negative", "neutral", "positive"]
    assert classifier.max_seq_length == 128
    probabilities = classifier.predict_proba(["a fine answer", "a poor one"])
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_a_sentence_transformers_folder_with_token_outputs_is_pooled(
    tmp_path, tiny_wide_weights, minilm_tokenizer
):
    tokens_model = with_token_output(
        builder.build_bert_encoder(TINY_WIDE, tiny_wide_weights), TINY_WIDE
    )
    folder = optimum_folder(
        tmp_path / "st",
        tokens_model,
        minilm_tokenizer,
        {**BERT_CONFIG, "architectures": ["BertModel"]},
        {
            "sentence_bert_config.json": {"max_seq_length": 96},
            "modules.json": [
                {"path": "", "type": "sentence_transformers.models.Transformer"},
                {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ],
            "1_Pooling/config.json": {"pooling_mode_cls_token": True},
        },
    )
    declared = import_optimum_folder(folder)
    assert (declared["task"], declared["pooling"], declared["normalize"]) == (
        SENTENCE_EMBEDDING,
        "cls",
        True,
    )
    assert (declared["max_seq_length"], declared["dimension"], declared["labels"]) == (96, 32, [])

    report = inspect_artifact(
        folder / "model.onnx",
        task=SENTENCE_EMBEDDING,
        tokenizer_path=folder / "tokenizer.json",
        max_seq_length=96,
        pooling="cls",
    )
    assert report.ok, report.problems
    assert (report.output, report.needs_pooling, report.dimension) == (
        "last_hidden_state",
        True,
        32,
    )
    assert report.normalized is False

    # Pooling the token outputs gives what the builder's pooled graph computes.
    pooled_dir = tmp_path / "pooled"
    builder.write_encoder_dir(
        pooled_dir,
        builder.build_bert_encoder(TINY_WIDE, tiny_wide_weights, pooling="cls"),
        minilm_tokenizer,
        {"name": "t", "dimension": 32, "max_seq_length": 96, "pooling": "cls", "normalize": True},
    )
    runner = runners.make_runner("encoder", folder)
    assert isinstance(runner, runners.EmbeddingRunner) and runner.pooling == "cls"
    texts = [
        "the cat sat on the mat",
        "a much longer sentence about dogs " * 20,
        "the cat sat on the mat",
    ]
    expected = runners.Encoder(pooled_dir, device="cpu").encode(texts)
    np.testing.assert_allclose(runner.encode(texts, batch_size=2), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "files", "expected"),
    [
        (
            {"architectures": ["BertForSequenceClassification"], "id2label": {"0": "LABEL_0"}},
            {},
            (CROSS_ENCODER, 512, "config.json max_position_embeddings"),
        ),
        (
            {"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "pad_token_id": 1},
            {"max_position_embeddings": 514},
            (SENTENCE_EMBEDDING, 512, "config.json max_position_embeddings"),
        ),
        (
            {"architectures": ["BertForMaskedLM"]},
            {},
            (None, 512, "config.json max_position_embeddings"),
        ),
    ],
    ids=["single-logit-is-a-cross-encoder", "roberta-position-offset", "unknown-task"],
)
def test_task_and_length_guesses(tmp_path, minilm_tokenizer, config, files, expected):
    folder = optimum_folder(
        tmp_path / "f", bag_of_words(), minilm_tokenizer, {**BERT_CONFIG, **config, **files}
    )
    declared = import_optimum_folder(folder)
    assert (
        declared["task"],
        declared["max_seq_length"],
        declared["max_seq_length_source"],
    ) == expected


@pytest.mark.parametrize(
    ("missing", "reason"),
    [
        ("model.onnx", "The folder has no model.onnx"),
        ("tokenizer.json", "The folder has no tokenizer.json"),
        ("config.json", "The folder has no config.json"),
    ],
)
def test_an_optimum_folder_missing_a_file_says_which(tmp_path, minilm_tokenizer, missing, reason):
    folder = optimum_folder(tmp_path / "f", bag_of_words(), minilm_tokenizer, BERT_CONFIG)
    (folder / missing).unlink()
    with pytest.raises(ArtifactImportError, match=reason):
        import_optimum_folder(folder)


def test_unsupported_pooling_is_refused(tmp_path, minilm_tokenizer):
    folder = optimum_folder(
        tmp_path / "f",
        bag_of_words(),
        minilm_tokenizer,
        {**BERT_CONFIG, "architectures": ["BertModel"]},
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_weightedmean_tokens": True})
    )
    with pytest.raises(ArtifactImportError, match=r"pooling \['weightedmean'\]"):
        import_optimum_folder(folder)
