"""Shapes of RACI assignments, approval requests and decisions. No business rules here."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from apps.approvals.choices import Activity, Role, Verdict
from apps.approvals.models import ApprovalRequest, Decision, RaciAssignment


class RaciSerializer(serializers.ModelSerializer):
    charter = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    group = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = RaciAssignment
        fields = ["id", "charter", "activity", "role", "user", "group", "note", "created_at"]
        read_only_fields = fields


class RaciWriteSerializer(serializers.Serializer):
    activity = serializers.ChoiceField(choices=Activity.choices)
    role = serializers.ChoiceField(choices=Role.choices)
    user = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        required=False,
    )
    group = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), required=False
    )
    note = serializers.CharField(required=False, allow_blank=True, default="")


class DecisionSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Decision
        fields = ["id", "actor", "verdict", "comment", "roles", "created_at"]
        read_only_fields = fields


class DecisionRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class DecideSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class ApprovalRequestSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    charter = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    subject = serializers.CharField(read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "url",
            "kind",
            "status",
            "subject",
            "charter",
            "label",
            "risk_tier",
            "requested_by",
            "reason",
            "required",
            "proposed",
            "evidence",
            "evidence_checked_at",
            "fast_track",
            "outcome",
            "decisions",
            "created_at",
            "expires_at",
            "closed_at",
        ]
        read_only_fields = fields

    def get_url(self, obj) -> str:
        request = self.context.get("request")
        path = obj.get_absolute_url()
        return request.build_absolute_uri(path) if request else path
