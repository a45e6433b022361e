"""Enumerations of the evaluations app."""

from django.db import models


class ArtifactTask(models.TextChoices):
    SENTENCE_EMBEDDING = "sentence_embedding", "Sentence embedding"
    SEQUENCE_CLASSIFICATION = "sequence_classification", "Sequence classification"
    CROSS_ENCODER = "cross_encoder", "Cross-encoder pair scoring"


class ArtifactStatus(models.TextChoices):
    PENDING = "pending", "Awaiting validation"
    VALID = "valid", "Valid"
    INVALID = "invalid", "Invalid"
    RETIRED = "retired", "Retired"


class OutputSource(models.TextChoices):
    POSTED = "posted", "Posted by an integration"
    GENERATED = "generated", "Generated through an OpenAI-compatible endpoint"
    MODEL = "model", "Produced by the ONNX model under test"


class RunStatus(models.TextChoices):
    AWAITING_OUTPUTS = "awaiting_outputs", "Awaiting outputs"
    QUEUED = "queued", "Queued"
    SCORING = "scoring", "Scoring"
    FINALIZING = "finalizing", "Finalizing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (
    RunStatus.AWAITING_OUTPUTS,
    RunStatus.QUEUED,
    RunStatus.SCORING,
    RunStatus.FINALIZING,
)


class Verdict(models.TextChoices):
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Aggregate(models.TextChoices):
    MEAN = "mean", "Mean"
    P10 = "p10", "10th percentile"
    P50 = "p50", "Median"
    P90 = "p90", "90th percentile"
    PASS_RATE = "pass_rate", "Pass rate"
    WORST_SEGMENT = "worst_segment", "Worst segment mean"


class Comparator(models.TextChoices):
    GE = ">=", "≥"
    GT = ">", ">"
    LE = "<=", "≤"
    LT = "<", "<"
    EQ = "==", "="


SEGMENT_KEYS = ("language", "geography", "user_role", "task_type")
