"""Shared models: integration API keys and in-app notifications."""

from django.conf import settings
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class ApiKey(AbstractAPIKey):
    """A hashed, prefixed, revocable key that acts as one service user."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"


class Notification(models.Model):
    """An in-app message for one person; e-mailed once when created."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    verb = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True)
    dedupe_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "dedupe_key"], name="notification_once_per_recipient"
            )
        ]
        indexes = [models.Index(fields=["recipient", "read_at"])]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.title}"


class AuditEvent(models.Model):
    """One business event or history row in the tamper-evident audit chain; append-only.

    `hash` covers the event's fields and the previous event's hash, so editing, deleting or
    reordering any row breaks every link after it (`manage.py verify_audit` finds the first).
    """

    created_at = models.DateTimeField(db_index=True)
    verb = models.CharField(max_length=64, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    actor_name = models.CharField(max_length=150, blank=True)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300, blank=True)
    charter_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.verb} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")


class AuditHead(models.Model):
    """The chain's newest hash, one row locked by every writer so the chain stays linear."""

    last_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head at #{self.last_id}"


class AuditCheckpoint(models.Model):
    """A signed snapshot of the chain's head, also written outside the database.

    Each one is appended to the anchor file and the `aifactory.audit` log as it is made, and
    signed with a key the database never holds: a log cut back to an earlier state, emptied or
    rebuilt no longer matches the newest checkpoint (`manage.py verify_audit` names it).
    `seals` carries the content digests of rows first seen by this checkpoint (dataset versions).
    """

    sequence = models.BigIntegerField(help_text="The id of the newest event it covers.")
    head_hash = models.CharField(max_length=64)
    event_count = models.BigIntegerField(help_text="How many events have an id up to sequence.")
    created_at = models.DateTimeField()
    database = models.CharField(max_length=255, blank=True)
    key_id = models.CharField(max_length=16)
    seals = models.JSONField(default=dict, blank=True)
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"checkpoint #{self.pk} at event #{self.sequence}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit checkpoints are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit checkpoints are append-only.")
