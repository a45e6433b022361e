"""The demo workspace's evaluation: a support-reply dataset with contexts, recorded outputs of
two prompt versions (v2 better grounded overall, worse for partners), and both runs scored by
the default scorer pack, so the run page shows an improvement and a regressed segment."""

from __future__ import annotations

import io
import json
import random

from django.db import transaction

from .choices import RunStatus
from .models import Dataset, Run, Suite
from .services import (
    artifact_register_default_pack,
    dataset_create,
    dataset_version_upload,
    run_batch_execute,
    run_finalize,
    run_outputs_post,
    run_start,
    suite_create,
    threshold_set,
)

DATASET_SLUG = "support-replies-eval"
SUITE_SLUG = "support-reply-quality"
LANGUAGES = ("en", "de", "fr", "es")
GEOGRAPHIES = {"en": "uk", "de": "dach", "fr": "france", "es": "iberia"}
ROLES = ("customer", "customer", "customer", "agent", "partner")

# topic: (passage, customer questions, grounded answer, invented answer)
TOPICS = {
    "returns": (
        "Returns are accepted within 30 days of delivery when the customer has the receipt. "
        "Refunds go back to the original payment method within 5 working days.",
        [
            "Can I still return shoes I bought {days} days ago?",
            "How long do I have to send an item back?",
            "I lost my receipt, can I return the jacket anyway?",
        ],
        "You can return items within 30 days of delivery with your receipt. "
        "The refund goes back to your original payment method within 5 working days.",
        "You can return anything at any time, even without a receipt. "
        "We refund in cash on the same day and add a 10% voucher.",
    ),
    "shipping": (
        "Standard shipping takes 3 to 5 working days. Express shipping arrives the next working "
        "day when the order is placed before 3 pm.",
        [
            "When will my order arrive if I order today?",
            "Is there a faster delivery option?",
            "My parcel has not arrived after {days} days, is that normal?",
        ],
        "Standard shipping takes 3 to 5 working days. If you order express before 3 pm, it "
        "arrives the next working day.",
        "All orders arrive within 24 hours and shipping is always free. "
        "We also guarantee delivery on Sundays.",
    ),
    "password": (
        "Customers reset their password from the sign-in page with the 'Forgot password' link. "
        "The reset link is valid for 30 minutes.",
        [
            "I forgot my password, what do I do?",
            "The reset link does not work anymore.",
            "How can I change my password?",
        ],
        "Use the 'Forgot password' link on the sign-in page. The reset link you receive is valid "
        "for 30 minutes, so request a new one if it expired.",
        "Send us your current password by e-mail and we will change it for you. "
        "Reset links never expire.",
    ),
    "invoice": (
        "Invoices are available under Orders in the customer account as PDF files. A corrected "
        "invoice can be requested within 60 days of purchase.",
        [
            "Where can I download my invoice?",
            "My company name is wrong on the invoice.",
            "I need a copy of an invoice from {days} days ago.",
        ],
        "You can download every invoice as a PDF under Orders in your account. A corrected "
        "invoice can be requested within 60 days of the purchase.",
        "We post paper invoices only, once a year. "
        "Corrections are not possible after the order ships.",
    ),
    "warranty": (
        "Electronics carry a two-year warranty covering manufacturing defects. Accidental damage "
        "is not covered by the warranty.",
        [
            "My headphones stopped working after a year, is that covered?",
            "I dropped my phone, will the warranty repair it?",
            "How long is the warranty on a laptop?",
        ],
        "Electronics have a two-year warranty for manufacturing defects. Accidental damage, "
        "such as a drop, is not covered.",
        "Everything has a lifetime warranty that also covers drops and water damage. "
        "We replace the device the same day.",
    ),
    "subscription": (
        "Subscriptions renew monthly and can be cancelled at any time under Account, then "
        "Subscription. Cancellation takes effect at the end of the billing period.",
        [
            "How do I cancel my subscription?",
            "Will I be charged again if I cancel today?",
            "Can I pause my membership for {days} days?",
        ],
        "You can cancel at any time under Account, then Subscription. The cancellation takes "
        "effect at the end of the current billing period, so you will not be charged again.",
        "Subscriptions can only be cancelled by phone after a 12-month minimum term. "
        "We refund all previous months.",
    ),
    "damaged": (
        "If a parcel arrives damaged, the customer reports it within 14 days with photos. ACME "
        "then sends a replacement or issues a refund.",
        [
            "The vase arrived broken, what now?",
            "My package was crushed, can I get a new one?",
            "The screen was cracked on delivery {days} days ago.",
        ],
        "Please report the damage within 14 days and attach photos. We will then send a "
        "replacement or refund you.",
        "Damaged parcels are the courier's responsibility; please contact them directly. "
        "We cannot help with broken items.",
    ),
    "account": (
        "Accounts are locked after five failed sign-in attempts and unlock automatically after "
        "one hour. Support can unlock an account after verifying the customer's identity.",
        [
            "My account is locked, can you help?",
            "I typed my password wrong several times and now I cannot sign in.",
            "Why was my account blocked?",
        ],
        "Your account locks after five failed sign-in attempts and unlocks by itself after one "
        "hour. We can also unlock it once we have verified your identity.",
        "Locked accounts are deleted after 24 hours for security reasons. "
        "Please create a new account.",
    ),
}
DISTRACTORS = [
    "Gift cards cannot be exchanged for cash and are valid for three years.",
    "The ACME loyalty programme awards one point per euro spent.",
    "Stores are open Monday to Saturday from 9 am to 8 pm.",
    "Business customers can pay by bank transfer within 30 days.",
]
SEPARATOR = "\n---\n"


def demo_cases(count: int = 320, seed: int = 7) -> list[dict]:
    """Deterministic support cases across languages, geographies and user roles."""
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    cases = []
    for index in range(count):
        topic = topics[index % len(topics)]
        passage, questions, answer, _ = TOPICS[topic]
        language = LANGUAGES[(index // len(topics)) % len(LANGUAGES)]
        role = ROLES[rng.randrange(len(ROLES))]
        message = rng.choice(questions).format(days=rng.randrange(5, 60))
        contexts = [passage, DISTRACTORS[index % len(DISTRACTORS)]]
        cases.append(
            {
                "id": f"sup-{index + 1:04d}",
                "variables": {"context": SEPARATOR.join(contexts), "message": message},
                "expected": answer,
                "contexts": contexts,
                "language": language,
                "geography": GEOGRAPHIES[language],
                "user_role": role,
                "task_type": "drafting",
                "segments": {"topic": topic},
                "tags": ["demo"],
            }
        )
    return cases


def demo_outputs(cases: list[dict], version: int, seed: int = 11) -> list[dict]:
    """Recorded outputs: v1 invents facts in 40 % of cases; v2 is grounded except for
    partners, where its new length cap cuts the answer to a non-answer."""
    rng = random.Random(seed + version)
    outputs = []
    for case in cases:
        topic = case["segments"]["topic"]
        _, _, answer, invented = TOPICS[topic]
        if version == 1:
            text = invented if rng.random() < 0.4 else answer
        elif case["user_role"] == "partner" and rng.random() < 0.7:
            text = "Thank you for your message. I will check with a specialist and get back to you."
        else:
            first = answer.split(". ")[0].rstrip(".")
            text = f'{answer} As our policy says: "{first}."' if rng.random() < 0.5 else answer
        outputs.append({"id": case["id"], "output": text})
    return outputs


def _execute(run: Run) -> Run:
    """Score a run in this process (the demo loads before any worker starts)."""
    for batch_id in run.batches.order_by("index").values_list("pk", flat=True):
        run_batch_execute(batch_id)
    run_finalize(run.pk)
    run.refresh_from_db()
    return run


def demo_evaluations(users, prompt, *, cases: int = 320) -> dict:
    """The support dataset, suite and two scored runs (idempotent)."""
    olivia, pat = users["olivia"], users["pat"]
    if Suite.objects.filter(slug=SUITE_SLUG).exists():
        return {"created": False}
    artifact_register_default_pack()
    rows = demo_cases(cases)
    with transaction.atomic():
        dataset = Dataset.objects.filter(slug=DATASET_SLUG).first() or dataset_create(
            actor=olivia,
            name="Support replies: evaluation set",
            slug=DATASET_SLUG,
            charter=prompt.charter,
            prompt=prompt,
            description="Customer questions across four markets and three user roles, with the "
            "knowledge-base passages the retriever returns and a reviewed reference reply.",
        )
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        version = dataset_version_upload(
            actor=olivia,
            dataset=dataset,
            stream=io.BytesIO(data),
            filename="support-replies.jsonl",
            notes="Sampled from March tickets; references written by tier-2 agents.",
        )
        suite = suite_create(
            actor=olivia,
            charter=prompt.charter,
            slug=SUITE_SLUG,
            fields={
                "name": "Support reply quality",
                "description": "Grounding and closeness to the reviewed reply, per market and role.",
                "prompt": prompt,
                "dataset_version": version,
                "scorers": [
                    {"scorer": "semantic_similarity", "params": {"pass_at": 0.75}},
                    {"scorer": "grounded_coverage", "params": {}},
                    {"scorer": "token_f1", "params": {}},
                ],
                "min_segment_cases": 20,
                "regression_tolerance": 0.05,
            },
        )
        for fields in (
            {
                "metric": "grounded_coverage",
                "aggregate": "mean",
                "comparator": ">=",
                "value": 0.7,
                "rationale": "Agents must be able to trust the draft's facts.",
            },
            {
                "metric": "semantic_similarity",
                "aggregate": "mean",
                "comparator": ">=",
                "value": 0.7,
                "rationale": "Drafts should say what the reviewed reply says.",
            },
            {
                "metric": "semantic_similarity",
                "aggregate": "worst_segment",
                "comparator": ">=",
                "value": 0.6,
                "segment_key": "user_role",
                "min_cases": 20,
                "rationale": "No user group may be served much worse than the others.",
            },
            {
                "metric": "token_f1",
                "aggregate": "p10",
                "comparator": ">=",
                "value": 0.2,
                "blocking": False,
                "rationale": "Early warning for off-topic drafts.",
            },
        ):
            threshold_set(actor=olivia, suite=suite, fields=fields)
    v1 = prompt.versions.get(number=1)
    v2 = prompt.versions.get(number=2)
    runs = {}
    for number, version_obj, actor in ((1, v1, olivia), (2, v2, pat)):
        with transaction.atomic():
            run = run_start(
                actor=actor,
                suite=suite,
                prompt_version=version_obj,
                note=f"Recorded outputs of v{number} on the March sample",
            )
            run_outputs_post(
                actor=actor,
                run=run,
                items=enumerate(demo_outputs(rows, number), start=1),
                complete=True,
                enqueue=False,
            )
        runs[number] = _execute(run)
    return {
        "created": True,
        "runs": {n: (r.pk, r.status, r.verdict) for n, r in runs.items()},
        "ok": all(r.status == RunStatus.COMPLETED for r in runs.values()),
    }
