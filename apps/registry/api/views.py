"""The model registry over the API: everyone signed in reads it (integrations pick endpoints
from it); operators and compliance propose, edit, suspend and ask for decisions."""

from __future__ import annotations

from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.approvals import services as approval_services
from apps.approvals.api.serializers import ApprovalRequestSerializer

from .. import permissions, selectors, services
from ..models import ModelEndpoint
from .serializers import (
    EndpointChangeResultSerializer,
    EndpointRequestSerializer,
    ModelEndpointSerializer,
    ModelEndpointWriteSerializer,
    SuspendSerializer,
)


class ModelEndpointFilter(filters.FilterSet):
    class Meta:
        model = ModelEndpoint
        fields = ["status", "vendor", "data_location"]


class ModelEndpointViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Registered model endpoints with their data boundaries and approval status."""

    serializer_class = ModelEndpointSerializer
    filterset_class = ModelEndpointFilter
    lookup_field = "slug"

    def get_queryset(self):
        return selectors.endpoint_list_visible(self.request.user).order_by("name", "id")

    @extend_schema(request=ModelEndpointWriteSerializer, responses={201: ModelEndpointSerializer})
    def create(self, request):
        """Propose an endpoint (operators and compliance); nothing calls it until approved."""
        permissions.require(request.user, permissions.PROPOSE)
        data = ModelEndpointWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields.pop("reason", None)
        endpoint = services.endpoint_propose(actor=request.user, fields=fields)
        return Response(
            ModelEndpointSerializer(endpoint, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=ModelEndpointWriteSerializer, responses={200: EndpointChangeResultSerializer}
    )
    def partial_update(self, request, slug=None):
        """Edit an endpoint: at once while proposed (and for name, prices, timeouts); edits of
        where data goes on an approved endpoint open an approval request compliance decides."""
        endpoint = self.get_object()
        permissions.require(request.user, permissions.PROPOSE)
        data = ModelEndpointWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        reason = fields.pop("reason", "")
        fields.pop("slug", None)
        with transaction.atomic():
            result = approval_services.endpoint_change(
                actor=request.user, endpoint=endpoint, fields=fields, reason=reason
            )
        endpoint.refresh_from_db()
        return Response(
            {
                "endpoint": ModelEndpointSerializer(endpoint, context={"request": request}).data,
                "approval_request": None if isinstance(result, ModelEndpoint) else result.pk,
            }
        )

    @extend_schema(request=EndpointRequestSerializer, responses={201: ApprovalRequestSerializer})
    @action(detail=True, methods=["post"], url_path="request")
    def ask(self, request, slug=None):
        """Ask compliance to approve, reinstate or retire the endpoint."""
        endpoint = self.get_object()
        permissions.require(request.user, permissions.PROPOSE)
        data = EndpointRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        opened = approval_services.endpoint_request(
            actor=request.user, endpoint=endpoint, **data.validated_data
        )
        return Response(
            ApprovalRequestSerializer(opened, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=SuspendSerializer, responses={200: ModelEndpointSerializer})
    @action(detail=True, methods=["post"])
    def suspend(self, request, slug=None):
        """The emergency stop: nothing calls the endpoint from now on (a reason is recorded)."""
        endpoint = self.get_object()
        permissions.require(request.user, permissions.OPERATE)
        data = SuspendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_suspend(
            actor=request.user, endpoint=endpoint, reason=data.validated_data["reason"]
        )
        return Response(ModelEndpointSerializer(endpoint, context={"request": request}).data)
