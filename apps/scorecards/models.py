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


class RollupSpec(models.Model):
    """The fixed histogram bins of one metric's rollups, set at its first observation."""

    metric = models.OneToOneField(Metric, on_delete=models.CASCADE, related_name="rollup_spec")
    low = models.FloatField()
    high = models.FloatField()
    bins = models.PositiveSmallIntegerField(default=64)

    def __str__(self) -> str:
        return f"{self.metric_id}: {self.bins} bins over [{self.low}, {self.high}]"


class Rollup(models.Model):
    """Count and sum of one metric's observations on one day, overall ('' key) or for one
    segment value; maintained on ingest so scorecards never scan raw observations."""

    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="rollups")
    day = models.DateField()
    segment_key = models.CharField(max_length=64, blank=True)
    segment_value = models.CharField(max_length=100, blank=True)
    count = models.BigIntegerField(default=0)
    total = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "day", "segment_key", "segment_value"], name="rollup_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric_id} {self.day} {self.segment_key}={self.segment_value}: {self.count}"


class RollupBin(models.Model):
    """How many of a metric's observations on one day fell in one histogram bin (bin 0 and
    bins+1 hold values below and above the spec's range)."""

    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="rollup_bins")
    day = models.DateField()
    bin = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["metric", "day", "bin"], name="rollup_bin_unique")
        ]

    def __str__(self) -> str:
        return f"{self.metric_id} {self.day} bin {self.bin}: {self.count}"
