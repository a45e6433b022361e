"""Charter and metric endpoints: restricted reads, commands that call the services."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from guardian.core import ObjectPermissionChecker
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.charters import selectors, services
from apps.charters.models import Dependency, Metric

from .filters import CharterFilter, MetricFilter
from .serializers import (
    AccessEntrySerializer,
    CharterListSerializer,
    CharterSerializer,
    MetricResourceSerializer,
    ReasonSerializer,
    ShareSerializer,
    UnshareSerializer,
)

User = get_user_model()
ERRORS = {
    400: OpenApiResponse(description="Invalid input: {detail, code, errors: {field: [messages]}}"),
    403: OpenApiResponse(description="Visible, but you may not do this"),
    404: OpenApiResponse(description="No such charter, or not visible to you"),
    409: OpenApiResponse(description="The charter's status does not allow this"),
}


def _rows(items) -> list[dict]:
    return [dict(item) for item in items]


def _transition_action(name: str, label: str, needs_reason: bool):
    """One POST endpoint per lifecycle edge, named after it (submit, go-live, …)."""

    def handler(self, request, slug=None):
        charter = self.get_object()
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.charter_transition(
            actor=request.user,
            charter=charter,
            name=name,
            reason=data.validated_data.get("reason", ""),
        )
        return self._detail_response(charter.pk)

    # DRF maps HTTP methods to the function's name, so it must be right before decorating.
    handler.__name__ = handler.__qualname__ = name
    url = name.replace("_", "-")
    handler = action(detail=True, methods=["post"], url_path=url, url_name=url)(handler)
    return extend_schema(
        summary=label,
        description=f"{label}." + (" A reason is required." if needs_reason else ""),
        request=ReasonSerializer,
        responses={200: CharterSerializer, **ERRORS},
    )(handler)


@extend_schema_view(
    list=extend_schema(summary="Charters you may see"),
    retrieve=extend_schema(
        summary="One charter", responses={200: CharterSerializer, 404: ERRORS[404]}
    ),
    create=extend_schema(
        summary="Create a draft charter",
        responses={201: CharterSerializer, 400: ERRORS[400], 403: ERRORS[403]},
    ),
    update=extend_schema(
        summary="Replace a draft charter", responses={200: CharterSerializer, **ERRORS}
    ),
    partial_update=extend_schema(
        summary="Edit a draft charter", responses={200: CharterSerializer, **ERRORS}
    ),
    destroy=extend_schema(summary="Delete a draft charter", responses={204: None, **ERRORS}),
)
class CharterViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Charters: the owner, people it is shared with and compliance see it; others get 404."""

    lookup_field = "slug"
    filterset_class = CharterFilter
    serializer_class = CharterSerializer

    def get_queryset(self):
        user = self.request.user
        if self.action == "list":
            return selectors.charter_list_for_table(user)
        return (
            selectors.charter_list_visible(user)
            .select_related("business_owner", "approved_by")
            .prefetch_related(
                Prefetch("metrics", queryset=Metric.objects.order_by("role", "id")),
                Prefetch("dependencies", queryset=Dependency.objects.order_by("id")),
            )
        )

    def get_serializer_class(self):
        return CharterListSerializer if self.action == "list" else CharterSerializer

    def _transitions(self, charters) -> dict[int, list[str]]:
        user = self.request.user
        checker = ObjectPermissionChecker(user)
        charters = list(charters)
        if charters:
            checker.prefetch_perms(charters)
        return {
            c.pk: [
                t.name
                for t in services.charter_available_transitions(
                    user=user, charter=c, checker=checker
                )
            ]
            for c in charters
        }

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = page if page is not None else list(queryset)
        serializer = self.get_serializer(
            rows,
            many=True,
            context={**self.get_serializer_context(), "transitions": self._transitions(rows)},
        )
        return (
            self.get_paginated_response(serializer.data)
            if page is not None
            else Response(serializer.data)
        )

    def _detail_response(self, pk: int, status_code: int = status.HTTP_200_OK) -> Response:
        charter = self.get_queryset().get(pk=pk)
        context = {**self.get_serializer_context(), "transitions": self._transitions([charter])}
        return Response(CharterSerializer(charter, context=context).data, status=status_code)

    def retrieve(self, request, *args, **kwargs):
        return self._detail_response(self.get_object().pk)

    def _payload(self, serializer):
        data = dict(serializer.validated_data)
        metrics = data.pop("metrics", None)
        dependencies = data.pop("dependencies", None)
        return (
            data,
            (_rows(metrics) if metrics is not None else None),
            (_rows(dependencies) if dependencies is not None else None),
        )

    def create(self, request, *args, **kwargs):
        serializer = CharterSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        fields, metrics, dependencies = self._payload(serializer)
        charter = services.charter_create(
            actor=request.user,
            fields=fields,
            metrics=metrics or (),
            dependencies=dependencies or (),
        )
        return self._detail_response(charter.pk, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        charter = self.get_object()
        partial = kwargs.pop("partial", False)
        serializer = CharterSerializer(
            charter, data=request.data, partial=partial, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        fields, metrics, dependencies = self._payload(serializer)
        services.charter_update(
            actor=request.user,
            charter=charter,
            fields=fields,
            metrics=metrics,
            dependencies=dependencies,
        )
        return self._detail_response(charter.pk)

    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request, *args, **kwargs):
        services.charter_delete(actor=request.user, charter=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    for _t in services.TRANSITIONS.values():
        locals()[_t.name] = _transition_action(_t.name, _t.label, _t.needs_reason)
    del _t

    @extend_schema(
        summary="Share the charter with a person",
        request=ShareSerializer,
        responses={200: AccessEntrySerializer(many=True), **ERRORS},
    )
    # Answers the access list as `access` does: neither paged nor filtered.
    @action(detail=True, methods=["post"], pagination_class=None, filter_backends=[])
    def share(self, request, slug=None):
        charter = self.get_object()
        data = ShareSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.charter_share(
            actor=request.user,
            charter=charter,
            user=data.validated_data["username"],
            access=data.validated_data["access"],
        )
        return Response(self._access(charter))

    @extend_schema(
        summary="Take a person's access away",
        request=UnshareSerializer,
        responses={200: AccessEntrySerializer(many=True), **ERRORS},
    )
    @action(detail=True, methods=["post"], pagination_class=None, filter_backends=[])
    def unshare(self, request, slug=None):
        charter = self.get_object()
        data = UnshareSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.charter_unshare(
            actor=request.user, charter=charter, user=data.validated_data["username"]
        )
        return Response(self._access(charter))

    @extend_schema(
        summary="Who has access to the charter",
        responses={200: AccessEntrySerializer(many=True), 404: ERRORS[404]},
    )
    # A plain list: neither paged nor filtered like the charter list.
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def access(self, request, slug=None):
        return Response(self._access(self.get_object()))

    @staticmethod
    def _access(charter) -> list[dict]:
        entries = selectors.charter_shared_with(charter)
        return [
            {"username": user.username, "permissions": sorted(perms)}
            for user, perms in sorted(entries.items(), key=lambda item: item[0].username)
        ]


@extend_schema_view(
    list=extend_schema(summary="Metrics of the charters you may see"),
    create=extend_schema(
        summary="Add a metric to a draft charter",
        responses={201: MetricResourceSerializer, **ERRORS},
    ),
    update=extend_schema(responses={200: MetricResourceSerializer, **ERRORS}),
    partial_update=extend_schema(responses={200: MetricResourceSerializer, **ERRORS}),
    destroy=extend_schema(responses={204: None, **ERRORS}),
)
class MetricViewSet(viewsets.ModelViewSet):
    """Metrics, visible with their charter; changed only while the charter is a draft."""

    serializer_class = MetricResourceSerializer
    filterset_class = MetricFilter

    def get_queryset(self):
        visible = selectors.charter_list_visible(self.request.user).values("pk")
        return (
            Metric.objects.filter(charter__in=visible)
            .select_related("charter")
            .order_by("charter_id", "role", "id")
        )

    def get_serializer(self, *args, **kwargs):
        serializer = super().get_serializer(*args, **kwargs)
        field = serializer.fields.get("charter") if hasattr(serializer, "fields") else None
        if field is not None and not field.read_only:
            field.queryset = selectors.charter_list_visible(self.request.user)
        return serializer

    def _fields(self, serializer) -> dict:
        data = dict(serializer.validated_data)
        data.pop("charter", None)
        data.pop("id", None)
        return data

    def perform_create(self, serializer):
        charter = serializer.validated_data["charter"]
        serializer.instance = services.metric_create(
            actor=self.request.user, charter=charter, fields=self._fields(serializer)
        )

    def perform_update(self, serializer):
        if (
            "charter" in serializer.validated_data
            and serializer.validated_data["charter"] != serializer.instance.charter
        ):
            from apps.core.errors import ValidationFailed

            raise ValidationFailed(
                "A metric cannot move to another charter.",
                errors={"charter": ["Cannot be changed."]},
            )
        serializer.instance = services.metric_update(
            actor=self.request.user, metric=serializer.instance, fields=self._fields(serializer)
        )

    def perform_destroy(self, instance):
        services.metric_delete(actor=self.request.user, metric=instance)
