"""Shapes of datasets, artifacts, suites, thresholds and runs. No business rules here."""

from rest_framework import serializers

from apps.charters.models import Charter
from apps.evaluations.choices import Aggregate, ArtifactTask, Comparator, OutputSource, Verdict
from apps.evaluations.models import (
    Case,
    Dataset,
    DatasetVersion,
    ModelArtifact,
    Run,
    Suite,
    Threshold,
)
from apps.evaluations.services.runs import run_progress
from apps.prompts.models import Prompt


class DatasetVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "notes",
            "source_name",
            "source_format",
            "sha256",
            "case_count",
            "segment_keys",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer):
    charter = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    prompt = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "charter",
            "prompt",
            "owner",
            "latest_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_latest_version(self, obj) -> int | None:
        numbers = [v.number for v in obj.versions.all()]
        return max(numbers) if numbers else None


class DatasetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    charter = serializers.SlugRelatedField(
        slug_field="slug", queryset=Charter.objects.all(), required=False, allow_null=True
    )
    prompt = serializers.SlugRelatedField(
        slug_field="slug", queryset=Prompt.objects.all(), required=False, allow_null=True
    )


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JSONL or CSV, one case per line or row.")
    format = serializers.ChoiceField(choices=["jsonl", "csv"], required=False)
    notes = serializers.CharField(required=False, allow_blank=True)


class DatasetDeriveSerializer(serializers.Serializer):
    upserts = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    removals = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    notes = serializers.CharField(required=False, allow_blank=True, default="")


class CaseSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="external_id")

    class Meta:
        model = Case
        fields = ["id", "position", "variables", "expected", "contexts", "segments", "tags"]
        read_only_fields = fields


class ArtifactSerializer(serializers.ModelSerializer):
    charter = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    quantized_from = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )

    class Meta:
        model = ModelArtifact
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "charter",
            "task",
            "status",
            "sha256",
            "size_bytes",
            "tokenizer_sha256",
            "max_seq_length",
            "pooling",
            "labels",
            "dimension",
            "source",
            "license",
            "validation",
            "validated_at",
            "quantized_from",
            "agreement",
            "is_default",
            "owner",
            "created_at",
        ]
        read_only_fields = fields


class ArtifactUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task = serializers.ChoiceField(choices=ArtifactTask.choices)
    model_file = serializers.FileField(help_text="The .onnx file.")
    tokenizer_file = serializers.FileField(required=False, help_text="tokenizer.json")
    charter = serializers.SlugRelatedField(
        slug_field="slug", queryset=Charter.objects.all(), required=False, allow_null=True
    )
    labels = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    max_seq_length = serializers.IntegerField(required=False, default=256)
    pooling = serializers.ChoiceField(choices=["mean", "cls"], required=False, default="mean")
    source = serializers.CharField(required=False, allow_blank=True, default="")
    license = serializers.CharField(required=False, allow_blank=True, default="")


class QuantizeSerializer(serializers.Serializer):
    floor = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)


class ThresholdSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    aggregate = serializers.ChoiceField(choices=Aggregate.choices, required=False)
    comparator = serializers.ChoiceField(choices=Comparator.choices, required=False)

    class Meta:
        model = Threshold
        fields = [
            "id",
            "metric",
            "aggregate",
            "comparator",
            "value",
            "blocking",
            "min_cases",
            "segment_key",
            "rationale",
            "owner",
            "updated_at",
        ]
        read_only_fields = ["id", "owner", "updated_at"]


class SuiteSerializer(serializers.ModelSerializer):
    charter = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    prompt = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    dataset = serializers.CharField(source="dataset_version.dataset.slug", read_only=True)
    dataset_version = serializers.IntegerField(source="dataset_version.number", read_only=True)
    thresholds = ThresholdSerializer(many=True, read_only=True)

    class Meta:
        model = Suite
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "charter",
            "prompt",
            "dataset",
            "dataset_version",
            "scorers",
            "regression_tolerance",
            "min_segment_cases",
            "thresholds",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SuiteWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    slug = serializers.SlugField(max_length=80, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    charter = serializers.SlugRelatedField(
        slug_field="slug", queryset=Charter.objects.all(), required=False, allow_null=True
    )
    prompt = serializers.SlugRelatedField(
        slug_field="slug", queryset=Prompt.objects.all(), required=False, allow_null=True
    )
    dataset = serializers.SlugField(required=False, help_text="Dataset slug.")
    dataset_version = serializers.IntegerField(
        required=False, help_text="Version number (default: the newest)."
    )
    scorers = serializers.JSONField(required=False)
    regression_tolerance = serializers.FloatField(required=False)
    min_segment_cases = serializers.IntegerField(required=False)
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class RunSerializer(serializers.ModelSerializer):
    suite = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    prompt = serializers.SerializerMethodField()
    prompt_version = serializers.SerializerMethodField()
    model_under_test = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    # Blank until the run completes (a read-only model field would lose allow_blank).
    verdict = serializers.ChoiceField(choices=Verdict.choices, allow_blank=True, read_only=True)
    progress = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "url",
            "suite",
            "prompt",
            "prompt_version",
            "content_hash",
            "model_under_test",
            "output_source",
            "status",
            "verdict",
            "progress",
            "baseline",
            "scorer_artifacts",
            "gate",
            "error",
            "note",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_prompt(self, obj) -> str | None:
        return obj.prompt_version.prompt.slug if obj.prompt_version_id else None

    def get_prompt_version(self, obj) -> int | None:
        return obj.prompt_version.number if obj.prompt_version_id else None

    def get_progress(self, obj) -> dict:
        return run_progress(obj)

    def get_url(self, obj) -> str:
        request = self.context.get("request")
        path = obj.get_absolute_url()
        return request.build_absolute_uri(path) if request else path


class RunDetailSerializer(RunSerializer):
    # The view passes the summary as the reader may see it (`selectors.run_summary_for`);
    # without it the serializer fails rather than show what the reader may not see.
    summary = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "summary", "comparison", "endpoint"]
        read_only_fields = fields

    def get_summary(self, obj) -> dict:
        return self.context["summary"]


class RunStartSerializer(serializers.Serializer):
    suite = serializers.SlugField()
    prompt = serializers.SlugField(required=False, help_text="Prompt slug (with version or label).")
    version = serializers.IntegerField(required=False, help_text="Prompt version number.")
    label = serializers.CharField(required=False, help_text="Or: the version a label points at.")
    model_under_test = serializers.SlugField(required=False)
    output_source = serializers.ChoiceField(choices=OutputSource.choices, default="posted")
    endpoint = serializers.DictField(
        required=False,
        help_text='Generated runs: {"slug": an approved registry endpoint, "model": one it serves,'
        ' "concurrency": optional}. Free URLs and credentials are refused.',
    )
    input_variable = serializers.CharField(required=False, allow_blank=True, default="")
    baseline = serializers.IntegerField(required=False, help_text="Run id (default: production).")
    batch_size = serializers.IntegerField(required=False, min_value=1, max_value=5000)
    queue = serializers.CharField(required=False, allow_blank=True, default="")
    note = serializers.CharField(required=False, allow_blank=True, default="")
    outputs = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Posted outputs [{id, output}], all at once (scoring starts).",
    )
    wait = serializers.IntegerField(
        required=False, min_value=0, max_value=3600, default=0, help_text="Seconds to wait."
    )


class OutputItemSerializer(serializers.Serializer):
    id = serializers.CharField()
    output = serializers.CharField(allow_blank=True, trim_whitespace=False)


class CaseResultSerializer(serializers.Serializer):
    """One scored case (a `selectors.CaseView`): the case fields are null when hidden."""

    case = serializers.CharField(source="case_id", read_only=True)
    segments = serializers.JSONField(read_only=True)
    metrics = serializers.JSONField(read_only=True)
    passed = serializers.BooleanField(read_only=True)
    error = serializers.CharField(read_only=True)
    output = serializers.CharField(read_only=True)
    expected = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="null: you may not view the dataset (outputs, scores and pass/fail only).",
    )
    contexts = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        allow_null=True,
        help_text="null: you may not view the dataset.",
    )
