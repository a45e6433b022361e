"""Shapes of prompts, versions, findings, labels and applications. No business rules here."""

from rest_framework import serializers

from apps.charters.models import Charter
from apps.prompts.choices import ChangeKind, TemplateKind
from apps.prompts.models import (
    Application,
    Consumer,
    LabelMove,
    PolicyFinding,
    Prompt,
    PromptVersion,
)


class PromptSerializer(serializers.ModelSerializer):
    charter = serializers.SlugRelatedField(
        slug_field="slug", queryset=Charter.objects.all(), allow_null=True, required=False
    )
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    successor = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    labels = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()
    forked_from = serializers.SerializerMethodField()

    class Meta:
        model = Prompt
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "charter",
            "business_function",
            "task_type",
            "risk_level",
            "model_family",
            "policy_tags",
            "tags",
            "owner",
            "status",
            "status_reason",
            "review_date",
            "retirement_condition",
            "successor",
            "sunset_date",
            "listed_in_catalog",
            "is_starter",
            "labels",
            "latest_version",
            "forked_from",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "owner",
            "status",
            "status_reason",
            "successor",
            "sunset_date",
            "is_starter",
            "created_at",
            "updated_at",
        ]
        validators: list = []

    def get_labels(self, prompt) -> dict[str, int]:
        return {label.name: label.version.number for label in prompt.labels.all()}

    def get_latest_version(self, prompt) -> int | None:
        numbers = [v.number for v in prompt.versions.all()]
        return max(numbers) if numbers else None

    def get_forked_from(self, prompt) -> str | None:
        source = prompt.forked_from
        return f"{source.prompt.slug}@v{source.number}" if source else None


class VersionContentSerializer(serializers.Serializer):
    """Input for a new or edited draft; the service validates the content itself."""

    template_kind = serializers.ChoiceField(choices=TemplateKind.choices, default=TemplateKind.CHAT)
    messages = serializers.JSONField(required=False)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    variables = serializers.JSONField(required=False)
    model_config = serializers.JSONField(required=False)
    release_notes = serializers.CharField(required=False, allow_blank=True)
    change_kind = serializers.ChoiceField(choices=ChangeKind.choices, required=False)


class PromptCreateSerializer(PromptSerializer):
    first_version = VersionContentSerializer(required=False)

    class Meta(PromptSerializer.Meta):
        fields = [*PromptSerializer.Meta.fields, "first_version"]


class FindingSerializer(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule.code", read_only=True)
    rule_title = serializers.CharField(source="rule.title", read_only=True)
    waived_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = PolicyFinding
        fields = [
            "id",
            "rule",
            "rule_title",
            "severity",
            "message",
            "location",
            "span_start",
            "span_end",
            "excerpt",
            "waived_by",
            "waived_at",
            "waiver_reason",
        ]


class VersionSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    parent = serializers.SlugRelatedField(slug_field="number", read_only=True, allow_null=True)
    findings = FindingSerializer(many=True, read_only=True)

    class Meta:
        model = PromptVersion
        fields = [
            "number",
            "status",
            "template_kind",
            "messages",
            "text",
            "variables",
            "model_config",
            "release_notes",
            "change_kind",
            "parent",
            "author",
            "content_hash",
            "submitted_at",
            "decided_at",
            "decided_by",
            "decision_reason",
            "created_at",
            "findings",
        ]


class LabelSerializer(serializers.Serializer):
    label = serializers.SlugField(max_length=40, default="production")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class LabelMoveSerializer(serializers.ModelSerializer):
    from_version = serializers.SlugRelatedField(
        slug_field="number", read_only=True, allow_null=True
    )
    to_version = serializers.SlugRelatedField(slug_field="number", read_only=True)
    moved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = LabelMove
        fields = ["label", "from_version", "to_version", "moved_by", "moved_at", "reason"]


class LabelsSerializer(serializers.Serializer):
    labels = serializers.DictField(child=serializers.IntegerField())
    moves = LabelMoveSerializer(many=True)


class DeprecateSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=5000)
    sunset_date = serializers.DateField(required=False, allow_null=True)
    successor = serializers.SlugField(required=False, allow_blank=True)


class ForkSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, help_text="Defaults to the production version, else the latest."
    )
    charter = serializers.SlugField()
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(required=False, allow_blank=True, max_length=80)


class RenderSerializer(serializers.Serializer):
    label = serializers.SlugField(required=False, max_length=40)
    version = serializers.IntegerField(required=False)
    variables = serializers.DictField(child=serializers.JSONField(), default=dict)


class RenderedSerializer(serializers.Serializer):
    prompt = serializers.CharField()
    version = serializers.IntegerField()
    content_hash = serializers.CharField()
    messages = serializers.ListField(child=serializers.DictField(), required=False)
    text = serializers.CharField(required=False)
    model_config = serializers.DictField()


class ResolvedSerializer(serializers.Serializer):
    prompt = serializers.CharField()
    label = serializers.CharField()
    version = serializers.IntegerField()
    content_hash = serializers.CharField()
    status = serializers.CharField()
    template_kind = serializers.CharField()
    messages = serializers.ListField(child=serializers.DictField(), required=False)
    text = serializers.CharField(required=False)
    variables = serializers.ListField(child=serializers.DictField())
    model_config = serializers.DictField()
    successor = serializers.CharField(allow_null=True)


class DiffSerializer(serializers.Serializer):
    diff = serializers.DictField()


class ApplicationSerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    service_user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    slug = serializers.SlugField(required=False, max_length=80)

    class Meta:
        model = Application
        fields = ["slug", "name", "description", "owner", "service_user", "created_at"]
        read_only_fields = ["owner", "service_user", "created_at"]
        validators: list = []


class KeySerializer(serializers.Serializer):
    prefix = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=50)
    created = serializers.DateTimeField(read_only=True)
    revoked = serializers.BooleanField(read_only=True)
    last_used_at = serializers.DateTimeField(read_only=True)


class NewKeySerializer(KeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; store it now.")


class ConsumerSerializer(serializers.ModelSerializer):
    prompt = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Consumer
        fields = ["prompt", "label", "first_seen", "last_seen", "count"]
