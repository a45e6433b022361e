"""Starter templates for recurring tasks, and the default policy rules, loaded after migrate.

Both loaders are idempotent: they add what is missing and never overwrite what
compliance or authors changed.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.utils import timezone

from . import content
from .choices import TaskType, VersionStatus
from .default_rules import DEFAULT_RULES

LIBRARY_USERNAME = "prompt-library"

GROUNDED = (
    "Use only the information in the provided text. If something is not stated there, "
    "say that it is not in the source instead of guessing."
)

STARTERS = [
    {
        "slug": "starter-summarization",
        "name": "Starter: faithful summary",
        "task_type": TaskType.SUMMARIZATION,
        "business_function": "Any",
        "description": "Summarise a document for a named audience in a fixed length, without adding facts.",
        "messages": [
            {
                "role": "system",
                "content": (
                    "You write faithful summaries for busy professionals. " + GROUNDED + " "
                    "Keep names, figures and dates exactly as written. Do not give advice or opinions."
                ),
            },
            {
                "role": "user",
                "content": (
                    "Audience: {{ audience }}\nLength: at most {{ max_words }} words, as bullet points.\n\n"
                    'Text to summarise:\n"""\n{{ document }}\n"""'
                ),
            },
        ],
        "variables": [
            {
                "name": "document",
                "description": "The text to summarise.",
                "required": True,
                "example": "Q3 board minutes…",
            },
            {
                "name": "audience",
                "description": "Who reads the summary.",
                "required": True,
                "example": "regional sales managers",
            },
            {
                "name": "max_words",
                "description": "Upper bound on length.",
                "required": True,
                "example": "120",
            },
        ],
        "model_config": {"temperature": 0.2, "max_tokens": 400},
    },
    {
        "slug": "starter-classification",
        "name": "Starter: single-label classification",
        "task_type": TaskType.CLASSIFICATION,
        "business_function": "Any",
        "description": "Assign exactly one label from a closed list, with a short justification, as JSON.",
        "messages": [
            {
                "role": "system",
                "content": (
                    "You classify texts into exactly one of the allowed labels. Base the decision only on "
                    'the provided text. If no label fits, answer with the label "other". Reply with JSON: '
                    '{"label": <one allowed label>, "reason": <one sentence quoting the text>}.'
                ),
            },
            {
                "role": "user",
                "content": 'Allowed labels: {{ labels }}\n\nText:\n"""\n{{ text }}\n"""',
            },
        ],
        "variables": [
            {
                "name": "labels",
                "description": "Comma-separated closed list of labels.",
                "required": True,
                "example": "billing, technical, account, other",
            },
            {
                "name": "text",
                "description": "The text to classify.",
                "required": True,
                "example": "My invoice shows the wrong VAT rate.",
            },
        ],
        "model_config": {
            "temperature": 0,
            "max_tokens": 120,
            "response_format": {"type": "json_object"},
        },
    },
    {
        "slug": "starter-routing",
        "name": "Starter: request routing",
        "task_type": TaskType.ROUTING,
        "business_function": "Operations",
        "description": "Route an incoming request to one queue and flag urgency, for a human to confirm.",
        "messages": [
            {
                "role": "system",
                "content": (
                    "You route incoming requests to the team best placed to handle them. Choose one queue "
                    "from the list, based only on the request and the queue descriptions provided. Mark the "
                    "request urgent only if it mentions a safety issue, a legal deadline or a service outage. "
                    "A person confirms every route; say when you are unsure. Reply with JSON: "
                    '{"queue": <queue id>, "urgent": true|false, "confidence": "high"|"low"}.'
                ),
            },
            {
                "role": "user",
                "content": 'Queues:\n{{ queues }}\n\nRequest:\n"""\n{{ request }}\n"""',
            },
        ],
        "variables": [
            {
                "name": "queues",
                "description": "One line per queue: id and what it handles.",
                "required": True,
                "example": "claims-property: damage to buildings",
            },
            {
                "name": "request",
                "description": "The incoming message.",
                "required": True,
                "example": "Water is coming through the ceiling…",
            },
        ],
        "model_config": {
            "temperature": 0,
            "max_tokens": 80,
            "response_format": {"type": "json_object"},
        },
    },
    {
        "slug": "starter-extraction",
        "name": "Starter: field extraction to JSON",
        "task_type": TaskType.EXTRACTION,
        "business_function": "Any",
        "description": "Extract named fields from a document into JSON, with null for anything absent.",
        "messages": [
            {
                "role": "system",
                "content": (
                    "You extract fields from documents. "
                    + GROUNDED
                    + " Use null for a field that is not "
                    "present. Copy values exactly; normalise dates to YYYY-MM-DD. Reply with one JSON object "
                    "whose keys are exactly the requested field names."
                ),
            },
            {
                "role": "user",
                "content": 'Fields to extract:\n{{ fields }}\n\nDocument:\n"""\n{{ document }}\n"""',
            },
        ],
        "variables": [
            {
                "name": "fields",
                "description": "One field name and description per line.",
                "required": True,
                "example": "renewal_date: when the contract renews",
            },
            {
                "name": "document",
                "description": "The source document text.",
                "required": True,
                "example": "This Agreement renews on 1 March 2027…",
            },
        ],
        "model_config": {
            "temperature": 0,
            "max_tokens": 600,
            "response_format": {"type": "json_object"},
        },
    },
    {
        "slug": "starter-response-drafting",
        "name": "Starter: grounded response draft",
        "task_type": TaskType.DRAFTING,
        "business_function": "Customer service",
        "description": "Draft a reply for a human agent to review, grounded in knowledge-base passages.",
        "messages": [
            {
                "role": "system",
                "content": (
                    "You draft replies for a support agent, who reviews and edits every draft before it is "
                    "sent. Answer only using the provided context passages. If the answer is not in the "
                    "context, say that you will check with a specialist. Match the customer's language, "
                    "be warm and concise, and state any fees or limits from the context plainly."
                ),
            },
            {
                "role": "user",
                "content": (
                    'Tone: {{ tone }}\n\nContext passages:\n{{ context }}\n\nCustomer message:\n"""\n{{ message }}\n"""'
                ),
            },
        ],
        "variables": [
            {
                "name": "message",
                "description": "The customer's message.",
                "required": True,
                "example": "Can I return shoes after 40 days?",
            },
            {
                "name": "context",
                "description": "Retrieved knowledge-base passages.",
                "required": True,
                "example": "Returns are accepted within 30 days…",
            },
            {
                "name": "tone",
                "description": "Brand tone guidance.",
                "required": False,
                "example": "friendly, no emojis",
            },
        ],
        "model_config": {"temperature": 0.3, "max_tokens": 500},
    },
]


def ensure_default_rules() -> int:
    """Insert the default policy rules that are missing (by code)."""
    from .models import PolicyRule

    existing = set(PolicyRule.objects.values_list("code", flat=True))
    missing = [PolicyRule(**rule) for rule in DEFAULT_RULES if rule["code"] not in existing]
    PolicyRule.objects.bulk_create(missing)
    return len(missing)


def ensure_starters() -> int:
    """Insert the starter prompts that are missing, each with one approved version."""
    from .models import Label, LabelMove, Prompt, PromptVersion

    User = get_user_model()
    library, created = User.objects.get_or_create(
        username=LIBRARY_USERNAME,
        defaults={"first_name": "Prompt", "last_name": "Library", "is_active": False},
    )
    if created:
        library.set_unusable_password()
        library.save(update_fields=["password"])
    added = 0
    for spec in STARTERS:
        if Prompt.objects.filter(slug=spec["slug"]).exists():
            continue
        prompt = Prompt.objects.create(
            slug=spec["slug"],
            name=spec["name"],
            description=spec["description"],
            task_type=spec["task_type"],
            business_function=spec["business_function"],
            risk_level="low",
            model_family="any chat model",
            owner=library,
            is_starter=True,
            listed_in_catalog=True,
            tags=["starter", spec["task_type"]],
        )
        kind = "chat"
        version = PromptVersion.objects.create(
            prompt=prompt,
            number=1,
            template_kind=kind,
            messages=spec["messages"],
            variables=spec["variables"],
            model_config=spec["model_config"],
            release_notes="Starter template shipped with AI Factory.",
            change_kind="major",
            author=library,
            status=VersionStatus.APPROVED,
            decided_by=library,
            decided_at=timezone.now(),
            submitted_at=timezone.now(),
            content_hash=content.content_hash(
                kind, spec["messages"], "", spec["variables"], spec["model_config"]
            ),
        )
        # Starters are live from the first start: production points at their approved v1.
        Label.objects.create(prompt=prompt, name="production", version=version, protected=True)
        LabelMove.objects.create(
            prompt=prompt,
            label="production",
            to_version=version,
            moved_by=library,
            moved_at=timezone.now(),
            reason="Starter template shipped with AI Factory.",
        )
        added += 1
    return added


def ensure_library(**kwargs) -> None:
    """post_migrate hook: default rules and starter templates."""
    ensure_default_rules()
    ensure_starters()
