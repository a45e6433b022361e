"""Scorers that run ONNX models: embedding similarity, grounding, classifiers, cross-encoders.

Each scorer's `score(cases, params, models)` gets `models`, an object (see `ScoringModels`)
with the runner it declared in `needs_model`:

- `encoder.encode(texts) -> [n, dim]` L2-normalised rows (`onnx.encoder.Encoder`,
  `onnx.runners.EmbeddingRunner`);
- `classifier.predict_proba(texts) -> [n, len(labels)]` and `classifier.labels`
  (`onnx.runners.Classifier`);
- `cross_encoder.score_pairs([(a, b), ...]) -> [n]` in [0, 1] (`onnx.runners.CrossEncoder`).

Every scorer gathers all the texts it needs for all its cases into ONE call of its model, so
each distinct text is run once per batch of cases, however many cases share it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.evaluations.scoring.base import (
    HIGHER,
    LOWER,
    MetricSpec,
    ScorerConfigError,
    ScorerSpec,
    ScoringCase,
    register,
)

# Calibrated on all-MiniLM-L6-v2; see grounded_coverage's docstring.
DEFAULT_SUPPORT_THRESHOLD = 0.6


@dataclass
class ScoringModels:
    """The runners one scoring batch may use; a scorer reads only the one it needs."""

    encoder: Any = None
    classifier: Any = None
    cross_encoder: Any = None


# --- Parameters -----------------------------------------------------------------------------


def _check_known(params: Mapping[str, Any], known: Sequence[str]) -> dict[str, list[str]]:
    return {
        key: [f"Unknown parameter; this scorer takes {', '.join(known) or 'none'}."]
        for key in sorted(set(params) - set(known))
    }


def _number(params, key, default, low, high, errors) -> float:
    value = params.get(key, default)
    if value is None or value == "":
        return float(default)
    if isinstance(value, bool):
        errors[key] = ["Enter a number."]
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[key] = ["Enter a number."]
        return float(default)
    if not math.isfinite(number) or not low <= number <= high:
        errors[key] = [f"Enter a value between {low:g} and {high:g}."]
    return number


def _choice(params, key, default, choices, errors) -> str:
    value = params.get(key, default)
    if value in (None, ""):
        return default
    if value not in choices:
        errors[key] = [f"Choose one of: {', '.join(choices)}."]
        return default
    return str(value)


def _raise(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ScorerConfigError("The scorer's parameters are not valid.", errors)


def _model(models, name: str, scorer: str):
    runner = getattr(models, name, None)
    if runner is None:
        raise RuntimeError(f"The {scorer} scorer needs a {name.replace('_', '-')} model.")
    return runner


def _unique(texts) -> list[str]:
    """Distinct stripped texts in first-seen order: what one model call gets."""
    return list(dict.fromkeys(text.strip() for text in texts))


def _embed(models, scorer: str, texts) -> tuple[np.ndarray, dict[str, int]]:
    """One encode() over the distinct texts; rows re-normalised, and each text's row index."""
    unique = _unique(texts)
    if not unique:
        return np.empty((0, 0), dtype=np.float32), {}
    rows = np.asarray(_model(models, "encoder", scorer).encode(unique), dtype=np.float32)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows, {text: i for i, text in enumerate(unique)}


# --- Sentences ------------------------------------------------------------------------------

# A sentence ends at . ! ? or … (with any closing quotes/brackets) before whitespace, or at a
# CJK full stop; decimals ("3.5") and URLs have no whitespace after their dots so never split.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
# Words whose trailing dot does not end a sentence (lower case, without the dot).
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "cf",
        "vs",
        "viz",
        "al",
        "approx",
        "ca",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "jr",
        "sr",
        "fig",
        "figs",
        "inc",
        "ltd",
        "corp",
        "dept",
        "est",
        "misc",
        "resp",
        "vol",
        "p",
        "pp",
        "sec",
        "ch",
        "art",
        "para",
    ]
)
_INITIALISM = re.compile(r"(?:[A-Za-z]\.)+")  # e.g. i.e. U.S. J.
_WORDY = re.compile(r"\w")


def _ends_with_abbreviation(chunk: str) -> bool:
    words = chunk.split()
    if not words:
        return False
    last = words[-1].lstrip("(\"'“‘[")
    if not last.endswith(".") or last.endswith(".."):
        return False
    return bool(_INITIALISM.fullmatch(last)) or last[:-1].lower() in _ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """Sentences of a text: split at . ! ? … and line breaks, not inside "e.g." or "3.5".

    A line break always ends a sentence (lists, headings); list bullets are dropped. A dot
    after a known abbreviation (e.g., i.e., Dr., vs., approx., Inc.) or an initialism (U.S.,
    J.) does not end one. Fragments without a letter or digit ("—", "...") are dropped.
    """
    sentences: list[str] = []
    for line in (text or "").splitlines():
        line = _BULLET.sub("", line).strip()
        start = 0
        for match in _BOUNDARY.finditer(line):
            if match.group().startswith(".") and _ends_with_abbreviation(line[start : match.end()]):
                continue
            sentences.append(line[start : match.end()].strip())
            start = match.end()
        sentences.append(line[start:].strip())
    return [sentence for sentence in sentences if _WORDY.search(sentence)]


# --- semantic_similarity --------------------------------------------------------------------


def _similarity_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    errors = _check_known(params, ["pass_at"])
    cleaned = {"pass_at": _number(params, "pass_at", 0.75, -1.0, 1.0, errors)}
    _raise(errors)
    return cleaned


def _similarity_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    return [
        MetricSpec(
            "semantic_similarity",
            HIGHER,
            float(params.get("pass_at", 0.75)),
            "Cosine between the embeddings of the output and the expected output.",
        )
    ]


def _similarity_score(cases: Sequence[ScoringCase], params, models) -> list[dict[str, float]]:
    """Cosine of the output's and the expected output's embeddings, raw, in [-1, 1].

    The cosine is not clipped to [0, 1]: negative values are rare with sentence encoders but
    mean "less alike than unrelated text", and clipping would hide that. A blank output scores
    0.0 (it says nothing); cases without an expected output get no value.
    """
    judged = [c for c in cases if c.expected.strip()]
    rows, index = _embed(
        models,
        "semantic_similarity",
        [c.output for c in judged if c.output.strip()] + [c.expected for c in judged],
    )
    results = []
    for case in cases:
        if not case.expected.strip():
            results.append({})
        elif not case.output.strip():
            results.append({"semantic_similarity": 0.0})
        else:
            cosine = float(rows[index[case.output.strip()]] @ rows[index[case.expected.strip()]])
            results.append({"semantic_similarity": min(1.0, max(-1.0, cosine))})
    return results


register(
    ScorerSpec(
        key="semantic_similarity",
        label="Semantic similarity",
        description=(
            "Cosine similarity of sentence embeddings of the output and the expected output "
            "(-1 to 1; paraphrases score about 0.7 and above with MiniLM)."
        ),
        validate=_similarity_validate,
        metrics=_similarity_metrics,
        score=_similarity_score,
        needs_model="encoder",
    )
)


# --- grounded_coverage / hallucination_rate -------------------------------------------------


def _coverage_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    errors = _check_known(params, ["support_threshold", "pass_at"])
    cleaned = {
        "support_threshold": _number(
            params, "support_threshold", DEFAULT_SUPPORT_THRESHOLD, -1.0, 1.0, errors
        ),
        "pass_at": _number(params, "pass_at", 0.8, 0.0, 1.0, errors),
    }
    _raise(errors)
    return cleaned


def _coverage_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    pass_at = float(params.get("pass_at", 0.8))
    return [
        MetricSpec(
            "grounded_coverage",
            HIGHER,
            pass_at,
            "Share of the output's sentences supported by a context passage or sentence.",
        ),
        MetricSpec(
            "hallucination_rate",
            LOWER,
            round(1.0 - pass_at, 10),
            "Share of the output's sentences no context passage or sentence supports.",
        ),
    ]


def _coverage_score(cases: Sequence[ScoringCase], params, models) -> list[dict[str, float]]:
    """How much of the output the contexts support, sentence by sentence.

    Each output sentence is supported when its embedding's cosine with some context passage,
    or with some sentence of a passage, reaches `support_threshold`. (Passages longer than
    the encoder's max_seq_length are truncated when embedded whole; their sentences are not.)
    grounded_coverage is the supported share; hallucination_rate is 1 - coverage, and its
    pass mark is 1 - pass_at. An output without sentences scores coverage 0.0 (it grounds
    nothing, so it cannot pass) and hallucination 0.0 (it asserts nothing). Cases without
    contexts get no values.

    Calibration of the default threshold, 0.6, on all-MiniLM-L6-v2: 7 context sets (refund
    policy, Eiffel Tower, password reset, metformin, support hours, quarterly report,
    photosynthesis) with 21 faithful paraphrase sentences, 21 unrelated sentences and 14
    same-topic sentences the contexts do not support (contradictions and inventions). Best
    cosine against the context units:

        faithful paraphrases  min 0.30  p10 0.65  median 0.76  (19 of 21 >= 0.6)
        unrelated sentences   max 0.16  median 0.03             (0 of 21 >= 0.6)
        same-topic inventions min 0.15  median 0.64             (9 of 14 >= 0.6)

    So 0.6 keeps 90 % of faithful sentences and flags every off-topic one with a wide margin
    (0.44); the two faithful sentences below it were vague summaries ("Sales were up." 0.30,
    "The help desk is open Monday through Friday." 0.54). Embedding similarity measures
    topical support, not entailment: a sentence that contradicts its context on the same
    topic ("Refunds are available within 90 days" against "within 30 days", 0.90) counts
    as supported. Use a cross-encoder or NLI classifier for contradictions.
    """
    threshold = float(params.get("support_threshold", DEFAULT_SUPPORT_THRESHOLD))
    plans = []
    texts: list[str] = []
    for case in cases:
        passages = [p.strip() for p in case.contexts if p and p.strip()]
        if not passages:
            plans.append(None)
            continue
        units = _unique(passages + [s for p in passages for s in split_sentences(p)])
        sentences = _unique(split_sentences(case.output))
        plans.append((sentences, units))
        texts += sentences + units
    rows, index = _embed(models, "grounded_coverage", texts)
    results = []
    for plan in plans:
        if plan is None:
            results.append({})
            continue
        sentences, units = plan
        if not sentences:
            results.append({"grounded_coverage": 0.0, "hallucination_rate": 0.0})
            continue
        similarity = rows[[index[s] for s in sentences]] @ rows[[index[u] for u in units]].T
        coverage = float((similarity.max(axis=1) >= threshold).mean())
        results.append({"grounded_coverage": coverage, "hallucination_rate": 1.0 - coverage})
    return results


register(
    ScorerSpec(
        key="grounded_coverage",
        label="Grounded coverage",
        description=(
            "Share of output sentences supported by the case's context passages (embedding "
            "cosine at or above support_threshold), and the unsupported share as the "
            "hallucination rate."
        ),
        validate=_coverage_validate,
        metrics=_coverage_metrics,
        score=_coverage_score,
        needs_model="encoder",
    )
)


# --- classifier_probability / classifier_label ----------------------------------------------


def _probability_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    errors = _check_known(params, ["label", "pass_at", "direction"])
    label = params.get("label")
    if not isinstance(label, str) or not label.strip():
        errors["label"] = ["Name the label whose probability is scored."]
    cleaned = {
        "label": label.strip() if isinstance(label, str) else "",
        "pass_at": _number(params, "pass_at", 0.5, 0.0, 1.0, errors),
        "direction": _choice(params, "direction", HIGHER, (HIGHER, LOWER), errors),
    }
    _raise(errors)
    return cleaned


def _probability_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    label = params.get("label", "")
    return [
        MetricSpec(
            "label_probability",
            params.get("direction", HIGHER),
            float(params.get("pass_at", 0.5)),
            f"Probability the classifier gives the output the label {label!r}.",
        )
    ]


def _label_index(classifier, label: str) -> int:
    labels = list(classifier.labels)
    if label in labels:
        return labels.index(label)
    folded = [name.casefold() for name in labels]
    if label.casefold() in folded:
        return folded.index(label.casefold())
    raise ScorerConfigError(
        f"The classifier has no label {label!r}.",
        {"label": [f"Choose one of: {', '.join(labels)}."]},
    )


def _probabilities(models, scorer: str, texts: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    unique = _unique(texts)
    classifier = _model(models, "classifier", scorer)
    if not unique:
        return np.empty((0, len(classifier.labels))), {}
    probabilities = np.asarray(classifier.predict_proba(unique), dtype=np.float64)
    return probabilities, {text: i for i, text in enumerate(unique)}


def _probability_score(cases: Sequence[ScoringCase], params, models) -> list[dict[str, float]]:
    """P(label | output) for every case, blank outputs included (they can still be toxic-free)."""
    column = _label_index(_model(models, "classifier", "classifier_probability"), params["label"])
    probabilities, index = _probabilities(
        models, "classifier_probability", [c.output for c in cases]
    )
    return [
        {"label_probability": float(probabilities[index[c.output.strip()], column])} for c in cases
    ]


register(
    ScorerSpec(
        key="classifier_probability",
        label="Classifier probability",
        description=(
            "Probability an ONNX classifier gives the output one label (e.g. 'toxic' with "
            "direction lower, or 'on_topic' with direction higher)."
        ),
        validate=_probability_validate,
        metrics=_probability_metrics,
        score=_probability_score,
        needs_model="classifier",
    )
)


def _label_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    errors = _check_known(params, [])
    _raise(errors)
    return {}


def _label_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    return [
        MetricSpec(
            "label_correct",
            HIGHER,
            1.0,
            "1 when the classifier's most probable label for the output is the expected one.",
        )
    ]


def _label_score(cases: Sequence[ScoringCase], params, models) -> list[dict[str, float]]:
    """1.0 when the argmax label equals the expected label (case-insensitive), else 0.0.

    An expected label the classifier does not have scores 0.0: the model cannot produce it.
    Cases without an expected label get no value.
    """
    classifier = _model(models, "classifier", "classifier_label")
    judged = [c for c in cases if c.expected.strip()]
    probabilities, index = _probabilities(models, "classifier_label", [c.output for c in judged])
    labels = [str(label).casefold() for label in classifier.labels]
    results = []
    for case in cases:
        if not case.expected.strip():
            results.append({})
            continue
        predicted = labels[int(probabilities[index[case.output.strip()]].argmax())]
        results.append({"label_correct": float(predicted == case.expected.strip().casefold())})
    return results


register(
    ScorerSpec(
        key="classifier_label",
        label="Classifier label",
        description="Whether an ONNX classifier's top label for the output is the expected label.",
        validate=_label_validate,
        metrics=_label_metrics,
        score=_label_score,
        needs_model="classifier",
    )
)


# --- cross_encoder --------------------------------------------------------------------------


def _cross_validate(params: Mapping[str, Any]) -> dict[str, Any]:
    errors = _check_known(params, ["pass_at", "pair"])
    cleaned = {
        "pass_at": _number(params, "pass_at", 0.5, 0.0, 1.0, errors),
        "pair": _choice(params, "pair", "expected", ("expected", "context"), errors),
    }
    _raise(errors)
    return cleaned


def _cross_metrics(params: Mapping[str, Any]) -> list[MetricSpec]:
    against = "the best context passage" if params.get("pair") == "context" else "the expected"
    return [
        MetricSpec(
            "cross_encoder_score",
            HIGHER,
            float(params.get("pass_at", 0.5)),
            f"Cross-encoder score (0 to 1) of the output paired with {against}.",
        )
    ]


def _cross_score(cases: Sequence[ScoringCase], params, models) -> list[dict[str, float]]:
    """The cross-encoder's score of (reference, output), in [0, 1].

    pair="expected": the reference is the expected output; cases without one get no value.
    pair="context": every context passage is a reference and the case scores the best one
    (an answer needs support from one passage, not all); cases without contexts get none.
    Pairs are ordered (reference, output), the premise/hypothesis order of NLI-style models.
    A single-logit model's score is the sigmoid of its logit (see runners.CrossEncoder).
    """
    per_case: list[list[tuple[str, str]]] = []
    for case in cases:
        output = case.output.strip()
        if params.get("pair") == "context":
            references = [p.strip() for p in case.contexts if p and p.strip()]
        else:
            references = [case.expected.strip()] if case.expected.strip() else []
        per_case.append([(reference, output) for reference in dict.fromkeys(references)])
    unique = list(dict.fromkeys(pair for pairs in per_case for pair in pairs))
    scores: dict[tuple[str, str], float] = {}
    if unique:
        values = _model(models, "cross_encoder", "cross_encoder").score_pairs(unique)
        scores = dict(zip(unique, np.asarray(values, dtype=np.float64).tolist(), strict=True))
    return [
        {"cross_encoder_score": float(max(scores[p] for p in pairs))} if pairs else {}
        for pairs in per_case
    ]


register(
    ScorerSpec(
        key="cross_encoder",
        label="Cross-encoder",
        description=(
            "An ONNX cross-encoder's score of the output paired with the expected output or "
            "with the case's context passages (the best one)."
        ),
        validate=_cross_validate,
        metrics=_cross_metrics,
        score=_cross_score,
        needs_model="cross_encoder",
    )
)
