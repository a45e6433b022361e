"""Throughput of the default sentence encoder on CPU: bare ONNX Runtime loops and `Encoder`.

    python bench/encoder_throughput.py [--texts 500] [--threads 2] [--batch-size 32]

Builds the encoder into $AIFACTORY_VAR_DIR/models/all-minilm-l6-v2 first if it is missing.
(a) and (b) time `session.run` alone over texts tokenized and padded beforehand, sorted by
length or in arrival order; (c) times `Encoder.encode` end to end (tokenize, sort, pad, run,
restore order). Each figure is the best of --repeat passes; this machine may be shared.
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.evaluations.onnx import builder  # noqa: E402
from apps.evaluations.onnx.encoder import Encoder, create_session, pad_batch, score_batch  # noqa: E402

OPENINGS = [
    "Hello, I ordered a pair of running shoes last week and",
    "Hi team, our invoice for March",
    "The assistant's answer to the refund question",
    "Guten Tag, meine Bestellung",
    "Bonjour, le colis que j'attendais",
    "Hola, la factura del mes pasado",
    "Can you explain why the model",
    "According to the policy document,",
]
MIDDLES = [
    "it still has not arrived although the tracking page says it was delivered on Monday.",
    "shows a duplicate charge of 49.90 EUR that I did not authorise.",
    "cites the wrong section of the terms and conditions and invents a deadline.",
    "ist beschädigt angekommen, und der Kundendienst antwortet nicht auf meine E-Mails.",
    "est arrivé ouvert et il manque deux articles sur les cinq commandés.",
    "tiene un importe distinto del que aparece en el contrato firmado.",
    "refused to answer a harmless question about opening hours?",
    "returns must be requested within thirty days and the item must be unused.",
]
DETAILS = [
    "I have attached a photo of the label and the order confirmation.",
    "This is the third time this has happened since January.",
    "Please escalate this to someone who can actually issue a refund.",
    "The reference answer says the customer is entitled to a full refund plus shipping.",
    "Our reviewers marked the answer as unhelpful and slightly rude in tone.",
    "The expected output lists the steps in order: verify identity, check the order, refund.",
    "Bitte melden Sie sich so schnell wie möglich bei mir.",
    "Merci de me tenir informé de la suite donnée à ma réclamation.",
    "Quedo a la espera de su respuesta.",
    "Thanks in advance!",
]


def realistic_texts(count: int, seed: int = 7) -> list[str]:
    """Support tickets and model answers: mostly short, some long, a few past 256 tokens."""
    rng = random.Random(seed)
    texts = []
    for case in range(count):
        details = rng.choices([0, 1, 2, 3, 5, 8, 20], weights=[20, 25, 20, 15, 10, 7, 3])[0]
        parts = [f"Case {case}:", rng.choice(OPENINGS), rng.choice(MIDDLES)]
        parts += [rng.choice(DETAILS) for _ in range(details)]
        texts.append(" ".join(parts))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()

    var = Path(os.environ.get("AIFACTORY_VAR_DIR", Path(__file__).resolve().parents[1] / "var"))
    model_dir = args.model or var / "models" / builder.DEFAULT_NAME
    if not (model_dir / builder.MANIFEST_FILE).exists():
        started = time.perf_counter()
        builder.build_default_encoder(model_dir)
        print(f"built {model_dir} in {time.perf_counter() - started:.1f} s")

    texts = realistic_texts(args.texts)
    encoder = Encoder(model_dir, device="cpu", intra_op_threads=args.threads)
    started = time.perf_counter()
    token_ids = encoder.tokenize(texts)
    tokenize_s = time.perf_counter() - started
    session = create_session(
        model_dir / builder.MODEL_FILE, intra_op_threads=args.threads, device="cpu"
    )

    def batches(order):
        size = args.batch_size
        return [
            pad_batch([token_ids[i] for i in order[s : s + size]])
            for s in range(0, len(order), size)
        ]

    arrival = list(range(len(texts)))
    by_length = sorted(arrival, key=lambda i: len(token_ids[i]))
    sorted_batches, arrival_batches = batches(by_length), batches(arrival)

    def run_all(prepared):
        for batch in prepared:
            score_batch(session, batch)

    def padding_efficiency(prepared):
        real = sum(int(b["attention_mask"].sum()) for b in prepared)
        return real / sum(b["attention_mask"].size for b in prepared)

    run_all(sorted_batches[:2])  # warm-up
    encoder.encode(texts[:8])  # creates the Encoder's session outside the timing
    lengths = sorted(len(ids) for ids in token_ids)
    print(
        f"{len(texts)} texts, tokens per text: mean {sum(lengths) / len(lengths):.0f}, "
        f"median {lengths[len(lengths) // 2]}, max {lengths[-1]} (truncated at "
        f"{encoder.max_seq_length}); {args.threads} intra-op threads, batch size "
        f"{args.batch_size}; tokenizing all: {len(texts) / tokenize_s:,.0f} texts/s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    runs = {
        "(a) bare ORT loop, sorted by length": lambda: run_all(sorted_batches),
        "(b) bare ORT loop, arrival order": lambda: run_all(arrival_batches),
        "(c) Encoder.encode, end to end": lambda: encoder.encode(texts, batch_size=args.batch_size),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeat):  # interleaved, so a burst of load elsewhere hits all three
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    notes = {
        "(a) bare ORT loop, sorted by length": f"real tokens {padding_efficiency(sorted_batches):.0%} of padded",
        "(b) bare ORT loop, arrival order": f"real tokens {padding_efficiency(arrival_batches):.0%} of padded",
        "(c) Encoder.encode, end to end": "tokenize, dedupe, sort, pad, run, restore order",
    }
    for name, seconds in best.items():
        print(f"{name:<37} {len(texts) / seconds:7.1f} texts/s  ({notes[name]})")
    print(f"best of {args.repeat} interleaved passes; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
