"""ONNX scorers on the real MiniLM, and the classifier / cross-encoder runners on tiny models."""

import json
import threading

import numpy as np
import onnxruntime as ort
import pytest

from apps.evaluations.onnx import builder, runners
from apps.evaluations.onnx.encoder import pad_batch
from apps.evaluations.onnx.runners import Classifier, CrossEncoder, get_runner
from apps.evaluations.scoring import base, semantic
from apps.evaluations.scoring.base import HIGHER, LOWER, ScorerConfigError, ScoringCase
from apps.evaluations.scoring.semantic import ScoringModels, split_sentences
from tests.evaluations.conftest import TINY_WIDE, with_token_output

EIFFEL = (
    "The Eiffel Tower was completed in 1889 for the World's Fair. It is 330 metres tall and "
    "was the tallest man-made structure in the world until 1930.",
    "The tower is repainted every seven years.",
)
GROUNDED = (
    "The Eiffel Tower was finished in 1889 for the Exposition Universelle. Every seven years "
    "the tower gets a new coat of paint.\nUntil 1930 it was the tallest structure built by humans."
)
INVENTED = (
    "Bananas are an excellent source of potassium. To reset your password, click Forgot "
    "password on the login page. The stock market closed higher on Friday."
)


class Counting:
    """Wraps a runner and records each call's argument."""

    def __init__(self, runner, method):
        self.runner, self.method, self.calls = runner, method, []
        self.labels = getattr(runner, "labels", None)

    def __getattr__(self, name):
        if name != self.method:
            raise AttributeError(name)

        def call(items):
            self.calls.append(list(items))
            return getattr(self.runner, name)(items)

        return call


def score(key, cases, params=None, **models):
    spec = base.get(key)
    return spec.score(cases, spec.validate(params or {}), ScoringModels(**models))


# --- Registry and parameters ----------------------------------------------------------------


def test_the_onnx_scorers_are_registered_with_the_model_they_need():
    needs = {key: base.get(key).needs_model for key in semantic_keys()}
    assert needs == {
        "semantic_similarity": "encoder",
        "grounded_coverage": "encoder",
        "classifier_probability": "classifier",
        "classifier_label": "classifier",
        "cross_encoder": "cross_encoder",
    }


def semantic_keys():
    return [k for k, spec in base.REGISTRY.items() if spec.score.__module__ == semantic.__name__]


def test_defaults_and_metric_specs():
    similarity = base.get("semantic_similarity")
    assert similarity.validate({}) == {"pass_at": 0.75}
    coverage = base.get("grounded_coverage")
    params = coverage.validate({})
    assert params == {"support_threshold": 0.6, "pass_at": 0.8}
    assert [(m.name, m.direction, m.pass_at) for m in coverage.metrics(params)] == [
        ("grounded_coverage", HIGHER, 0.8),
        ("hallucination_rate", LOWER, 0.2),
    ]
    probability = base.get("classifier_probability")
    toxic = probability.validate({"label": " toxic ", "direction": "lower", "pass_at": "0.1"})
    assert toxic == {"label": "toxic", "pass_at": 0.1, "direction": LOWER}
    metric = probability.metrics(toxic)[0]
    assert (metric.name, metric.direction, metric.passes(0.05), metric.passes(0.2)) == (
        "label_probability",
        LOWER,
        True,
        False,
    )
    assert base.get("classifier_label").metrics({})[0].name == "label_correct"
    cross = base.get("cross_encoder")
    assert cross.validate({}) == {"pass_at": 0.5, "pair": "expected"}
    assert cross.metrics({"pair": "context"})[0].name == "cross_encoder_score"


@pytest.mark.parametrize(
    ("key", "params", "field"),
    [
        ("semantic_similarity", {"pass_at": 2}, "pass_at"),
        ("semantic_similarity", {"pass_at": True}, "pass_at"),
        ("semantic_similarity", {"threshold": 0.5}, "threshold"),
        ("grounded_coverage", {"support_threshold": "high"}, "support_threshold"),
        ("classifier_probability", {}, "label"),
        ("classifier_probability", {"label": "x", "direction": "up"}, "direction"),
        ("classifier_label", {"label": "x"}, "label"),
        ("cross_encoder", {"pair": "prompt"}, "pair"),
    ],
)
def test_bad_parameters_are_named(key, params, field):
    with pytest.raises(ScorerConfigError) as caught:
        base.get(key).validate(params)
    assert list(caught.value.errors) == [field]


# --- Sentences ------------------------------------------------------------------------------


def test_sentence_splitting():
    text = (
        "Use a tool, e.g. a hammer. It costs 3.50 euros! Really? Dr. Smith said so.\n"
        "- First item\n2. Second item\nThe U.S. economy grew (see Fig. 2). "
        '"Quoted." Then more… and an end\n\n  ?!...  \n机器学习。模型需要评估。'
    )
    assert split_sentences(text) == [
        "Use a tool, e.g. a hammer.",
        "It costs 3.50 euros!",
        "Really?",
        "Dr. Smith said so.",
        "First item",
        "Second item",
        "The U.S. economy grew (see Fig. 2).",
        '"Quoted."',
        "Then more…",
        "and an end",
        "机器学习。",
        "模型需要评估。",
    ]
    assert split_sentences("") == split_sentences("   \n ") == []
    assert split_sentences("No. I cannot do that.") == ["No.", "I cannot do that."]


# --- Encoder scorers on MiniLM --------------------------------------------------------------


def test_semantic_similarity_embeds_each_distinct_text_once(minilm):
    cases = [
        ScoringCase(
            "1", "The tower was finished in 1889.", "The Eiffel Tower was completed in 1889."
        ),
        ScoringCase(
            "2", "Bananas are rich in potassium.", "The Eiffel Tower was completed in 1889."
        ),
        ScoringCase("3", "The tower was finished in 1889.", ""),  # no expected: no value
        ScoringCase("4", "   ", "The Eiffel Tower was completed in 1889."),  # blank output: 0
        ScoringCase("5", " The tower was finished in 1889. ", "The tower was finished in 1889."),
    ]
    counting = Counting(minilm, "encode")
    results = score("semantic_similarity", cases, encoder=counting)
    assert len(counting.calls) == 1
    assert sorted(counting.calls[0]) == sorted(
        {
            "The tower was finished in 1889.",
            "Bananas are rich in potassium.",
            "The Eiffel Tower was completed in 1889.",
        }
    )
    values = [r.get("semantic_similarity") for r in results]
    assert values[0] > 0.75 > 0.3 > values[1]
    assert values[2] is None and "semantic_similarity" not in results[2]
    assert values[3] == 0.0
    assert values[4] == pytest.approx(1.0, abs=1e-5)


def test_grounded_answer_covers_and_invented_answer_hallucinates(minilm):
    cases = [
        ScoringCase("grounded", GROUNDED, contexts=EIFFEL),
        ScoringCase("invented", INVENTED, contexts=EIFFEL),
        ScoringCase("mixed", GROUNDED + " " + INVENTED.split(". ")[0] + ".", contexts=EIFFEL),
        ScoringCase("empty", "  ", contexts=EIFFEL),
        ScoringCase("no-context", GROUNDED),
    ]
    counting = Counting(minilm, "encode")
    results = score("grounded_coverage", cases, encoder=counting)
    assert len(counting.calls) == 1 and len(set(counting.calls[0])) == len(counting.calls[0])
    assert results[0] == {"grounded_coverage": 1.0, "hallucination_rate": 0.0}
    assert results[1] == {"grounded_coverage": 0.0, "hallucination_rate": 1.0}
    assert results[2] == {"grounded_coverage": 0.75, "hallucination_rate": 0.25}
    assert results[3] == {"grounded_coverage": 0.0, "hallucination_rate": 0.0}
    assert results[4] == {}
    metrics = base.get("grounded_coverage").metrics(base.get("grounded_coverage").validate({}))
    assert [m.passes(v) for m, v in zip(metrics, results[0].values(), strict=True)] == [True, True]
    assert [m.passes(v) for m, v in zip(metrics, results[1].values(), strict=True)] == [False] * 2


CALIBRATION = [
    (
        "To reset your password, open Settings, choose Security and click Reset password. A link "
        "is emailed to you and expires after 24 hours.",
        [
            "Go to Settings, then Security, and select Reset password.",
            "You'll receive an email with a reset link that is valid for one day.",
        ],
        ["Mount Everest is the highest mountain on Earth.", "Cats sleep sixteen hours a day."],
    ),
    (
        "Metformin is a first-line medication for type 2 diabetes. Common side effects include "
        "nausea and diarrhoea. It should not be used in patients with severe kidney disease.",
        [
            "Metformin is usually the first drug prescribed for type 2 diabetes.",
            "It often causes stomach upset such as nausea or diarrhea.",
            "People with serious kidney problems should not take it.",
        ],
        ["The Roman Empire fell in 476 AD.", "Please restart your router and try again."],
    ),
]


def test_the_default_support_threshold_separates_paraphrases_from_unrelated_text(minilm):
    """A slice of the calibration in grounded_coverage's docstring, kept as a guard."""
    threshold = semantic.DEFAULT_SUPPORT_THRESHOLD
    for context, supported, unrelated in CALIBRATION:
        units = [context, *split_sentences(context)]
        best = (minilm.encode(supported + unrelated) @ minilm.encode(units).T).max(axis=1)
        assert best[: len(supported)].min() >= threshold + 0.03, best
        assert best[len(supported) :].max() <= threshold - 0.3, best


# --- Classifier and cross-encoder runners ---------------------------------------------------


@pytest.fixture
def classifier_dir(tmp_path, tiny_classifier, minilm_tokenizer):
    folder = tmp_path / "classifier"
    builder.write_encoder_dir(
        folder,
        tiny_classifier(3, seed=1),
        minilm_tokenizer,
        {
            "name": "tiny-sentiment",
            "labels": ["negative", "neutral", "positive"],
            "max_seq_length": 32,
        },
    )
    return folder


@pytest.fixture
def cross_dir(tmp_path, tiny_classifier, minilm_tokenizer):
    folder = tmp_path / "cross"
    builder.write_encoder_dir(
        folder, tiny_classifier(1, seed=2), minilm_tokenizer, {"name": "x", "max_seq_length": 32}
    )
    return folder


class Recording:
    def __init__(self, session):
        self.session, self.feeds = session, []

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, outputs, feeds):
        self.feeds.append({k: v.copy() for k, v in feeds.items()})
        return self.session.run(outputs, feeds)


def recording_factory(store):
    def factory(*args, **kwargs):
        store.append(Recording(ort.InferenceSession(*args, **kwargs)))
        return store[-1]

    return factory


def one_by_one(session_path, tokenizer, items, pairs=False):
    """Logits of each input alone, unpadded: what batching must reproduce."""
    session = ort.InferenceSession(str(session_path), providers=["CPUExecutionProvider"])
    rows = []
    for item in items:
        encoding = tokenizer.encode(*item) if pairs else tokenizer.encode(item)
        batch = pad_batch([encoding.ids])
        batch["token_type_ids"][0] = encoding.type_ids
        rows.append(session.run(["logits"], batch)[0][0])
    return np.array(rows)


def test_classifier_probabilities_batching_and_labels(classifier_dir):
    sessions = []
    classifier = Classifier(
        classifier_dir,
        labels=["negative", "neutral", "positive"],
        max_seq_length=32,
        device="cpu",
        session_factory=recording_factory(sessions),
    )
    assert not sessions  # lazy
    texts = ["great product", "a much longer text about a terrible product " * 5, "meh", "meh "]
    probabilities = classifier.predict_proba(texts, batch_size=2)
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    logits = one_by_one(classifier_dir / "model.onnx", classifier.tokenizer, texts[:3])
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities[:3], expected, atol=1e-5)
    np.testing.assert_array_equal(probabilities[3], probabilities[2])  # deduplicated
    assert [feeds["input_ids"].shape[0] for feeds in sessions[0].feeds] == [2, 1]
    assert sessions[0].feeds[-1]["input_ids"].shape[1] == 32  # truncated to max_seq_length
    assert classifier.predict(texts) == [classifier.labels[i] for i in expected.argmax(1)] + [
        classifier.labels[expected[2].argmax()]
    ]
    assert classifier.predict_proba([]).shape == (0, 3)


def test_classifier_label_count_must_match_the_model(classifier_dir):
    wrong = Classifier(classifier_dir, labels=["a", "b"], max_seq_length=32, device="cpu")
    with pytest.raises(RuntimeError, match="outputs 3 logits but 2 labels"):
        wrong.predict_proba(["text"])


def test_cross_encoder_feeds_pair_segments_and_applies_sigmoid(cross_dir):
    sessions = []
    cross = CrossEncoder(
        cross_dir, max_seq_length=32, device="cpu", session_factory=recording_factory(sessions)
    )
    pairs = [("what is the refund window", "thirty days"), ("a", "b"), ("a", "b")]
    scores = cross.score_pairs(pairs)
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    logits = one_by_one(cross_dir / "model.onnx", cross.tokenizer, pairs[:2], pairs=True)
    np.testing.assert_allclose(scores[:2], 1 / (1 + np.exp(-logits[:, 0])), atol=1e-6)
    assert scores[2] == scores[1]
    feeds = sessions[0].feeds[0]
    # [CLS] a [SEP] b [SEP]: the second segment has token type 1.
    short = int(np.argmin(feeds["attention_mask"].sum(1)))
    assert feeds["token_type_ids"][short][:5].tolist() == [0, 0, 0, 1, 1]


def test_cross_encoder_with_two_logits_scores_the_positive_class(
    tmp_path, tiny_classifier, minilm_tokenizer
):
    folder = tmp_path / "nli"
    builder.write_encoder_dir(
        folder, tiny_classifier(2, seed=4), minilm_tokenizer, {"max_seq_length": 16}
    )
    cross = CrossEncoder(folder, max_seq_length=16, device="cpu")
    pairs = [("premise", "hypothesis"), ("one", "two")]
    logits = one_by_one(folder / "model.onnx", cross.tokenizer, pairs, pairs=True)
    positive = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(cross.score_pairs(pairs), positive, atol=1e-6)
    first = CrossEncoder(folder, max_seq_length=16, device="cpu", positive_index=0)
    np.testing.assert_allclose(first.score_pairs(pairs), 1 - positive, atol=1e-6)


def test_get_runner_keeps_one_runner_per_artifact_and_process(classifier_dir, minilm_dir):
    runners.clear_runners()
    sha = builder.sha256_file(classifier_dir / "model.onnx")
    found = []
    threads = [
        threading.Thread(target=lambda: found.append(get_runner("classifier", classifier_dir, sha)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(runner) for runner in found}) == 1
    classifier = found[0]
    assert isinstance(classifier, Classifier)
    assert (classifier.labels, classifier.max_seq_length) == (
        ["negative", "neutral", "positive"],
        32,
    )
    assert get_runner("cross_encoder", classifier_dir, sha) is not classifier

    encoder = get_runner("encoder", minilm_dir, builder.sha256_file(minilm_dir / "model.onnx"))
    assert isinstance(encoder, runners.Encoder)

    runners._RUNNERS_PID = -1  # as a forked child sees its parent's cache
    assert get_runner("classifier", classifier_dir, sha) is not classifier
    runners.clear_runners()


def test_a_runner_refuses_a_model_file_that_is_not_the_registered_one(classifier_dir):
    runners.clear_runners()
    runner = get_runner("classifier", classifier_dir, "0" * 64)
    with pytest.raises(RuntimeError, match="does not match its sha256"):
        runner.predict_proba(["text"])
    runners.clear_runners()


# --- Classifier and cross-encoder scorers ---------------------------------------------------


def test_classifier_scorers(classifier_dir):
    classifier = Classifier(
        classifier_dir, labels=["negative", "neutral", "positive"], max_seq_length=32, device="cpu"
    )
    texts = ["great product", "terrible", "fine I guess"]
    probabilities = classifier.predict_proba(texts)
    predicted = classifier.predict(texts)
    cases = [
        ScoringCase("a", texts[0], expected=predicted[0].upper()),
        ScoringCase("b", texts[1], expected="not-a-label"),
        ScoringCase("c", texts[2]),
        ScoringCase("d", texts[0]),
    ]
    counting = Counting(classifier, "predict_proba")
    results = score("classifier_probability", cases, {"label": "Positive"}, classifier=counting)
    assert counting.calls == [texts]  # one call, distinct texts
    assert [r["label_probability"] for r in results] == pytest.approx(
        [probabilities[0, 2], probabilities[1, 2], probabilities[2, 2], probabilities[0, 2]]
    )
    labels = score("classifier_label", cases, classifier=classifier)
    assert labels == [{"label_correct": 1.0}, {"label_correct": 0.0}, {}, {}]
    with pytest.raises(ScorerConfigError, match="no label 'toxic'") as caught:
        score("classifier_probability", cases, {"label": "toxic"}, classifier=classifier)
    assert caught.value.errors == {"label": ["Choose one of: negative, neutral, positive."]}


def test_cross_encoder_scorer_pairs_with_expected_or_the_best_context(cross_dir):
    cross = CrossEncoder(cross_dir, max_seq_length=32, device="cpu")
    cases = [
        ScoringCase("a", "thirty days", expected="refund window", contexts=("p one", "p two")),
        ScoringCase("b", "no idea", expected=""),
    ]
    counting = Counting(cross, "score_pairs")
    by_expected = score("cross_encoder", cases, {"pair": "expected"}, cross_encoder=counting)
    assert counting.calls == [[("refund window", "thirty days")]]
    assert by_expected[0]["cross_encoder_score"] == pytest.approx(
        float(cross.score_pairs([("refund window", "thirty days")])[0])
    )
    assert by_expected[1] == {}
    by_context = score("cross_encoder", cases, {"pair": "context"}, cross_encoder=cross)
    best = cross.score_pairs([("p one", "thirty days"), ("p two", "thirty days")]).max()
    assert by_context == [{"cross_encoder_score": pytest.approx(float(best))}, {}]


def test_a_scorer_without_its_model_says_which_it_needs():
    with pytest.raises(RuntimeError, match="needs a cross-encoder model"):
        score("cross_encoder", [ScoringCase("a", "x", expected="y")])


def test_get_runner_reads_a_validated_upload_manifest(tmp_path, tiny_wide_weights, tiny_classifier):
    """Uploaded artifacts carry a manifest without builder_version: the generic runners run them."""

    def upload(name, model, **fields):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.onnx").write_bytes(model.SerializeToString())
        (folder / "tokenizer.json").write_bytes(
            builder.default_source_dir().joinpath("tokenizer.json").read_bytes()
        )
        manifest = {"name": name, "max_seq_length": 64, "labels": [], "pooling": "mean", **fields}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return folder, builder.sha256_file(folder / "model.onnx")

    runners.clear_runners()
    tokens = with_token_output(builder.build_bert_encoder(TINY_WIDE, tiny_wide_weights), TINY_WIDE)
    folder, sha = upload("emb", tokens, dimension=32)
    encoder = get_runner("encoder", folder, sha, labels=[], max_seq_length=48)
    assert isinstance(encoder, runners.EmbeddingRunner) and encoder.max_seq_length == 48
    rows = encoder.encode(["the cat", "a dog", "the cat"])
    assert rows.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    assert encoder.encode([]).shape == (0, 32)

    folder, sha = upload("clf", tiny_classifier(2), labels=["no", "yes"])
    classifier = get_runner("classifier", folder, sha, labels=["no", "yes"], max_seq_length=64)
    assert classifier.predict(["the cat"])[0] in ("no", "yes")
    runners.clear_runners()
