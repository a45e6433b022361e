"""Charters, their dependency map and their metrics."""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from .choices import (
    CharterStatus,
    Criticality,
    DataSensitivity,
    DependencyKind,
    MetricDirection,
    MetricLayer,
    MetricRole,
    RiskTier,
)


class Charter(models.Model):
    """Why an AI initiative exists, for whom, how it is proven, and who owns it."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    problem = models.TextField(blank=True, help_text="The business problem, in the owner's words.")
    process = models.TextField(
        blank=True,
        help_text="Where AI intervenes in the workflow and who approves or corrects its outputs.",
    )
    proof = models.TextField(
        blank=True, help_text="The evidence that will show the change is real."
    )
    business_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_charters"
    )
    target_users = models.TextField(blank=True, help_text="Who uses the AI output.")
    risk_tier = models.CharField(max_length=16, choices=RiskTier.choices, default=RiskTier.MEDIUM)
    data_sensitivity = models.CharField(
        max_length=16, choices=DataSensitivity.choices, default=DataSensitivity.INTERNAL
    )
    intended_use = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=CharterStatus.choices, default=CharterStatus.DRAFT, db_index=True
    )
    review_date = models.DateField(null=True, blank=True)
    retirement_condition = models.TextField(blank=True)
    status_reason = models.TextField(
        blank=True, help_text="Why the last status change happened (rejection, pause, retirement)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["title", "id"]
        permissions = [("approve_charter", "Can approve, reject and take charters live")]
        indexes = [models.Index(fields=["review_date"])]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("charters:detail", kwargs={"slug": self.slug})

    @property
    def is_editable(self) -> bool:
        return self.status == CharterStatus.DRAFT

    @property
    def review_overdue(self) -> bool:
        return (
            self.review_date is not None
            and self.review_date < timezone.localdate()
            and self.status != CharterStatus.RETIRED
        )


class Dependency(models.Model):
    """One entry of a charter's dependency map: a system, data source, team, vendor or model."""

    charter = models.ForeignKey(Charter, on_delete=models.CASCADE, related_name="dependencies")
    kind = models.CharField(max_length=16, choices=DependencyKind.choices)
    name = models.CharField(max_length=200)
    criticality = models.CharField(
        max_length=16, choices=Criticality.choices, default=Criticality.MEDIUM
    )
    notes = models.TextField(blank=True)
    endpoint = models.ForeignKey(
        "registry.ModelEndpoint",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="dependencies",
        help_text="For a model or vendor: its entry in the model registry.",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "dependencies"
        constraints = [
            models.UniqueConstraint(
                fields=["charter", "kind", "name"], name="dependency_unique_per_charter"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.endpoint_id and self.kind not in (DependencyKind.MODEL, DependencyKind.VENDOR):
            raise ValidationError(
                {"endpoint": "Only a model or vendor dependency links to the model registry."}
            )


class Metric(models.Model):
    """How a charter is measured: one layer, a role, a direction, baseline, target, guardrail."""

    charter = models.ForeignKey(Charter, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    layer = models.CharField(max_length=24, choices=MetricLayer.choices)
    role = models.CharField(
        max_length=16, choices=MetricRole.choices, default=MetricRole.SUPPORTING
    )
    unit = models.CharField(max_length=32, blank=True, help_text="e.g. %, minutes, EUR, count")
    direction = models.CharField(max_length=16, choices=MetricDirection.choices)
    baseline_value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    target_value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    guardrail_value = models.DecimalField(
        max_digits=18,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="The value the metric must never cross in the wrong direction.",
    )
    allowed_segment_keys = models.JSONField(
        default=list,
        blank=True,
        help_text="Segment attributes observations may carry, e.g. language, geography.",
    )

    history = HistoricalRecords()

    class Meta:
        ordering = ["charter_id", "role", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charter", "name"], name="metric_name_unique_per_charter"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charter}: {self.name}"


class CharterUserObjectPermission(UserObjectPermissionBase):
    """Direct foreign-key object permissions (joins on an integer, cascades on delete)."""

    content_object = models.ForeignKey(Charter, on_delete=models.CASCADE)


class CharterGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Charter, on_delete=models.CASCADE)
