"""Datasets of cases, scorer model artifacts, suites with thresholds, and evaluation runs."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.urls import reverse
from simple_history.models import HistoricalRecords

from apps.charters.models import Charter
from apps.prompts.models import Prompt, PromptVersion

from .choices import (
    Aggregate,
    ArtifactStatus,
    ArtifactTask,
    BatchStatus,
    Comparator,
    OutputSource,
    RunStatus,
    Verdict,
)


class Dataset(models.Model):
    """A named, versioned collection of evaluation cases under a charter."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    charter = models.ForeignKey(
        Charter,
        on_delete=models.PROTECT,
        related_name="datasets",
        null=True,
        blank=True,
        help_text="Empty for library datasets shipped with the product.",
    )
    prompt = models.ForeignKey(
        Prompt,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="datasets",
        help_text="The prompt whose variables every case must provide.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_datasets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("evaluations:dataset_detail", kwargs={"slug": self.slug})

    @property
    def latest_version(self) -> DatasetVersion | None:
        return self.versions.order_by("-number").first()


class DatasetVersion(models.Model):
    """An immutable set of cases; changing a dataset writes a new version."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    notes = models.TextField(blank=True)
    source_name = models.CharField(max_length=255, blank=True)
    source_format = models.CharField(max_length=8, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, help_text="sha256 of the uploaded file.")
    case_count = models.PositiveIntegerField(default=0)
    segment_keys = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.slug} v{self.number}"

    def get_absolute_url(self) -> str:
        return reverse(
            "evaluations:dataset_version",
            kwargs={"slug": self.dataset.slug, "number": self.number},
        )


class Case(models.Model):
    """One evaluation case: inputs, what a good output looks like, its context and segments."""

    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="cases"
    )
    position = models.PositiveIntegerField(help_text="Line or row number in the upload.")
    external_id = models.CharField(max_length=200)
    variables = models.JSONField(default=dict, blank=True)
    expected = models.TextField(blank=True, help_text="Expected output or label.")
    contexts = models.JSONField(default=list, blank=True, help_text="Context passages.")
    segments = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["dataset_version", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset_version", "external_id"], name="case_external_id_unique"
            )
        ]
        indexes = [models.Index(fields=["dataset_version", "position"])]

    def __str__(self) -> str:
        return self.external_id


class ModelArtifact(models.Model):
    """An ONNX scorer or model under test, with its tokenizer, provenance and validation."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    charter = models.ForeignKey(
        Charter,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="model_artifacts",
        help_text="Empty for the shared scorer library.",
    )
    task = models.CharField(max_length=32, choices=ArtifactTask.choices)
    status = models.CharField(
        max_length=12, choices=ArtifactStatus.choices, default=ArtifactStatus.PENDING
    )
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    tokenizer_sha256 = models.CharField(max_length=64, blank=True)
    max_seq_length = models.PositiveIntegerField(default=256)
    pooling = models.CharField(max_length=16, default="mean", blank=True)
    labels = models.JSONField(default=list, blank=True)
    dimension = models.PositiveIntegerField(null=True, blank=True)
    source = models.CharField(max_length=300, blank=True, help_text="Where the model came from.")
    license = models.CharField(max_length=100, blank=True)
    storage_dir = models.CharField(max_length=500, help_text="Folder under MEDIA_ROOT.")
    validation = models.JSONField(default=dict, blank=True)
    validated_at = models.DateTimeField(null=True, blank=True)
    # The claim of the worker validating it (a redelivered message finds it taken).
    validation_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    validation_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    quantized_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="quantized"
    )
    agreement = models.JSONField(
        default=dict, blank=True, help_text="Agreement with the source model, when derived."
    )
    is_default = models.BooleanField(
        default=False, help_text="The scorer used when a suite names none."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_artifacts"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("evaluations:artifact_detail", kwargs={"slug": self.slug})

    @property
    def path(self) -> Path:
        return Path(settings.MEDIA_ROOT) / self.storage_dir


class Suite(models.Model):
    """A dataset version, the scorers that judge it, and the thresholds a release must meet."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    charter = models.ForeignKey(
        Charter,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="suites",
        help_text="Empty for the starter suites shipped with the product.",
    )
    prompt = models.ForeignKey(
        Prompt,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="suites",
        help_text="The prompt this suite gates.",
    )
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="suites"
    )
    scorers = models.JSONField(
        default=list, help_text='[{"scorer": "token_f1", "params": {…}, "artifact": "slug"}]'
    )
    regression_tolerance = models.FloatField(
        default=0.05, help_text="A segment whose mean worsens by more than this has regressed."
    )
    min_segment_cases = models.PositiveIntegerField(
        default=20, help_text="Segments with fewer cases are reported but never judged."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_suites"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "id"]
        permissions = [("run_suite", "Can start evaluation runs on any suite (CI pipelines)")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("evaluations:suite_detail", kwargs={"slug": self.slug})


class Threshold(models.Model):
    """One bar a run must clear: metric, aggregate, comparator, value; owned and recorded."""

    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="thresholds")
    metric = models.CharField(max_length=64)
    aggregate = models.CharField(max_length=16, choices=Aggregate.choices, default=Aggregate.MEAN)
    comparator = models.CharField(max_length=2, choices=Comparator.choices, default=Comparator.GE)
    value = models.FloatField()
    blocking = models.BooleanField(default=True, help_text="Unchecked: a warning only.")
    min_cases = models.PositiveIntegerField(default=0)
    segment_key = models.CharField(
        max_length=64, blank=True, help_text="For worst segment: which key (empty: every key)."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_thresholds"
    )
    rationale = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["suite", "metric", "id"]

    def __str__(self) -> str:
        return f"{self.aggregate} {self.metric} {self.comparator} {self.value:g}"


class Run(models.Model):
    """One prompt version (or ONNX model under test) scored on one suite."""

    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, related_name="runs")
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="runs"
    )
    prompt_version = models.ForeignKey(
        PromptVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="runs"
    )
    content_hash = models.CharField(max_length=64, blank=True, db_index=True)
    model_under_test = models.ForeignKey(
        ModelArtifact, on_delete=models.PROTECT, null=True, blank=True, related_name="runs"
    )
    output_source = models.CharField(max_length=12, choices=OutputSource.choices)
    endpoint = models.JSONField(
        default=dict, blank=True, help_text="Generation endpoint (never the API key)."
    )
    input_variable = models.CharField(
        max_length=100, blank=True, help_text="Model under test: the variable it reads."
    )
    baseline = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="compared_by"
    )
    status = models.CharField(
        max_length=20,
        choices=RunStatus.choices,
        default=RunStatus.QUEUED,
        db_index=True,
    )
    verdict = models.CharField(max_length=8, choices=Verdict.choices, blank=True)
    total_cases = models.PositiveIntegerField(default=0)
    done_cases = models.PositiveIntegerField(default=0)
    total_batches = models.PositiveIntegerField(default=0)
    done_batches = models.PositiveIntegerField(default=0)
    batch_size = models.PositiveIntegerField(default=100)
    queue = models.CharField(
        max_length=64, blank=True, help_text="Celery queue of its batches (empty: the default)."
    )
    scorer_artifacts = models.JSONField(
        default=dict, blank=True, help_text="Which artifact (sha256) each ONNX scorer used."
    )
    summary = models.JSONField(default=dict, blank=True)
    comparison = models.JSONField(default=dict, blank=True)
    gate = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    note = models.CharField(max_length=300, blank=True)
    purpose = models.CharField(
        max_length=12,
        default="release",
        choices=[("release", "Release evidence"), ("drift", "Scheduled drift check")],
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="evaluation_runs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["suite", "status", "-created_at"])]

    def __str__(self) -> str:
        return f"Run #{self.pk} of {self.suite.slug}"

    def get_absolute_url(self) -> str:
        return reverse("evaluations:run_detail", kwargs={"pk": self.pk})

    @property
    def subject(self) -> str:
        if self.prompt_version_id:
            return f"{self.prompt_version.prompt.slug} v{self.prompt_version.number}"
        if self.model_under_test_id:
            return self.model_under_test.slug
        return "—"


class RunBatch(models.Model):
    """A slice of a run's cases scored by one task; claimed idempotently, swept when stuck."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="batches")
    index = models.PositiveIntegerField()
    first_position = models.PositiveIntegerField()
    last_position = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=BatchStatus.choices, default=BatchStatus.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="run_batch_unique")]

    def __str__(self) -> str:
        return f"batch {self.index} of run {self.run_id}"


class RunOutput(models.Model):
    """The output under test for one case of a run (posted, generated or predicted)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="outputs")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    output = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Why no output could be produced.")
    latency_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "case"], name="run_output_unique")]

    def __str__(self) -> str:
        return f"output of case {self.case_id} in run {self.run_id}"


class CaseResult(models.Model):
    """The metric values of one case in one run; unique per (run, case), never rewritten."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    metrics = models.JSONField(default=dict)
    passed = models.BooleanField(default=True, help_text="Every per-case pass mark met.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "case"], name="case_result_unique")]

    def __str__(self) -> str:
        return f"result of case {self.case_id} in run {self.run_id}"
