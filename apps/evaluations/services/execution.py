"""What a batch does between claiming and writing: produce outputs, then score them.

ONNX runners are held once per artifact per worker process (`runners.get_runner`), and
embeddings are remembered per process across the batches of a run, so a context passage
shared by many cases is embedded once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from django.conf import settings
from django.db import transaction

from apps.core.choices import stricter_tier
from apps.registry import selectors as registry_selectors
from apps.registry import services as registry_services

from ..choices import ArtifactStatus, OutputSource
from ..models import Case, CaseResult, ModelArtifact, Run, RunOutput
from ..scoring import base as scoring
from ..scoring import builtin, semantic  # noqa: F401  (register the scorers)

logger = logging.getLogger(__name__)

KIND_OF_NEED = {"encoder": "encoder", "classifier": "classifier", "cross_encoder": "cross_encoder"}


class RetryBatch(Exception):
    """This attempt failed; the task retries it (the batch is pending again)."""


@dataclass
class Produced:
    output: str = ""
    error: str = ""
    latency_ms: float | None = None


def scorer_artifacts(scorers: Sequence[Mapping]) -> dict[str, str]:
    """{artifact slug: sha256} of every ONNX scorer, recorded on the run."""
    slugs = {item["artifact"] for item in scorers if item.get("artifact")}
    return dict(ModelArtifact.objects.filter(slug__in=slugs).values_list("slug", "sha256"))


class CachedEncoder:
    """An encoder that remembers embeddings by text (bounded, least recently used first out)."""

    def __init__(self, encoder, capacity: int) -> None:
        self.encoder = encoder
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        keys = [text.strip() for text in texts]
        with self._lock:
            missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            fresh = self.encoder.encode(missing, batch_size=batch_size)
            with self._lock:
                for key, row in zip(missing, fresh, strict=True):
                    self._cache[key] = row
                    self._cache.move_to_end(key)
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        with self._lock:
            rows = []
            for key in keys:
                row = self._cache.get(key)
                if row is None:  # evicted by a concurrent call: recompute this one
                    row = self.encoder.encode([key])[0]
                rows.append(row)
        if not rows:
            return np.zeros((0, getattr(self.encoder, "dimension", 0)), dtype=np.float32)
        return np.stack(rows)


_CACHED: dict[str, CachedEncoder] = {}
_CACHED_LOCK = threading.Lock()


def _runner(artifact: ModelArtifact, kind: str):
    from ..onnx import runners

    if artifact.status != ArtifactStatus.VALID:
        raise RuntimeError(f"The model artifact '{artifact.slug}' is not valid.")
    options: dict = {"device": getattr(settings, "EVALUATIONS_DEVICE", "auto")}
    threads = int(getattr(settings, "EVALUATIONS_INTRA_OP_THREADS", 0) or 0)
    if threads:
        options["intra_op_threads"] = threads
    if kind != "encoder":  # encoders read their folder's manifest (built ones run as Encoder)
        options.update(labels=artifact.labels, max_seq_length=artifact.max_seq_length)
    runner = runners.get_runner(kind, artifact.path, artifact.sha256, **options)
    if kind != "encoder":
        return runner
    with _CACHED_LOCK:
        cached = _CACHED.get(artifact.sha256)
        if cached is None or cached.encoder is not runner:
            capacity = int(getattr(settings, "EVALUATIONS_EMBEDDING_CACHE", 50_000))
            cached = _CACHED[artifact.sha256] = CachedEncoder(runner, capacity)
    return cached


def models_for(item: Mapping, artifacts: Mapping[str, ModelArtifact]):
    """The `models` object an ONNX scorer receives, holding the runner it needs."""
    spec = scoring.get(item["scorer"])
    if not spec.needs_model:
        return None
    artifact = artifacts[item["artifact"]]
    return SimpleNamespace(**{spec.needs_model: _runner(artifact, KIND_OF_NEED[spec.needs_model])})


def _policy_rules():
    from apps.prompts.services import policy_rules

    return policy_rules()


def run_risk_tier(suite, prompt_version=None) -> str:
    """The stricter of the risk tiers of the suite's charter and the prompt under test."""
    return stricter_tier(
        getattr(suite.charter, "risk_tier", "") if suite.charter_id else "",
        prompt_version.prompt.risk_level if prompt_version is not None else "",
    )


def _generate(run: Run, cases: list[Case]) -> dict[int, Produced]:
    from .. import generation

    version = run.prompt_version
    config = run.endpoint or {}
    produced: dict[int, Produced] = {}
    try:  # checked again for every batch: an endpoint suspended mid-run is called no more
        target = registry_services.call_target(
            registry_selectors.endpoint_by_slug(config.get("endpoint")),
            config.get("model", ""),
            risk_tier=run_risk_tier(run.suite, version),
            concurrency=config.get("concurrency"),
        )
    except registry_services.EndpointRefused as exc:
        message = f"Not generated: {exc.message}"
        return {case.pk: Produced(error=message) for case in cases}
    endpoint = generation.from_target(target)
    items = []
    for case in cases:
        try:
            messages = generation.build_messages(
                version.template_kind,
                version.messages,
                version.text,
                version.variables,
                case.variables,
            )
        except generation.GenerationError as exc:  # this case's variables do not render
            produced[case.pk] = Produced(error=f"Could not render the prompt: {exc}")
            continue
        items.append((case.pk, generation.build_request(messages, version.model_config, endpoint)))
    for case_id, outcome in generation.generate_many(endpoint, items).items():
        if isinstance(outcome, Exception):
            produced[case_id] = Produced(error=str(outcome))
        else:
            produced[case_id] = Produced(output=outcome.text, latency_ms=outcome.latency_ms)
    return produced


def _predict(run: Run, cases: list[Case]) -> dict[int, Produced]:
    classifier = _runner(run.model_under_test, "classifier")
    produced: dict[int, Produced] = {}
    texts, ids = [], []
    for case in cases:
        value = case.variables.get(run.input_variable)
        if value in (None, ""):
            produced[case.pk] = Produced(error=f"The case has no '{run.input_variable}' variable.")
            continue
        texts.append(str(value))
        ids.append(case.pk)
    if texts:
        probabilities = classifier.predict_proba(texts)
        labels = classifier.labels
        for case_id, row in zip(ids, probabilities, strict=True):
            produced[case_id] = Produced(output=str(labels[int(np.argmax(row))]))
    return produced


def produce_outputs(run: Run, cases: list[Case]) -> dict[int, Produced]:
    """Each case's output: as posted, or generated / predicted now and stored once."""
    if not cases:
        return {}
    stored = {
        row.case_id: Produced(output=row.output, error=row.error, latency_ms=row.latency_ms)
        for row in RunOutput.objects.filter(run=run, case__in=cases)
    }
    if run.output_source == OutputSource.POSTED:
        return {
            case.pk: stored.get(case.pk) or Produced(error="No output was posted for this case.")
            for case in cases
        }
    missing = [case for case in cases if case.pk not in stored]
    if missing:
        fresh = (
            _generate(run, missing)
            if run.output_source == OutputSource.GENERATED
            else _predict(run, missing)
        )
        with transaction.atomic():
            RunOutput.objects.bulk_create(
                [
                    RunOutput(
                        run=run,
                        case_id=case_id,
                        output=item.output,
                        error=item.error[:2000],
                        latency_ms=item.latency_ms,
                    )
                    for case_id, item in fresh.items()
                ],
                ignore_conflicts=True,
            )
        stored.update(fresh)
    return stored


class _TextRecorder:
    """Stands in for an encoder to learn which texts a scorer will embed."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        self.texts.extend(texts)
        return np.ones((len(texts), 1), dtype=np.float32)


def _prime_encoders(scorers, inputs, artifacts) -> None:
    """Embed every text the batch's encoder scorers need in one length-sorted pass.

    Each scorer embeds its own texts; run separately, each call ends in a partly filled
    ONNX batch and sorts only its own texts. A dry run with a recorder collects all of them
    first, so the real scorers then find every embedding in the per-process cache.
    """
    wanted: dict[str, list[str]] = {}
    for item in scorers:
        spec = scoring.get(item["scorer"])
        if spec.needs_model != "encoder":
            continue
        recorder = _TextRecorder()
        spec.score(inputs, dict(item.get("params") or {}), SimpleNamespace(encoder=recorder))
        wanted.setdefault(item["artifact"], []).extend(recorder.texts)
    for slug, texts in wanted.items():
        encoder = _runner(artifacts[slug], "encoder")
        if texts:
            encoder.encode(list(dict.fromkeys(t.strip() for t in texts)))


def score_cases(run: Run, cases: list[Case], outputs: Mapping[int, Produced]) -> list[CaseResult]:
    """Run every scorer of the suite over the cases with an output; one result per case."""
    scorers = run.suite.scorers
    slugs = {item["artifact"] for item in scorers if item.get("artifact")}
    artifacts = {a.slug: a for a in ModelArtifact.objects.filter(slug__in=slugs)}
    for slug, sha in run.scorer_artifacts.items():
        if slug in artifacts and artifacts[slug].sha256 != sha:
            raise RuntimeError(f"The scorer model '{slug}' changed since the run started.")
    scorable = [case for case in cases if not outputs[case.pk].error]
    inputs = [
        scoring.ScoringCase(
            case_id=case.external_id,
            output=outputs[case.pk].output,
            expected=case.expected,
            contexts=tuple(case.contexts),
            variables=case.variables,
        )
        for case in scorable
    ]
    metrics: list[dict[str, float]] = [{} for _ in scorable]
    specs: dict[str, scoring.MetricSpec] = {}
    if inputs:
        _prime_encoders(scorers, inputs, artifacts)
    for item in scorers:
        spec = scoring.get(item["scorer"])
        params = dict(item.get("params") or {})
        if spec.key == "policy_adherence":
            params["_rules"] = _policy_rules()
            if run.prompt_version_id:
                params["_context"] = {"model_config": run.prompt_version.model_config}
        for metric in spec.metrics(params):
            specs[metric.name] = metric
        if inputs:
            values = spec.score(inputs, params, models_for(item, artifacts))
            for row, extra in zip(metrics, values, strict=True):
                row.update(extra)
    results = [
        CaseResult(
            run=run,
            case=case,
            metrics=row,
            passed=all(specs[name].passes(value) for name, value in row.items() if name in specs),
        )
        for case, row in zip(scorable, metrics, strict=True)
    ]
    results += [
        CaseResult(
            run=run, case=case, metrics={}, passed=False, error=outputs[case.pk].error[:2000]
        )
        for case in cases
        if outputs[case.pk].error
    ]
    return results
