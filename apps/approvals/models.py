"""RACI assignments, approval requests with their gate evidence, and append-only decisions."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.urls import reverse
from simple_history.models import HistoricalRecords

from apps.charters.models import Charter
from apps.prompts.models import Prompt, PromptVersion

from .choices import Activity, RequestKind, RequestStatus, Role, Verdict


class RaciAssignment(models.Model):
    """Who is Responsible, Accountable, Consulted or Informed for one activity.

    `charter` empty: the global default, used for an activity where a charter names nobody.
    """

    charter = models.ForeignKey(
        Charter, on_delete=models.CASCADE, null=True, blank=True, related_name="raci"
    )
    activity = models.CharField(max_length=40, choices=Activity.choices)
    role = models.CharField(max_length=1, choices=Role.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="raci",
    )
    group = models.ForeignKey(
        Group, on_delete=models.CASCADE, null=True, blank=True, related_name="raci"
    )
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["charter", "activity", "role", "id"]
        verbose_name = "RACI assignment"
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(user__isnull=False) & models.Q(group__isnull=True))
                | (models.Q(user__isnull=True) & models.Q(group__isnull=False)),
                name="raci_user_xor_group",
            )
        ]
        indexes = [models.Index(fields=["charter", "activity", "role"])]

    def __str__(self) -> str:
        scope = self.charter.slug if self.charter_id else "global"
        return f"{scope}: {self.get_role_display()} for {self.get_activity_display()} — {self.who}"

    @property
    def who(self) -> str:
        if self.user_id:
            return self.user.get_full_name() or self.user.get_username()
        return f"group {self.group.name}"


class ApprovalRequest(models.Model):
    """A request to do something that needs a decision, with its gate evidence."""

    kind = models.CharField(max_length=24, choices=RequestKind.choices)
    status = models.CharField(
        max_length=20, choices=RequestStatus.choices, default=RequestStatus.OPEN, db_index=True
    )
    charter = models.ForeignKey(
        Charter, on_delete=models.PROTECT, null=True, blank=True, related_name="approval_requests"
    )
    prompt_version = models.ForeignKey(
        PromptVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="approval_requests",
    )
    prompt = models.ForeignKey(
        Prompt, on_delete=models.PROTECT, null=True, blank=True, related_name="approval_requests"
    )
    label = models.CharField(max_length=50, blank=True)
    transition = models.CharField(max_length=24, blank=True, help_text="Charter transition name.")
    threshold = models.ForeignKey(
        "evaluations.Threshold", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    suite = models.ForeignKey(
        "evaluations.Suite", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    endpoint = models.ForeignKey(
        "registry.ModelEndpoint",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="approval_requests",
    )
    proposed = models.JSONField(default=dict, blank=True, help_text="The change asked for.")
    risk_tier = models.CharField(max_length=16, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_requests"
    )
    reason = models.TextField(blank=True)
    required = models.JSONField(default=list, blank=True, help_text="Approver slots from RACI.")
    evidence = models.JSONField(
        default=list, blank=True, help_text="Gate results when last checked."
    )
    evidence_checked_at = models.DateTimeField(null=True, blank=True)
    fast_track = models.BooleanField(default=False)
    outcome = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "kind"])]
        permissions = [("decide_any", "Can decide any approval request")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()}: {self.subject}"

    def get_absolute_url(self) -> str:
        return reverse("approvals:request_detail", kwargs={"pk": self.pk})

    @property
    def subject(self) -> str:
        if self.kind == RequestKind.PROMOTION and self.prompt_version_id:
            return f"{self.prompt_version.prompt.slug} v{self.prompt_version.number} → {self.label}"
        if self.kind == RequestKind.CHARTER_TRANSITION and self.charter_id:
            return f"{self.charter.slug}: {self.transition}"
        if self.kind == RequestKind.THRESHOLD_CHANGE and self.suite_id:
            return f"{self.suite.slug}: {self.proposed.get('summary', 'threshold change')}"
        if self.kind == RequestKind.RETIREMENT and self.prompt_id:
            return f"retire {self.prompt.slug}"
        if self.kind == RequestKind.ENDPOINT and self.endpoint_id:
            return f"model endpoint {self.endpoint.slug}: {self.transition}"
        return "—"


class Decision(models.Model):
    """One person's decision or comment on a request; append-only."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verdict = models.CharField(max_length=20, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    roles = models.JSONField(default=list, blank=True, help_text="The RACI roles it was made in.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.actor} {self.verdict} on #{self.request_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Decisions are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Decisions are append-only.")


class RaciGrant(models.Model):
    """An object permission that RACI added (and so may take away again)."""

    charter = models.ForeignKey(Charter, on_delete=models.CASCADE, related_name="raci_grants")
    kind = models.CharField(max_length=5, choices=[("user", "user"), ("group", "group")])
    holder_id = models.BigIntegerField()
    codename = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["charter", "kind", "holder_id", "codename"], name="raci_grant_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.codename} for {self.kind} {self.holder_id} on {self.charter_id}"
