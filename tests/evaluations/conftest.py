"""Fixtures shared by the evaluations tests: the real MiniLM encoder and tiny ONNX text models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from apps.evaluations.onnx import builder
from apps.evaluations.onnx.encoder import Encoder

# A tiny BERT that reads MiniLM's tokenizer: its 30522-token vocabulary and 512 positions.
TINY_WIDE = {
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory):
    """The default encoder, built once per test session from the installed package by the CLI."""
    out = tmp_path_factory.mktemp("models") / builder.DEFAULT_NAME
    assert builder.main(["--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    """One CPU Encoder over the MiniLM build, shared so its session is created once."""
    return Encoder(minilm_dir, device="cpu")


@pytest.fixture(scope="session")
def minilm_tokenizer() -> Path:
    return builder.default_source_dir() / builder.TOKENIZER_FILE


def with_head(model: onnx.ModelProto, n_outputs: int, *, seed: int = 0, name: str = "logits"):
    """Replace a pooled encoder's output by a random linear head: [batch, n_outputs] logits."""
    rng = np.random.default_rng(seed)
    hidden = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    weight = (rng.standard_normal((hidden, n_outputs)) * 0.5).astype(np.float32)
    bias = (rng.standard_normal(n_outputs) * 0.1).astype(np.float32)
    graph = model.graph
    pooled = graph.output[0].name
    graph.initializer.extend(
        [numpy_helper.from_array(weight, "head.weight"), numpy_helper.from_array(bias, "head.bias")]
    )
    graph.node.extend(
        [
            helper.make_node("MatMul", [pooled, "head.weight"], ["head/matmul"], name="head/mm"),
            helper.make_node("Add", ["head/matmul", "head.bias"], [name], name="head/add"),
        ]
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", n_outputs])
    )
    return model


def with_token_output(model: onnx.ModelProto, config: dict) -> onnx.ModelProto:
    """Make the builder's last layer the output: token embeddings [batch, sequence, hidden]."""
    last = f"layer{config['num_hidden_layers'] - 1}/out"
    graph = model.graph
    graph.node.append(helper.make_node("Identity", [last], ["last_hidden_state"], name="tokens"))
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            "last_hidden_state",
            TensorProto.FLOAT,
            ["batch", "sequence", config["hidden_size"]],
        )
    )
    return model


@pytest.fixture(scope="session")
def tiny_wide_weights():
    from tests.evaluations.test_onnx_builder import tiny_weights

    return tiny_weights(TINY_WIDE, seed=5)


@pytest.fixture
def tiny_classifier(tiny_wide_weights):
    """A tiny random BERT with a linear head: build(n_outputs, seed) -> ModelProto."""

    def build(n_outputs: int = 3, seed: int = 0) -> onnx.ModelProto:
        model = builder.build_bert_encoder(
            TINY_WIDE, tiny_wide_weights, pooling="cls", normalize=False
        )
        return with_head(model, n_outputs, seed=seed)

    return build
