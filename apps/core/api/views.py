"""The signed-in person: who am I, and my notifications."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.models import Notification
from apps.core.services import notification_mark_read


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    full_name = serializers.CharField()
    # Service users and some people have no address: "" rather than an e-mail then.
    email = serializers.CharField(allow_blank=True)
    groups = serializers.ListField(child=serializers.CharField())
    is_staff = serializers.BooleanField()


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "verb", "title", "body", "url", "created_at", "read_at"]


class MarkReadSerializer(serializers.Serializer):
    # Bounded as the ids the database stores: a larger number failed the query (500).
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False
    )


class MarkedSerializer(serializers.Serializer):
    marked = serializers.IntegerField()


class MeView(APIView):
    """Who the API sees you as (useful to check an API key)."""

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        user = request.user
        return Response(
            MeSerializer(
                {
                    "username": user.username,
                    "full_name": user.get_full_name(),
                    "email": user.email,
                    "groups": sorted(user.groups.values_list("name", flat=True)),
                    "is_staff": user.is_staff,
                }
            ).data
        )


class NotificationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Your in-app notifications, newest first."""

    serializer_class = NotificationSerializer

    def get_queryset(self):
        return Notification.objects.filter(recipient=self.request.user)

    @extend_schema(request=MarkReadSerializer, responses=MarkedSerializer)
    @action(detail=False, methods=["post"], url_path="mark-read")
    def mark_read(self, request):
        data = MarkReadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        marked = notification_mark_read(
            actor=request.user, notification_ids=data.validated_data.get("ids")
        )
        return Response({"marked": marked})
