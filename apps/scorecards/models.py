"""Telemetry: metric observations and workflow events, stored once per idempotency key."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.charters.models import Charter, Metric


class Observation(models.Model):
    """One value of one charter metric at a time, with its segment attributes."""

    charter = models.ForeignKey(Charter, on_delete=models.CASCADE, related_name="observations")
    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="observations")
    value = models.FloatField()
    observed_at = models.DateTimeField()
    segments = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "idempotency_key"], name="observation_once_per_key"
            )
        ]
        indexes = [models.Index(fields=["metric", "observed_at"])]

    def __str__(self) -> str:
        return f"{self.metric_id}={self.value} at {self.observed_at:%Y-%m-%d %H:%M}"


class DriftAlert(models.Model):
    """A scheduled re-run of a production version's suite that regressed against the run
    that certified it."""

    charter = models.ForeignKey(Charter, on_delete=models.CASCADE, related_name="drift_alerts")
    prompt = models.ForeignKey(
        "prompts.Prompt", on_delete=models.CASCADE, related_name="drift_alerts"
    )
    run = models.OneToOneField(
        "evaluations.Run", on_delete=models.CASCADE, related_name="drift_alert"
    )
    certified_run = models.ForeignKey(
        "evaluations.Run", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    summary = models.TextField()
    regressions = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"drift on {self.prompt_id}: {self.summary[:60]}"


class WorkflowEvent(models.Model):
    """A step of one task in the charter's workflow, posted by an integration."""

    class Kind(models.TextChoices):
        STARTED = "started", "Task started"
        FINISHED = "finished", "Task finished"
        OVERRIDDEN = "overridden", "Overridden by a human"
        ESCALATED = "escalated", "Escalated"
        REOPENED = "reopened", "Reopened"

    charter = models.ForeignKey(Charter, on_delete=models.CASCADE, related_name="workflow_events")
    task_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    at = models.DateTimeField()
    segments = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["charter", "idempotency_key"], name="workflow_event_once_per_key"
            )
        ]
        indexes = [
            models.Index(fields=["charter", "at"]),
            models.Index(fields=["charter", "task_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} {self.kind}"
