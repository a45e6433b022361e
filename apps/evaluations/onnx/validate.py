"""Check an uploaded ONNX artifact before anything runs it, and read Optimum export folders.

`inspect_artifact` answers "can our runners use this file for this task?" with a report whose
`problems` are plain sentences, one per failed check, in the order the checks ran. Checks that
would be meaningless after an earlier failure (running a file that is not ONNX, say) are
skipped. The file's size is checked before a byte of it is parsed, its magic bytes before
protobuf sees it (pickles are never unpickled), its IR version and opset before ONNX Runtime
loads it, and last a two-text smoke run proves the tokenizer and the graph agree.

`import_optimum_folder` reads what a Hugging Face Optimum / sentence-transformers export
declares about itself (task, labels, sequence length, pooling) so an upload needs no forms.

No Django here: the artifact services call these, and tests call them directly.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SENTENCE_EMBEDDING = "sentence_embedding"
SEQUENCE_CLASSIFICATION = "sequence_classification"
CROSS_ENCODER = "cross_encoder"
TASKS = (SENTENCE_EMBEDDING, SEQUENCE_CLASSIFICATION, CROSS_ENCODER)

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
POOLINGS = ("mean", "cls", "max")
FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
# Output names that say what an output is, so one is never mistaken for the other kind.
EMBEDDING_OUTPUTS = frozenset(
    {"sentence_embedding", "embeddings", "token_embeddings", "last_hidden_state", "pooler_output"}
)
SCORE_OUTPUTS = frozenset({"logits", "scores", "probabilities"})
# One ONNX protobuf file cannot exceed 2 GiB; bigger models keep weights in external files.
DEFAULT_MAX_BYTES = 1 << 30
# Without a declared max_seq_length the smoke run truncates its long probe here.
SMOKE_SEQ_LENGTH = 128

PROBE_TEXT = "Refunds are accepted within 30 days of purchase."
PROBE_PAIR = ("How long do I have to ask for a refund?", PROBE_TEXT)


class ArtifactImportError(ValueError):
    """A model folder lacks a file it needs, or declares something we cannot run."""


@dataclass
class ArtifactReport:
    """What `inspect_artifact` found. `ok` is true exactly when `problems` is empty."""

    task: str
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    size_bytes: int = 0
    sha256: str = ""
    ir_version: int | None = None
    opset: int | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""  # the output the runners read
    needs_pooling: bool = False  # token embeddings [batch, seq, dim]: the runner pools them
    normalized: bool | None = None  # embeddings already have unit length (seen in the smoke run)
    dimension: int | None = None
    n_labels: int | None = None
    labels: list[str] | None = None
    max_seq_length: int | None = None
    vocab_size: int | None = None
    embedding_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- What the installed ONNX Runtime accepts ------------------------------------------------


def _probe_model(ir_version: int, opset: int) -> bytes:
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [value],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


def _loads(ir_version: int, opset: int) -> str | None:
    """None when ONNX Runtime loads the probe model, else its error message."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(_probe_model(ir_version, opset), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any refusal is the answer we are after
        return str(exc)
    return None


def _highest_accepted(try_value, pattern: str, start: int) -> int:
    """Read the limit from ONNX Runtime's refusal of an absurd value; else count down."""
    message = try_value(1000)
    found = re.search(pattern, message or "")
    if found:
        return int(found.group(1))
    for value in range(start, 0, -1):
        if try_value(value) is None:
            return value
    return 0


@functools.lru_cache(maxsize=1)
def runtime_limits() -> dict[str, Any]:
    """The installed ONNX Runtime's version, highest IR version and highest ai.onnx opset.

    ONNX Runtime exposes neither number to Python, and the onnx package's own (IR 14, opset 28
    for onnx 1.23) run ahead of it. So a one-node model is loaded with an impossible value and
    the limit read from the refusal ("max supported IR version: 13", "... is till opset 26"
    for 1.31); if the wording ever changes, values are tried downwards until one loads.
    """
    import onnx
    import onnxruntime as ort

    max_ir = _highest_accepted(
        lambda ir: _loads(ir, 13), r"max supported IR version: (\d+)", onnx.IR_VERSION + 2
    )
    max_opset = _highest_accepted(
        lambda opset: _loads(8, opset),
        r"is till opset (\d+)",
        onnx.defs.onnx_opset_version() + 2,
    )
    return {"onnxruntime": ort.__version__, "max_ir_version": max_ir, "max_opset": max_opset}


# --- Reading the graph ----------------------------------------------------------------------


def _sniff(head: bytes) -> str | None:
    """A reason when the first bytes say the file is some other well-known format."""
    if head.startswith(b"PK\x03\x04"):
        return (
            "is a zip archive, not an ONNX model (PyTorch saves .pt/.pth/.bin files as zipped "
            "pickles). Export the model to ONNX, for example with Hugging Face Optimum."
        )
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (
            "is a Python pickle, not an ONNX model. Pickles can run code when loaded, so they "
            "are never opened here; export the model to ONNX."
        )
    if len(head) > 9 and head[8:10] == b'{"':
        return "is a safetensors weights file, not an ONNX graph; export the model to ONNX."
    if head.startswith(b"\x89HDF"):
        return "is an HDF5 (Keras) file, not an ONNX model."
    if head.startswith(b"GGUF"):
        return "is a GGUF (llama.cpp) file, not an ONNX model."
    return None


def sniff_upload(head: bytes) -> str | None:
    """Why an upload whose first bytes are `head` cannot be an ONNX model, else None.

    Cheap enough for the web process, so text, archives and other formats are refused before
    they are stored; parsing the whole file is left to the worker.
    """
    other = _sniff(head)
    if other:
        return other
    # Protobuf writers emit fields in number order, so a model opens with field 1, its IR
    # version: tag 0x08 and a one-byte varint.
    if len(head) >= 2 and head[0] == 0x08 and 0 < head[1] < 0x80:
        return None
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "is text, not an ONNX model (a binary protobuf file). Export the model to ONNX."
    return (
        "is not an ONNX model: an ONNX file opens with its IR version (protobuf field 1), and "
        "this one does not."
    )


def _shape(dims) -> list[int | str | None]:
    return [d if isinstance(d, int) else (str(d) if d is not None else None) for d in dims]


def _describe(args) -> list[dict[str, Any]]:
    return [{"name": a.name, "type": a.type, "shape": _shape(a.shape or [])} for a in args]


def _default_opset(model) -> int | None:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def _external_files(model, base: Path) -> tuple[list[Path], list[str]]:
    """Files the initializers' external data names, and reasons any of them is unsafe/missing."""
    files: dict[Path, None] = {}
    problems: list[str] = []
    folder = base.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        relative = Path(location)
        if not location or relative.is_absolute() or ".." in relative.parts:
            problems.append(
                f"Weight {tensor.name!r} points at external data {location!r} outside the "
                "model's folder; only files next to the model are allowed."
            )
            continue
        path = base / relative
        if not path.resolve().is_relative_to(folder):  # a link (to a file or a folder) out
            problems.append(
                f"Weight {tensor.name!r} points at external data {location!r}, a link to a file "
                "outside the model's folder; only files next to the model are allowed."
            )
            continue
        if not path.is_file():
            problems.append(
                f"Weight {tensor.name!r} is stored in {location!r}, which is missing; upload it "
                "next to the model file."
            )
            continue
        files[path] = None
    return list(files), problems


def embedding_rows(model) -> int | None:
    """Rows of the word-embedding table: the initializer a Gather looks `input_ids` up in."""
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == "input_ids":
            table = initializers.get(node.input[0])
            if table is not None and len(table.dims) == 2:
                return int(table.dims[0])
    return None


def select_output(outputs: list[dict[str, Any]], task: str) -> tuple[str | None, bool, str]:
    """(output name, needs pooling, reason when none fits) for a task.

    Embeddings: `sentence_embedding`/`embeddings` [batch, dim], else token embeddings
    (`last_hidden_state`/`token_embeddings` [batch, seq, dim]) that the runner pools, else the
    only float output of rank 2 or 3. An Optimum feature-extraction export's `pooler_output` is
    BERT's CLS head, not a sentence embedding, so the token embeddings win over it.
    Classifiers and cross-encoders: `logits`, else the only float output of rank 2.
    """
    floats = [o for o in outputs if o["type"] in FLOAT_TYPES]
    by_name = {o["name"]: o for o in floats}
    listed = ", ".join(f"{o['name']} {o['type']} {o['shape']}" for o in outputs) or "none"
    if task == SENTENCE_EMBEDDING:
        for name in ("sentence_embedding", "embeddings"):
            if name in by_name and len(by_name[name]["shape"]) == 2:
                return name, False, ""
        for name in ("last_hidden_state", "token_embeddings"):
            if name in by_name and len(by_name[name]["shape"]) == 3:
                return name, True, ""
        candidates = [o for o in floats if o["name"] not in SCORE_OUTPUTS]
        for rank, pooled in ((2, False), (3, True)):
            fitting = [o for o in candidates if len(o["shape"]) == rank]
            if len(fitting) == 1:
                return fitting[0]["name"], pooled, ""
        return (
            None,
            False,
            "No output is a sentence embedding: expected one float output "
            f"[batch, dimension] (or token embeddings [batch, sequence, dimension]); the model "
            f"has {listed}.",
        )
    if "logits" in by_name and len(by_name["logits"]["shape"]) == 2:
        return "logits", False, ""
    fitting = [o for o in floats if len(o["shape"]) == 2 and o["name"] not in EMBEDDING_OUTPUTS]
    if len(fitting) == 1:
        return fitting[0]["name"], False, ""
    kind = "classifier" if task == SEQUENCE_CLASSIFICATION else "cross-encoder"
    return (
        None,
        False,
        f"No output fits a {kind}: expected float logits [batch, labels]; the model has {listed}.",
    )


def pool(tokens: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Token embeddings [batch, seq, dim] to one row per text, ignoring padding."""
    tokens = tokens.astype(np.float32, copy=False)
    weights = mask[:, :, None].astype(np.float32)
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "max":
        return np.where(weights > 0, tokens, -np.inf).max(axis=1)
    if pooling != "mean":
        raise ValueError(f"Unsupported pooling {pooling!r}; use one of {POOLINGS}.")
    return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


# --- The checks -----------------------------------------------------------------------------


def _smoke_feeds(tokenizer, task: str, max_seq_length: int) -> tuple[dict, list[int]]:
    from apps.evaluations.onnx.encoder import pad_batch

    long_text = " ".join(["evaluation"] * (max_seq_length + 8))
    if task == CROSS_ENCODER:
        encodings = tokenizer.encode_batch([PROBE_PAIR, (long_text, long_text)])
    else:
        encodings = tokenizer.encode_batch([PROBE_TEXT, long_text])
    batch = pad_batch([e.ids for e in encodings])
    for row, encoding in enumerate(encodings):
        batch["token_type_ids"][row, : len(encoding.type_ids)] = encoding.type_ids
    return batch, [len(e.ids) for e in encodings]


def inspect_artifact(
    model_path: Path | str,
    *,
    task: str,
    tokenizer_path: Path | str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    labels: list[str] | None = None,
    max_seq_length: int | None = None,
    pooling: str = "mean",
    device: str = "cpu",
) -> ArtifactReport:
    """Check that `model_path` (with its tokenizer) can serve `task`; never raises for a bad file.

    `labels` are the class names in output order (classifiers: required, and their number must
    equal the logits' width). `max_seq_length` is what the runner will truncate to; the smoke
    run feeds one text that long, which catches position tables shorter than it.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    report = ArtifactReport(task=task, labels=list(labels) if labels is not None else None)
    report.max_seq_length = max_seq_length
    problems = report.problems
    try:
        _inspect(report, Path(model_path), tokenizer_path, max_bytes, pooling, device)
    finally:
        report.ok = not problems
    return report


def _inspect(report, path: Path, tokenizer_path, max_bytes, pooling, device) -> None:
    import onnx

    from apps.evaluations.onnx.builder import sha256_file

    problems, task = report.problems, report.task
    if not path.is_file():
        problems.append(f"There is no model file at {path.name!r}.")
        return
    report.size_bytes = path.stat().st_size
    if report.size_bytes > max_bytes:
        problems.append(
            f"The model file is {report.size_bytes:,} bytes, over the {max_bytes:,}-byte limit."
        )
        return
    if report.size_bytes == 0:
        problems.append("The model file is empty.")
        return
    with open(path, "rb") as fh:
        head = fh.read(16)
    other_format = _sniff(head)
    if other_format:
        problems.append(f"The file {other_format}")
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        problems.append(f"The file is not an ONNX model: it does not parse as one ({exc}).")
        return
    if model.ir_version < 1 or not model.HasField("graph") or not model.graph.output:
        problems.append("The file is not an ONNX model: it has no IR version or no graph outputs.")
        return
    report.sha256 = sha256_file(path)
    report.ir_version = int(model.ir_version)
    report.opset = _default_opset(model)
    limits = report.runtime = runtime_limits()

    external, external_problems = _external_files(model, path.parent)
    problems.extend(external_problems)
    total = report.size_bytes + sum(f.stat().st_size for f in external)
    if external and total > max_bytes:
        problems.append(
            f"The model and its external weights are {total:,} bytes, over the "
            f"{max_bytes:,}-byte limit."
        )
    if report.ir_version > limits["max_ir_version"]:
        problems.append(
            f"The model's IR version is {report.ir_version}, newer than ONNX Runtime "
            f"{limits['onnxruntime']} reads (IR {limits['max_ir_version']} at most). Re-save it "
            f"with model.ir_version = {limits['max_ir_version']} or lower (the exporter's onnx "
            "package is newer than the runtime)."
        )
    if report.opset is not None and report.opset > limits["max_opset"]:
        problems.append(
            f"The model uses ai.onnx opset {report.opset}; ONNX Runtime "
            f"{limits['onnxruntime']} supports opset {limits['max_opset']} at most. Export "
            f"again with opset {limits['max_opset']} or lower."
        )
    if problems:
        return

    report.embedding_rows = embedding_rows(model)
    del model
    try:
        from apps.evaluations.onnx.encoder import create_session

        session = create_session(path, intra_op_threads=1, device=device)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        problems.append(f"ONNX Runtime could not load the model: {exc}")
        return
    report.providers = list(session.get_providers())
    report.inputs = _describe(session.get_inputs())
    report.outputs = _describe(session.get_outputs())

    # Inputs: the runners feed int64 [batch, sequence] text inputs and nothing else.
    names = [i["name"] for i in report.inputs]
    unknown = [n for n in names if n not in TEXT_INPUTS]
    if unknown:
        problems.append(
            f"The model takes input(s) {', '.join(unknown)} that a text runner cannot feed; "
            f"a text model takes only {', '.join(TEXT_INPUTS)}."
        )
    if "input_ids" not in names:
        problems.append("The model has no input_ids input.")
    if "input_ids" in names and "attention_mask" not in names:
        problems.append(
            "The model has no attention_mask input, so padding in a batch would change its "
            "outputs; export it with attention_mask."
        )
    for spec in report.inputs:
        if spec["name"] in TEXT_INPUTS and (
            spec["type"] != "tensor(int64)" or len(spec["shape"]) != 2
        ):
            problems.append(
                f"Input {spec['name']} is {spec['type']} {spec['shape']}; the runner feeds "
                "int64 [batch, sequence]."
            )
        elif spec["name"] in TEXT_INPUTS and any(isinstance(d, int) for d in spec["shape"]):
            problems.append(
                f"Input {spec['name']} has fixed dimensions {spec['shape']}; the runner feeds "
                "batches of any size and length, so export it with dynamic axes "
                "[batch, sequence]."
            )

    output, needs_pooling, reason = select_output(report.outputs, task)
    if output is None:
        problems.append(reason)
    else:
        report.output, report.needs_pooling = output, needs_pooling
        shape = next(o["shape"] for o in report.outputs if o["name"] == output)
        width = shape[-1] if isinstance(shape[-1], int) else None
        if task == SENTENCE_EMBEDDING:
            report.dimension = width
        else:
            report.n_labels = width
    if needs_pooling and pooling not in POOLINGS:
        problems.append(f"Pooling {pooling!r} is not supported; use one of {POOLINGS}.")
    if task == SEQUENCE_CLASSIFICATION and report.labels is None:
        problems.append("A classifier needs its label names, in the order of its outputs.")
    if report.labels is not None and report.n_labels is not None:
        _check_labels(report)

    # The tokenizer, then one real batch of two texts through both.
    tokenizer = _load_tokenizer(report, tokenizer_path)
    if tokenizer is None or problems:
        return
    _smoke_run(report, session, tokenizer, pooling)


def _check_labels(report: ArtifactReport) -> None:
    if len(report.labels) != report.n_labels:
        report.problems.append(
            f"{len(report.labels)} label(s) were given ({', '.join(report.labels)}) but the "
            f"model outputs {report.n_labels} logits per text."
        )
    elif len(set(report.labels)) != len(report.labels):
        report.problems.append("The label names are not unique.")


def _load_tokenizer(report: ArtifactReport, tokenizer_path):
    from apps.evaluations.onnx.encoder import load_tokenizer

    if tokenizer_path is None or not Path(tokenizer_path).is_file():
        report.problems.append(
            "The tokenizer is missing: a text model needs the tokenizer.json it was exported "
            "with (the Hugging Face fast-tokenizer file)."
        )
        return None
    length = report.max_seq_length or SMOKE_SEQ_LENGTH
    try:
        tokenizer = load_tokenizer(Path(tokenizer_path), length)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception
        report.problems.append(f"The tokenizer could not be loaded: {exc}")
        return None
    report.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if report.embedding_rows is not None and report.vocab_size > report.embedding_rows:
        report.problems.append(
            f"The tokenizer has {report.vocab_size:,} tokens but the model's word embedding has "
            f"{report.embedding_rows:,} rows: they do not belong together."
        )
        return None
    return tokenizer


def _smoke_run(report: ArtifactReport, session, tokenizer, pooling: str) -> None:
    from apps.evaluations.onnx.encoder import score_batch

    problems = report.problems
    length = report.max_seq_length or SMOKE_SEQ_LENGTH
    batch, lengths = _smoke_feeds(tokenizer, report.task, length)
    try:
        result = np.asarray(score_batch(session, batch, report.output))
    except Exception as exc:  # noqa: BLE001
        problems.append(
            f"The model fails on a batch of two texts ({lengths[0]} and {lengths[1]} tokens, "
            f"the longer at max_seq_length): {exc}"
        )
        return
    expected_rank = 3 if report.needs_pooling else 2
    if result.ndim != expected_rank or result.shape[0] != 2:
        problems.append(
            f"For a batch of 2 texts the model returned {report.output} of shape "
            f"{list(result.shape)}, not [2, …] of rank {expected_rank}."
        )
        return
    if report.needs_pooling and result.shape[1] != batch["input_ids"].shape[1]:
        problems.append(
            f"The token embeddings have {result.shape[1]} positions for a "
            f"{batch['input_ids'].shape[1]}-token batch."
        )
        return
    if not np.isfinite(result).all():
        problems.append("The model returned NaN or infinite values on ordinary text.")
        return
    width = int(result.shape[-1])
    if report.task == SENTENCE_EMBEDDING:
        if report.dimension is not None and report.dimension != width:
            problems.append(f"The output declares {report.dimension} dimensions but has {width}.")
        report.dimension = width
        rows = pool(result, batch["attention_mask"], pooling) if report.needs_pooling else result
        norms = np.linalg.norm(rows, axis=1)
        if (norms == 0).any():
            problems.append("The model returned an all-zero embedding.")
        report.normalized = bool(np.allclose(norms, 1.0, atol=1e-3))
        if np.allclose(rows[0], rows[1], atol=1e-6):
            report.warnings.append("Two different texts got the same embedding.")
    else:
        report.n_labels = width
        if report.labels is not None:
            _check_labels(report)
        if report.task == CROSS_ENCODER and width > 2 and not report.labels:
            report.warnings.append(
                f"The cross-encoder outputs {width} logits; its score is the softmax of the "
                "last one unless a positive label is configured."
            )


# --- Hugging Face Optimum / sentence-transformers folders ------------------------------------

# Position tables of these models start after the padding index (RoBERTa's 514 rows serve 512).
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "bart"}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactImportError(f"{path.name} is not valid JSON: {exc}") from exc


def _pooling(folder: Path, modules: list[dict]) -> tuple[str, str | None]:
    """(pooling mode, config file used); sentence-transformers' default is mean."""
    paths = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")]
    candidates = [folder / p / "config.json" for p in paths] + [folder / "1_Pooling/config.json"]
    for config_path in candidates:
        if config_path.is_file():
            config = _read_json(config_path)
            if config.get("pooling_mode"):  # newer sentence-transformers write the mode itself
                modes = [str(config["pooling_mode"]).replace("_token", "")]
            else:
                modes = [
                    mode
                    for mode, key in (
                        ("mean", "pooling_mode_mean_tokens"),
                        ("cls", "pooling_mode_cls_token"),
                        ("max", "pooling_mode_max_tokens"),
                        ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens"),
                        ("weightedmean", "pooling_mode_weightedmean_tokens"),
                        ("lasttoken", "pooling_mode_lasttoken"),
                    )
                    if config.get(key)
                ]
            if len(modes) != 1 or modes[0] not in POOLINGS:
                raise ArtifactImportError(
                    f"{config_path.relative_to(folder)} asks for pooling {modes}; only "
                    f"{', '.join(POOLINGS)} are supported."
                )
            return modes[0], str(config_path)
    return "mean", None


def import_optimum_folder(folder: Path | str) -> dict[str, Any]:
    """What a Hugging Face Optimum export folder declares, for `inspect_artifact` and the runners.

    Needs model.onnx (or onnx/model.onnx, the sentence-transformers hub layout), tokenizer.json
    and config.json; reads the optional special_tokens_map.json, tokenizer_config.json,
    sentence_bert_config.json, modules.json and the Pooling module's config.json. Returns
    task (None when config.json does not tell), labels (id2label by id, classifiers only),
    max_seq_length and where it came from, pooling, normalize, dimension, pad_token_id,
    architectures, model_type and the paths of the files read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactImportError(f"{folder} is not a folder.")
    model_path = next(
        (p for p in (folder / "model.onnx", folder / "onnx" / "model.onnx") if p.is_file()), None
    )
    if model_path is None:
        raise ArtifactImportError(
            "The folder has no model.onnx: export the model with Optimum "
            "(optimum-cli export onnx --model <id> <folder>) and upload that folder."
        )
    tokenizer_path = folder / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ArtifactImportError(
            "The folder has no tokenizer.json (the fast-tokenizer file); vocab.txt or "
            "sentencepiece files alone are not enough."
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ArtifactImportError(
            "The folder has no config.json, so its architecture, labels and sequence length "
            "are unknown."
        )
    config = _read_json(config_path)
    paths = {"model": str(model_path), "tokenizer": str(tokenizer_path), "config": str(config_path)}
    optional = {}
    for key, name in (
        ("special_tokens_map", "special_tokens_map.json"),
        ("tokenizer_config", "tokenizer_config.json"),
        ("sentence_bert_config", "sentence_bert_config.json"),
        ("modules", "modules.json"),
    ):
        if (folder / name).is_file():
            paths[key] = str(folder / name)
            optional[key] = _read_json(folder / name)
    modules = optional.get("modules") or []
    if not isinstance(modules, list):
        raise ArtifactImportError("modules.json is not a list of modules.")

    architectures = [str(a) for a in config.get("architectures") or []]
    model_type = str(config.get("model_type") or "")
    id2label = config.get("id2label") or {}
    try:
        ordered = sorted(((int(k), str(v)) for k, v in id2label.items()), key=lambda kv: kv[0])
    except (TypeError, ValueError, AttributeError) as exc:
        raise ArtifactImportError(f"config.json's id2label is not {{id: label}}: {exc}") from exc
    labels = [label for _, label in ordered]
    if [i for i, _ in ordered] != list(range(len(ordered))):
        raise ArtifactImportError("config.json's id2label ids are not 0, 1, 2, …")

    task, reason = None, "config.json names no architecture this product runs"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        single = len(labels) == 1 or config.get("num_labels") == 1
        if single or "sentence_transformers" in config:
            task = CROSS_ENCODER
            reason = f"{architectures[0]} with a single logit: a cross-encoder's relevance score"
        else:
            task = SEQUENCE_CLASSIFICATION
            reason = f"{architectures[0]} with {len(labels)} labels"
    elif (
        any(a.endswith("Model") for a in architectures)
        or modules
        or "sentence_bert_config" in optional
    ):
        task = SENTENCE_EMBEDDING
        reason = f"{(architectures or ['a sentence-transformers folder'])[0]}: an encoder"
    if task != SEQUENCE_CLASSIFICATION:
        labels = [] if task == SENTENCE_EMBEDDING else labels

    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and model_type in _OFFSET_POSITIONS:
        positions -= int(config.get("pad_token_id") or 1) + 1
    max_seq_length, source = None, None
    st_length = (optional.get("sentence_bert_config") or {}).get("max_seq_length")
    tok_length = (optional.get("tokenizer_config") or {}).get("model_max_length")
    if isinstance(st_length, int) and st_length > 0:
        max_seq_length, source = st_length, "sentence_bert_config.json max_seq_length"
    elif isinstance(tok_length, int) and 0 < tok_length < 1_000_000:  # unset is 1e30
        max_seq_length, source = tok_length, "tokenizer_config.json model_max_length"
    elif isinstance(positions, int) and positions > 0:
        max_seq_length, source = positions, "config.json max_position_embeddings"
    if max_seq_length is None:
        raise ArtifactImportError(
            "The maximum sequence length is declared nowhere (sentence_bert_config.json, "
            "tokenizer_config.json or config.json's max_position_embeddings)."
        )
    if isinstance(positions, int) and 0 < positions < max_seq_length:
        max_seq_length, source = positions, f"{source}, capped at the position embeddings"

    pooling, pooling_config = _pooling(folder, modules)
    if pooling_config:
        paths["pooling_config"] = pooling_config
    pad_token_id = config.get("pad_token_id")
    special = optional.get("special_tokens_map") or {}
    pad = special.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    if pad:
        from tokenizers import Tokenizer

        try:
            found = Tokenizer.from_file(str(tokenizer_path)).token_to_id(str(pad))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception
            raise ArtifactImportError(f"tokenizer.json could not be loaded: {exc}") from exc
        pad_token_id = found if found is not None else pad_token_id
    return {
        "task": task,
        "task_reason": reason,
        "labels": labels,
        "max_seq_length": int(max_seq_length),
        "max_seq_length_source": source,
        "pooling": pooling,
        "normalize": any(str(m.get("type", "")).endswith("Normalize") for m in modules),
        "dimension": config.get("hidden_size") if task == SENTENCE_EMBEDDING else None,
        "pad_token_id": pad_token_id if isinstance(pad_token_id, int) else None,
        "architectures": architectures,
        "model_type": model_type,
        "paths": paths,
    }
