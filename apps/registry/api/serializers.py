from rest_framework import serializers

from apps.core.choices import RiskTier

from ..choices import DECIDED_CHANGES, DataLocation, EndpointStatus, TrainingUse
from ..models import ModelEndpoint


class ModelEndpointSerializer(serializers.ModelSerializer):
    """A registry entry as everyone signed in reads it (the credential's name is the
    operator's business: only whether one is bound shows)."""

    status = serializers.ChoiceField(choices=EndpointStatus.choices, read_only=True)
    has_credential = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = ModelEndpoint
        fields = [
            "slug",
            "name",
            "description",
            "provider_kind",
            "base_url",
            "model_names",
            "vendor",
            "data_location",
            "region",
            "retention_days",
            "training_use",
            "terms",
            "status",
            "status_reason",
            "risk_tiers",
            "price_per_1k_input",
            "price_per_1k_output",
            "timeout_s",
            "max_retries",
            "concurrency",
            "has_credential",
            "allow_private",
            "allow_private_reason",
            "created_at",
            "updated_at",
            "url",
        ]
        read_only_fields = fields

    def get_has_credential(self, obj) -> bool:
        return bool(obj.credential)

    def get_url(self, obj) -> str:
        request = self.context.get("request")
        path = obj.get_absolute_url()
        return request.build_absolute_uri(path) if request else path


class ModelEndpointWriteSerializer(serializers.Serializer):
    """Propose an endpoint, or edit one (edits of where data goes become a request)."""

    slug = serializers.SlugField(required=False, max_length=80)
    name = serializers.CharField(required=False, max_length=120)
    description = serializers.CharField(required=False, allow_blank=True)
    base_url = serializers.CharField(required=False, max_length=300)
    model_names = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=200
    )
    vendor = serializers.CharField(required=False, max_length=120)
    data_location = serializers.ChoiceField(choices=DataLocation.choices, required=False)
    region = serializers.CharField(required=False, allow_blank=True, max_length=80)
    retention_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=36500
    )
    training_use = serializers.ChoiceField(choices=TrainingUse.choices, required=False)
    terms = serializers.CharField(required=False, allow_blank=True)
    risk_tiers = serializers.ListField(
        child=serializers.ChoiceField(choices=RiskTier.choices), required=False
    )
    price_per_1k_input = serializers.DecimalField(
        max_digits=10, decimal_places=6, required=False, min_value=0
    )
    price_per_1k_output = serializers.DecimalField(
        max_digits=10, decimal_places=6, required=False, min_value=0
    )
    timeout_s = serializers.FloatField(required=False, min_value=1, max_value=600)
    max_retries = serializers.IntegerField(required=False, min_value=0, max_value=10)
    concurrency = serializers.IntegerField(required=False, min_value=1, max_value=64)
    credential = serializers.CharField(required=False, allow_blank=True, max_length=100)
    allow_private = serializers.BooleanField(required=False)
    allow_private_reason = serializers.CharField(required=False, allow_blank=True, max_length=300)
    proxy = serializers.CharField(required=False, allow_blank=True, max_length=300)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class EndpointRequestSerializer(serializers.Serializer):
    change = serializers.ChoiceField(
        choices=[c for c in DECIDED_CHANGES if c != "change"],
        help_text="approve, reinstate or retire (compliance decides).",
    )
    reason = serializers.CharField(max_length=5000)


class SuspendSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=5000)


class EndpointChangeResultSerializer(serializers.Serializer):
    endpoint = ModelEndpointSerializer()
    approval_request = serializers.IntegerField(allow_null=True)
