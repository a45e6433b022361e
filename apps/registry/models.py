"""The register of model endpoints an organisation has approved, with their data boundaries."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from simple_history.models import HistoricalRecords

from apps.core.choices import RiskTier

from .choices import DataLocation, EndpointStatus, ProviderKind, TrainingUse


def all_tiers() -> list[str]:
    return list(RiskTier.values)


class ModelEndpoint(models.Model):
    """A model server (and the models it serves) that runs, routes and checks may call.

    Nothing calls a model anywhere else: evaluation runs, gateway routes and drift checks
    name an approved endpoint, never a URL or a credential.
    """

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    provider_kind = models.CharField(
        max_length=16, choices=ProviderKind.choices, default=ProviderKind.OPENAI_COMPATIBLE
    )
    base_url = models.CharField(
        max_length=300, help_text="The …/v1 address of the server (http or https)."
    )
    model_names = models.JSONField(
        default=list, blank=True, help_text="The model names this endpoint serves."
    )
    vendor = models.CharField(max_length=120, help_text="Who runs the server (or 'internal').")
    data_location = models.CharField(
        max_length=16, choices=DataLocation.choices, default=DataLocation.VENDOR_REGION
    )
    region = models.CharField(max_length=80, blank=True, help_text="Where the vendor keeps data.")
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="How long the vendor keeps prompts and outputs (empty: unknown).",
    )
    training_use = models.CharField(
        max_length=8, choices=TrainingUse.choices, default=TrainingUse.UNKNOWN
    )
    terms = models.TextField(blank=True, help_text="The contract terms on data, as recorded facts.")
    status = models.CharField(
        max_length=10,
        choices=EndpointStatus.choices,
        default=EndpointStatus.PROPOSED,
        db_index=True,
        editable=False,
    )
    status_reason = models.CharField(max_length=300, blank=True, editable=False)
    risk_tiers = models.JSONField(
        default=all_tiers, blank=True, help_text="Risk tiers of the charters that may use it."
    )
    price_per_1k_input = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    price_per_1k_output = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    timeout_s = models.FloatField(default=30)
    max_retries = models.PositiveSmallIntegerField(default=2)
    concurrency = models.PositiveSmallIntegerField(default=4)
    credential = models.CharField(
        max_length=100,
        blank=True,
        help_text="A credential the operator declared for this endpoint (empty: none).",
    )
    allow_private = models.BooleanField(
        default=False,
        help_text="Allow a loopback or private address (an on-premises model server).",
    )
    allow_private_reason = models.CharField(max_length=300, blank=True)
    proxy = models.CharField(
        max_length=300, blank=True, help_text="An outbound proxy for this endpoint only."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "id"]
        verbose_name = "model endpoint"
        permissions = [("operate_modelendpoint", "Can suspend and propose model endpoints")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display().lower()})"

    def get_absolute_url(self) -> str:
        return reverse("registry:endpoint_detail", kwargs={"slug": self.slug})

    @property
    def is_approved(self) -> bool:
        return self.status == EndpointStatus.APPROVED

    def serves(self, model: str) -> bool:
        """Whether `model` is one this endpoint serves (an empty name: the server's default)."""
        return not model or model in (self.model_names or [])

    def snapshot(self, model: str = "") -> dict:
        """What a run or an evidence pack records of the endpoint that produced its outputs."""
        return {
            "endpoint": self.slug,
            "name": self.name,
            "model": model,
            "base_url": self.base_url,
            "vendor": self.vendor,
            "data_location": self.data_location,
            "region": self.region,
        }
