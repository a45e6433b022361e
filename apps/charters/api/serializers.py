"""Shapes of charters, metrics and dependencies in the API. No business rules here."""

from django.contrib.auth import get_user_model
from rest_framework import serializers

from apps.charters.choices import Criticality, DependencyKind
from apps.charters.models import Charter, Dependency, Metric
from apps.registry.models import ModelEndpoint

User = get_user_model()


class UsernameField(serializers.SlugRelatedField):
    """A user by username (active users only)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "username")
        kwargs.setdefault("queryset", User.objects.filter(is_active=True))
        super().__init__(**kwargs)


class MetricSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(required=False)

    class Meta:
        model = Metric
        fields = [
            "id",
            "name",
            "description",
            "layer",
            "role",
            "unit",
            "direction",
            "baseline_value",
            "target_value",
            "guardrail_value",
            "allowed_segment_keys",
        ]
        # Uniqueness per charter is the service's business; it reports it per row.
        validators: list = []

    def validate_allowed_segment_keys(self, value):
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise serializers.ValidationError('A list of segment key names, e.g. ["language"].')
        return [v.strip() for v in value]


class MetricResourceSerializer(MetricSerializer):
    """A metric on its own resource: it names its charter."""

    charter = serializers.SlugRelatedField(slug_field="slug", queryset=Charter.objects.all())

    class Meta(MetricSerializer.Meta):
        fields = ["charter", *MetricSerializer.Meta.fields]


class DependencySerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(required=False)
    kind = serializers.ChoiceField(choices=DependencyKind.choices)
    criticality = serializers.ChoiceField(choices=Criticality.choices, required=False)
    endpoint = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=ModelEndpoint.objects.all(),
        required=False,
        allow_null=True,
        help_text="For a model or vendor: its model registry entry.",
    )

    class Meta:
        model = Dependency
        fields = ["id", "kind", "name", "criticality", "notes", "endpoint"]
        validators: list = []


class CharterSerializer(serializers.ModelSerializer):
    """A charter as the API reads and writes it; nested lists replace when given."""

    business_owner = UsernameField(required=False)
    approved_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    metrics = MetricSerializer(many=True, required=False)
    dependencies = DependencySerializer(many=True, required=False)
    review_overdue = serializers.BooleanField(read_only=True)
    available_transitions = serializers.SerializerMethodField()
    slug = serializers.SlugField(max_length=80, required=False)

    class Meta:
        model = Charter
        fields = [
            "id",
            "slug",
            "title",
            "problem",
            "process",
            "proof",
            "business_owner",
            "target_users",
            "risk_tier",
            "data_sensitivity",
            "intended_use",
            "status",
            "status_reason",
            "review_date",
            "review_overdue",
            "retirement_condition",
            "submitted_at",
            "approved_at",
            "approved_by",
            "created_at",
            "updated_at",
            "metrics",
            "dependencies",
            "available_transitions",
        ]
        read_only_fields = [
            "id",
            "status",
            "status_reason",
            "submitted_at",
            "approved_at",
            "created_at",
            "updated_at",
        ]
        validators: list = []

    def get_available_transitions(self, charter) -> list[str]:
        names = self.context.get("transitions", {})
        return names.get(charter.pk, [])


class CharterListSerializer(CharterSerializer):
    """The list omits the nested rows but keeps their count."""

    metric_count = serializers.IntegerField(read_only=True)

    class Meta(CharterSerializer.Meta):
        fields = [
            f for f in CharterSerializer.Meta.fields if f not in {"metrics", "dependencies"}
        ] + ["metric_count"]


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class ShareSerializer(serializers.Serializer):
    username = UsernameField()
    access = serializers.ChoiceField(choices=["view", "change"], default="view")


class UnshareSerializer(serializers.Serializer):
    username = UsernameField()


class AccessEntrySerializer(serializers.Serializer):
    username = serializers.CharField()
    permissions = serializers.ListField(child=serializers.CharField())
