"""Prompt assets, their immutable versions, labels, policy rules, applications and lineage."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from apps.charters.choices import RiskTier
from apps.charters.models import Charter

from .choices import (
    ChangeKind,
    PromptStatus,
    RuleKind,
    Severity,
    TaskType,
    TemplateKind,
    VersionStatus,
)


class Prompt(models.Model):
    """A reusable prompt asset under a charter; integrations address it by slug."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    charter = models.ForeignKey(
        Charter,
        on_delete=models.PROTECT,
        related_name="prompts",
        null=True,
        blank=True,
        help_text="Required, except for the starter templates shipped with the product.",
    )
    business_function = models.CharField(max_length=100, blank=True)
    task_type = models.CharField(max_length=24, choices=TaskType.choices, default=TaskType.OTHER)
    risk_level = models.CharField(max_length=16, choices=RiskTier.choices, default=RiskTier.MEDIUM)
    model_family = models.CharField(
        max_length=100, blank=True, help_text="e.g. gpt-4o, llama-3, mistral"
    )
    policy_tags = models.JSONField(
        default=list,
        blank=True,
        help_text="Data sensitivity and intended-use tags, e.g. pii-free, internal-only.",
    )
    tags = models.JSONField(default=list, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_prompts"
    )
    status = models.CharField(
        max_length=16, choices=PromptStatus.choices, default=PromptStatus.ACTIVE, db_index=True
    )
    review_date = models.DateField(null=True, blank=True)
    retirement_condition = models.TextField(blank=True)
    successor = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="predecessors"
    )
    sunset_date = models.DateField(null=True, blank=True)
    status_reason = models.TextField(blank=True)
    forked_from = models.ForeignKey(
        "PromptVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="forks"
    )
    is_starter = models.BooleanField(
        default=False, help_text="A starter template shipped with the product."
    )
    listed_in_catalog = models.BooleanField(
        default=False,
        help_text="Published in the catalog: every signed-in person may read and fork it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(charter__isnull=False) | models.Q(is_starter=True),
                name="prompt_has_charter_unless_starter",
            )
        ]
        permissions = [
            ("review_prompt", "Can approve or reject submitted prompt versions"),
            ("waive_finding", "Can waive blocking policy findings"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("prompts:detail", kwargs={"slug": self.slug})


class PromptVersion(models.Model):
    """One version of a prompt; editable as a draft, immutable once submitted."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    template_kind = models.CharField(
        max_length=8, choices=TemplateKind.choices, default=TemplateKind.CHAT
    )
    messages = models.JSONField(
        default=list, blank=True, help_text='[{"role": "system", "content": "…"}, …]'
    )
    text = models.TextField(blank=True)
    variables = models.JSONField(
        default=list, blank=True, help_text='[{"name", "description", "required", "example"}]'
    )
    model_config = models.JSONField(default=dict, blank=True)
    release_notes = models.TextField(blank=True)
    change_kind = models.CharField(
        max_length=8, choices=ChangeKind.choices, default=ChangeKind.MINOR
    )
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    content_hash = models.CharField(max_length=64, db_index=True)
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT, db_index=True
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decision_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    # Fields that make up the content; frozen once the version leaves draft.
    CONTENT_FIELDS = (
        "template_kind",
        "messages",
        "text",
        "variables",
        "model_config",
        "release_notes",
        "change_kind",
        "parent_id",
    )

    class Meta:
        ordering = ["prompt_id", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "number"], name="version_number_unique_per_prompt"
            )
        ]

    def __str__(self) -> str:
        return f"{self.prompt.slug} v{self.number}"

    def save(self, *args, **kwargs):
        # Last line of defence behind the services: a submitted version's content never changes.
        if self.pk and not kwargs.get("force_insert"):
            stored = (
                type(self).objects.filter(pk=self.pk).values("status", *self.CONTENT_FIELDS).first()
            )
            if stored and stored["status"] != VersionStatus.DRAFT:
                changed = [f for f in self.CONTENT_FIELDS if stored[f] != getattr(self, f)]
                if changed:
                    raise ValidationError(
                        f"Version {self.number} was submitted and is immutable; create a new version "
                        f"to change {', '.join(changed)}."
                    )
        super().save(*args, **kwargs)

    @property
    def is_draft(self) -> bool:
        return self.status == VersionStatus.DRAFT


class PolicyRule(models.Model):
    """A check run on every submitted version (and on outputs later), editable by compliance."""

    code = models.CharField(max_length=16, unique=True)
    title = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=RuleKind.choices)
    pattern = models.TextField(
        help_text="A regular expression, or the detector / structural check name."
    )
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    risk_levels = models.JSONField(
        default=list, blank=True, help_text="Empty: applies to every risk level."
    )
    message = models.CharField(max_length=300)
    example_true = models.TextField(blank=True, help_text="Text this rule must flag.")
    example_false = models.TextField(blank=True, help_text="Text this rule must not flag.")
    enabled = models.BooleanField(default=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.title}"


class PolicyFinding(models.Model):
    """One rule's match on one version, with the span; blocking ones need a waiver to promote."""

    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="findings")
    rule = models.ForeignKey(PolicyRule, on_delete=models.PROTECT, related_name="findings")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    message = models.CharField(max_length=300)
    location = models.CharField(max_length=60, blank=True)
    span_start = models.IntegerField(null=True, blank=True)
    span_end = models.IntegerField(null=True, blank=True)
    excerpt = models.CharField(max_length=120, blank=True)
    waived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    waived_at = models.DateTimeField(null=True, blank=True)
    waiver_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["version_id", "-severity", "rule__code", "id"]

    def __str__(self) -> str:
        return f"{self.rule.code} on {self.version}"

    @property
    def is_blocking(self) -> bool:
        return self.severity == Severity.BLOCKING and self.waived_at is None


class Label(models.Model):
    """A named pointer (production, staging, …) from a prompt to one of its versions."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.SlugField(max_length=40)
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="labels")
    protected = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["prompt_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "name"], name="label_unique_per_prompt")
        ]

    def __str__(self) -> str:
        return f"{self.prompt.slug}@{self.name}"


class LabelMove(models.Model):
    """Append-only record of a label moving, so 'what was live on date D' is answerable."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="label_moves")
    label = models.CharField(max_length=40)
    from_version = models.ForeignKey(
        PromptVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    to_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    moved_at = models.DateTimeField(db_index=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-moved_at", "-id"]
        indexes = [models.Index(fields=["prompt", "label", "moved_at"])]

    def __str__(self) -> str:
        return f"{self.prompt_id}@{self.label} → {self.to_version_id}"


class Application(models.Model):
    """A consuming system; its API keys act as its service user, so every resolve is attributed."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_applications"
    )
    service_user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="application"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Consumer(models.Model):
    """Lineage from real use: which application reads which prompt through which label."""

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="consumptions"
    )
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="consumers")
    label = models.CharField(max_length=40)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "prompt", "label"], name="consumer_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.application} → {self.prompt_id}@{self.label}"


class PromptUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Prompt, on_delete=models.CASCADE)


class PromptGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Prompt, on_delete=models.CASCADE)
