"""Where a prompt's executions go (its model endpoint and guard rails) and what each call cost."""

from __future__ import annotations

from django.db import models
from simple_history.models import HistoricalRecords

from apps.prompts.models import Application, Prompt, PromptVersion
from apps.registry.models import ModelEndpoint


class Route(models.Model):
    """The registered model endpoint (and model) a prompt executes on, and its guard rails.

    The address, credential, timeouts and prices belong to the endpoint in the model registry:
    a route names an approved entry, never a URL or a credential."""

    class FilterMode(models.TextChoices):
        FLAG = "flag", "Flag findings, return the output"
        REDACT = "redact", "Redact matched spans"
        BLOCK = "block", "Block the output"

    prompt = models.OneToOneField(Prompt, on_delete=models.CASCADE, related_name="route")
    endpoint = models.ForeignKey(
        ModelEndpoint,
        on_delete=models.PROTECT,
        related_name="routes",
        help_text="An approved endpoint of the model registry.",
    )
    model = models.CharField(
        max_length=200, blank=True, help_text="One the endpoint serves (empty: its default)."
    )
    filter_mode = models.CharField(
        max_length=8, choices=FilterMode.choices, default=FilterMode.FLAG
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        default=600, help_text="Per application; 0 means no limit."
    )
    sample_rate = models.FloatField(
        default=0.0, help_text="Share of executions scored online by the prompt's suite (0–1)."
    )

    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"{self.prompt.slug} → {self.endpoint.slug}" + (
            f" ({self.model})" if self.model else ""
        )


class Call(models.Model):
    """One execution through the gateway: platform-health telemetry for the charter."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="gateway_calls")
    version = models.ForeignKey(
        PromptVersion, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    application = models.ForeignKey(
        Application, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    charter_id = models.BigIntegerField(null=True, db_index=True)
    label = models.CharField(max_length=40)
    status = models.CharField(max_length=16)  # ok | flagged | redacted | blocked | error | limited
    latency_ms = models.FloatField(null=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    findings = models.JSONField(default=list, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["charter_id", "created_at"])]

    def __str__(self) -> str:
        return f"{self.prompt_id} {self.status} {self.latency_ms} ms"


class OnlineScore(models.Model):
    """A sampled execution scored on a worker with the prompt's suite scorers (no reference
    answer: grounding against the variables' context, policy, format and length checks)."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="online_score")
    charter_id = models.BigIntegerField(null=True, db_index=True)
    output = models.TextField()
    variables = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    suite_slug = models.CharField(max_length=80, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    scored_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"online score of call {self.call_id}"
