"""Run a sentence encoder folder written by `builder` with ONNX Runtime.

Sessions and tokenizers are created lazily, on first use, so a Celery worker creates them
after it has forked. Texts are deduplicated, tokenized once, sorted by token count and padded
per batch, then returned in the caller's order.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from apps.evaluations.onnx.builder import MANIFEST_FILE, sha256_file

# The Rust tokenizer's thread pool does not survive a fork, and workers parallelise per
# process anyway.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return max(1, count or 1)
    if quota != "max":
        count = min(count, int(quota) // int(period))
    return max(1, count or 1)


def _gpu_present() -> bool:
    return Path("/proc/driver/nvidia").exists()


def create_session(
    model_path: Path,
    *,
    intra_op_threads: int,
    device: str = "auto",
    session_factory: Callable | None = None,
):
    """An ONNX Runtime session on CUDA when asked for and really running there, else on CPU.

    `device` is "cpu", "cuda" or "auto" (CUDA when the provider is installed and an NVIDIA
    driver is loaded). A CUDA provider that cannot load its libraries makes ONNX Runtime fall
    back to CPU silently, so the provider is read back from the session and logged.
    """
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    want_cuda = device == "cuda" or (device == "auto" and _gpu_present())
    requested: list = [CPU]
    if want_cuda and CUDA in ort.get_available_providers():
        # Grow the GPU arena by what is asked for, not in doubling steps.
        requested = [(CUDA, {"arena_extend_strategy": "kSameAsRequested"}), CPU]

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Batches of varying shape grow the CPU arena to its high-water mark for good. Measured on
    # MiniLM, 300 texts in batches of 64: 660 MiB resident afterwards with the arena, 260-410
    # MiB without, and throughput within 3 %, which is inside the noise here.
    options.enable_cpu_mem_arena = False
    factory = session_factory or ort.InferenceSession
    session = factory(str(model_path), sess_options=options, providers=requested)

    active = session.get_providers()[0]
    if want_cuda and active != CUDA:
        logger.warning(
            "encoder %s runs on %s: CUDA was requested but is unavailable (%d intra-op threads)",
            Path(model_path).parent.name,
            active,
            intra_op_threads,
        )
    else:
        logger.info(
            "encoder %s runs on %s (%d intra-op threads)",
            Path(model_path).parent.name,
            active,
            intra_op_threads,
        )
    return session


def load_tokenizer(path: Path, max_seq_length: int):
    """The tokenizer with truncation set and padding off (tokenizer.json may carry its own)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.no_padding()
    return tokenizer


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Right-pad to the longest sequence of this batch; the mask hides the padding."""
    length = max(len(ids) for ids in token_ids)
    input_ids = np.full((len(token_ids), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(token_ids), length), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
    }


def score_batch(session, batch: dict[str, np.ndarray], output: str = "sentence_embedding"):
    """Run one padded batch, feeding exactly the inputs the session declares."""
    declared = [arg.name for arg in session.get_inputs()]
    missing = [name for name in declared if name not in batch]
    if missing:
        raise ValueError(f"The model needs inputs the batch lacks: {missing}")
    return session.run([output], {name: batch[name] for name in declared})[0]


class LazyModel:
    """An ONNX session and its tokenizer, opened on first use and shared by the threads of
    one process; the model file is checked against `sha256` (when given) before it runs."""

    def __init__(
        self,
        model_path: Path,
        tokenizer_path: Path,
        *,
        max_seq_length: int,
        sha256: str | None,
        concurrency: int = 1,
        intra_op_threads: int | None = None,
        device: str = "auto",
        session_factory: Callable | None = None,
    ) -> None:
        self.model_path, self.tokenizer_path = Path(model_path), Path(tokenizer_path)
        self.max_seq_length = int(max_seq_length)
        if self.max_seq_length < 1:
            raise ValueError("max_seq_length must be at least 1.")
        self.sha256 = sha256
        # Worker processes share the CPUs: each gets its slice unless told otherwise.
        self.intra_op_threads = intra_op_threads or max(1, available_cpus() // max(1, concurrency))
        self.device = device
        self._session_factory = session_factory
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _opened(self, session) -> None:
        """Called once with the new session, before other threads can see it."""

    @property
    def session(self):
        if self._session is None:
            with self._lock:
                if self._session is None:
                    if self.sha256 and sha256_file(self.model_path) != self.sha256:
                        raise RuntimeError(f"{self.model_path} does not match its sha256.")
                    session = create_session(
                        self.model_path,
                        intra_op_threads=self.intra_op_threads,
                        device=self.device,
                        session_factory=self._session_factory,
                    )
                    self._opened(session)
                    self._session = session
        return self._session

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(self.tokenizer_path, self.max_seq_length)
        return self._tokenizer

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]


class Encoder(LazyModel):
    """A built sentence encoder (a folder with its manifest): deduplicated, length-sorted
    batches; `verify` checks the model against the manifest's sha256 on first use."""

    def __init__(
        self,
        model_dir: Path | str,
        *,
        concurrency: int = 1,
        intra_op_threads: int | None = None,
        device: str = "auto",
        verify: bool = True,
        session_factory: Callable | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = json.loads((self.model_dir / MANIFEST_FILE).read_text())
        self.dimension = int(self.manifest["dimension"])
        self.output = self.manifest["model"]["output"]
        super().__init__(
            self.model_dir / self.manifest["model"]["file"],
            self.model_dir / self.manifest["tokenizer"]["file"],
            max_seq_length=self.manifest["max_seq_length"],
            sha256=self.manifest["model"]["sha256"] if verify else None,
            concurrency=concurrency,
            intra_op_threads=intra_op_threads,
            device=device,
            session_factory=session_factory,
        )

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        # sentence-transformers strips surrounding whitespace before tokenizing.
        return [
            encoding.ids for encoding in self.tokenizer.encode_batch([t.strip() for t in texts])
        ]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embeddings [len(texts), dimension] in the order given; equal texts are run once."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string.")
        keys = [text.strip() for text in texts]
        unique = list(dict.fromkeys(keys))
        embeddings = np.empty((len(unique), self.dimension), dtype=np.float32)
        if unique:
            # Tokenized once; sorting by token count keeps the padding of each batch small.
            token_ids = self.tokenize(unique)
            order = sorted(range(len(unique)), key=lambda i: len(token_ids[i]))
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                batch = pad_batch([token_ids[i] for i in rows])
                embeddings[rows] = score_batch(self.session, batch, self.output)
        position = {key: i for i, key in enumerate(unique)}
        return embeddings[[position[key] for key in keys]].reshape(len(keys), self.dimension)
