"""Run classifier, cross-encoder and imported embedding artifacts; one runner per artifact.

Like `encoder.Encoder`, each runner creates its ONNX Runtime session and tokenizer lazily (in
the worker process, after fork), deduplicates its inputs, sorts them by token count, pads per
batch and returns results in the caller's order.

`get_runner(kind, model_dir, sha256)` keeps one runner, hence one session, per artifact per
process, keyed by the model's sha256. A folder's settings (labels, max_seq_length, pooling)
come from its manifest.json (the layout `builder.write_encoder_dir` writes, plus `labels`),
else from a Hugging Face Optimum export's JSON files, else from keyword arguments.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apps.evaluations.onnx import validate
from apps.evaluations.onnx.builder import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE
from apps.evaluations.onnx.encoder import Encoder, LazyModel, pad_batch, score_batch

ENCODER = "encoder"
CLASSIFIER = "classifier"
CROSS_ENCODER = "cross_encoder"
KINDS = (ENCODER, CLASSIFIER, CROSS_ENCODER)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _paths(source) -> tuple[Path, Path]:
    """(model, tokenizer) from a folder (model.onnx, tokenizer.json) or a (model, tokenizer) pair."""
    if isinstance(source, (tuple, list)):
        model_path, tokenizer_path = source
        return Path(model_path), Path(tokenizer_path)
    folder = Path(source)
    model_path = folder / MODEL_FILE
    if not model_path.is_file() and (folder / "onnx" / MODEL_FILE).is_file():
        model_path = folder / "onnx" / MODEL_FILE
    return model_path, folder / TOKENIZER_FILE


class _TextRunner(LazyModel):
    """A tokenizer-fronted model from a folder or a (model, tokenizer) pair: length-sorted
    batching, and the output picked from the model's declared outputs when not named."""

    kind = ""

    def __init__(
        self,
        model_dir_or_paths,
        *,
        max_seq_length: int,
        output: str | None = None,
        sha256: str | None = None,
        pad_id: int = 0,
        concurrency: int = 1,
        intra_op_threads: int | None = None,
        device: str = "auto",
        session_factory: Callable | None = None,
    ) -> None:
        super().__init__(
            *_paths(model_dir_or_paths),
            max_seq_length=max_seq_length,
            sha256=sha256,
            concurrency=concurrency,
            intra_op_threads=intra_op_threads,
            device=device,
            session_factory=session_factory,
        )
        self.pad_id = pad_id
        self._output = output

    def _opened(self, session) -> None:
        if self._output is None:
            self._output = self._pick_output(session)

    def _pick_output(self, session) -> str:
        outputs = [
            {"name": o.name, "type": o.type, "shape": list(o.shape or [])}
            for o in session.get_outputs()
        ]
        name, self._needs_pooling, reason = validate.select_output(outputs, self._task)
        if name is None:
            raise RuntimeError(f"{self.model_path}: {reason}")
        return name

    _task = ""
    _needs_pooling = False

    @property
    def output(self) -> str:
        self.session  # noqa: B018 - the output is read from the session
        return self._output

    def _run(self, encodings: list, batch_size: int, width: int | None) -> np.ndarray:
        """Model outputs for tokenized inputs, one row per encoding, in their order."""
        if not encodings:
            return np.empty((0, width or 0), dtype=np.float32)
        session, output = self.session, self.output
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        rows: list[np.ndarray | None] = [None] * len(encodings)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = pad_batch([encodings[i].ids for i in chosen], self.pad_id)
            for row, i in enumerate(chosen):
                types = encodings[i].type_ids
                batch["token_type_ids"][row, : len(types)] = types
            result = np.asarray(score_batch(session, batch, output), dtype=np.float32)
            result = self._reduce(result, batch["attention_mask"])
            for row, i in enumerate(chosen):
                rows[i] = result[row]
        return np.stack(rows).astype(np.float32, copy=False)

    def _reduce(self, result: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return result


class Classifier(_TextRunner):
    """A sequence classifier: `predict_proba(texts)` [n, len(labels)] and `predict(texts)`.

    `activation` turns logits into probabilities: "softmax" (one label per text, rows sum
    to 1), "sigmoid" (multi-label, each column on its own) or "none" (the model already
    outputs probabilities).
    """

    kind = CLASSIFIER
    _task = validate.SEQUENCE_CLASSIFICATION

    def __init__(
        self,
        model_dir_or_paths,
        *,
        labels: Sequence[str],
        max_seq_length: int,
        activation: str = "softmax",
        **options: Any,
    ) -> None:
        super().__init__(model_dir_or_paths, max_seq_length=max_seq_length, **options)
        self.labels = [str(label) for label in labels]
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError("A classifier needs unique label names, in output order.")
        if activation not in ("softmax", "sigmoid", "none"):
            raise ValueError("activation must be softmax, sigmoid or none.")
        self.activation = activation

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities [len(texts), len(labels)] in the order given; equal texts run once."""
        if isinstance(texts, str):
            raise TypeError("predict_proba() takes a sequence of texts, not one string.")
        keys = [text.strip() for text in texts]
        unique = list(dict.fromkeys(keys))
        logits = self._run(self.tokenizer.encode_batch(unique), batch_size, len(self.labels))
        if logits.shape[1] != len(self.labels):
            raise RuntimeError(
                f"{self.model_path} outputs {logits.shape[1]} logits but {len(self.labels)} "
                "labels are configured."
            )
        if self.activation == "softmax":
            probabilities = softmax(logits)
        elif self.activation == "sigmoid":
            probabilities = sigmoid(logits)
        else:
            probabilities = logits
        position = {key: i for i, key in enumerate(unique)}
        return probabilities[[position[key] for key in keys]].reshape(len(keys), len(self.labels))

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[str]:
        """The most probable label of each text."""
        probabilities = self.predict_proba(texts, batch_size)
        return [self.labels[i] for i in probabilities.argmax(axis=1)]


class CrossEncoder(_TextRunner):
    """Scores (a, b) text pairs in one pass: `score_pairs(pairs)` -> [n] in [0, 1].

    Pairs are tokenized together ([CLS] a [SEP] b [SEP], with token_type_ids 0 then 1) and
    truncated longest-first to max_seq_length. One logit: its sigmoid, as sentence-transformers'
    CrossEncoder. Several: the softmax probability of column `positive_index` (default the
    last: label 1 of a binary head).
    """

    kind = CROSS_ENCODER
    _task = validate.CROSS_ENCODER

    def __init__(
        self,
        model_dir_or_paths,
        *,
        max_seq_length: int,
        positive_index: int | None = None,
        labels: Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model_dir_or_paths, max_seq_length=max_seq_length, **options)
        self.positive_index = positive_index
        self.labels = list(labels or [])

    def score_pairs(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        keys = [(str(a).strip(), str(b).strip()) for a, b in pairs]
        unique = list(dict.fromkeys(keys))
        logits = self._run(self.tokenizer.encode_batch(unique), batch_size, 1)
        if logits.shape[1] == 1:
            scores = sigmoid(logits[:, 0])
        else:
            column = logits.shape[1] - 1 if self.positive_index is None else self.positive_index
            scores = softmax(logits)[:, column]
        position = {key: i for i, key in enumerate(unique)}
        return scores[[position[key] for key in keys]].astype(np.float32).reshape(len(keys))


class EmbeddingRunner(_TextRunner):
    """An imported sentence encoder: `encode(texts)` -> L2-normalised rows, like `Encoder`.

    Token-embedding outputs ([batch, sequence, dim], e.g. an Optimum feature-extraction
    export's last_hidden_state) are pooled here with the attention mask (`pooling`: mean,
    cls or max). Rows are always normalised, since every scorer compares by cosine.
    """

    kind = ENCODER
    _task = validate.SENTENCE_EMBEDDING

    def __init__(
        self,
        model_dir_or_paths,
        *,
        max_seq_length: int,
        pooling: str = "mean",
        dimension: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model_dir_or_paths, max_seq_length=max_seq_length, **options)
        if pooling not in validate.POOLINGS:
            raise ValueError(f"pooling must be one of {validate.POOLINGS}.")
        self.pooling = pooling
        self.dimension = dimension

    def _reduce(self, result: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if result.ndim == 3:
            result = validate.pool(result, mask, self.pooling)
        norms = np.maximum(np.linalg.norm(result, axis=1, keepdims=True), 1e-12)
        return result / norms

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string.")
        keys = [text.strip() for text in texts]
        unique = list(dict.fromkeys(keys))
        rows = self._run(self.tokenizer.encode_batch(unique), batch_size, self.dimension)
        if self.dimension is None and rows.shape[0]:
            self.dimension = int(rows.shape[1])
        position = {key: i for i, key in enumerate(unique)}
        return rows[[position[key] for key in keys]].reshape(len(keys), rows.shape[1])


# --- One runner per artifact per process ----------------------------------------------------

_RUNNERS: dict[tuple[str, str], Any] = {}
_RUNNERS_LOCK = threading.Lock()
_RUNNERS_PID = os.getpid()

_SESSION_OPTIONS = ("concurrency", "intra_op_threads", "device", "session_factory")


def folder_settings(model_dir: Path | str) -> dict[str, Any]:
    """labels, max_seq_length, pooling, pad_id a folder declares (manifest.json or Optimum files)."""
    folder = Path(model_dir)
    manifest_path = folder / MANIFEST_FILE
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        keys = ("labels", "max_seq_length", "pooling", "pad_id", "dimension")
        return {key: manifest[key] for key in keys if manifest.get(key) is not None}
    if (folder / "config.json").is_file():
        declared = validate.import_optimum_folder(folder)
        settings = {"max_seq_length": declared["max_seq_length"], "pooling": declared["pooling"]}
        if declared["labels"]:
            settings["labels"] = declared["labels"]
        if declared["pad_token_id"] is not None:
            settings["pad_id"] = declared["pad_token_id"]
        return settings
    return {}


def make_runner(kind: str, model_dir: Path | str, sha256: str | None = None, **options: Any):
    """A new runner for a folder; explicit options win over what the folder declares."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    folder = Path(model_dir)
    if kind == ENCODER and (folder / MANIFEST_FILE).is_file():
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        if manifest.get("builder_version") is not None:  # written by builder / quantize
            if sha256 and manifest["model"]["sha256"] != sha256:
                raise RuntimeError(f"{folder}'s manifest names another model than {sha256}.")
            return Encoder(folder, **{k: v for k, v in options.items() if k in _SESSION_OPTIONS})
    settings = {**folder_settings(folder), **options}
    if "max_seq_length" not in settings:
        raise ValueError(f"{folder} declares no max_seq_length; pass one.")
    if kind == CLASSIFIER:
        settings.pop("pooling", None)
        settings.pop("dimension", None)
        if "labels" not in settings:
            raise ValueError(f"{folder} declares no labels; pass them.")
        return Classifier(folder, sha256=sha256, **settings)
    if kind == CROSS_ENCODER:
        settings.pop("pooling", None)
        settings.pop("dimension", None)
        return CrossEncoder(folder, sha256=sha256, **settings)
    settings.pop("labels", None)
    return EmbeddingRunner(folder, sha256=sha256, **settings)


def get_runner(kind: str, model_dir: Path | str, sha256: str, **options: Any):
    """The process's runner for this artifact, created on first use (thread-safe).

    Keyed by (kind, sha256): the same model file is one session however many suites use it.
    A forked child starts with an empty cache, never a parent's session. The model file is
    checked against `sha256` when its session is created.
    """
    global _RUNNERS_PID
    key = (kind, sha256)
    with _RUNNERS_LOCK:
        if os.getpid() != _RUNNERS_PID:
            _RUNNERS.clear()
            _RUNNERS_PID = os.getpid()
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = _RUNNERS[key] = make_runner(kind, model_dir, sha256, **options)
    return runner


def clear_runners() -> None:
    """Forget every cached runner (tests; an artifact retired for good)."""
    with _RUNNERS_LOCK:
        _RUNNERS.clear()
