"""Approvals endpoints: RACI matrices, approval requests (my inbox included), decisions,
audit timelines and a charter's evidence pack."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.approvals import evidence, raci, services
from apps.approvals.models import ApprovalRequest, RaciAssignment
from apps.charters.selectors import charter_list_visible
from apps.core.errors import ValidationFailed

from . import serializers as s

ERRORS = {
    400: OpenApiResponse(description="Invalid input: {detail, code, errors}"),
    403: OpenApiResponse(description="Visible, but you may not do this"),
    404: OpenApiResponse(description="Not found, or not visible to you"),
    409: OpenApiResponse(description="The request is closed"),
}


def _charter(request, slug):
    charter = charter_list_visible(request.user).filter(slug=slug).first()
    if charter is None:
        raise NotFound("No charter matches the given query.")
    return charter


class RaciView(APIView):
    """A charter's RACI matrix: the assignments, and what is wrong with them."""

    @extend_schema(
        responses={200: OpenApiResponse(description="{assignments, effective, problems}")}
    )
    def get(self, request, slug):
        charter = _charter(request, slug)
        own = RaciAssignment.objects.filter(charter=charter).select_related(
            "user", "group", "charter"
        )
        return Response(
            {
                "assignments": s.RaciSerializer(own, many=True).data,
                "effective": evidence.effective_matrix(charter),
                "problems": raci.problems(charter),
                "editable": raci.can_edit(request.user, charter),
            }
        )

    @extend_schema(request=s.RaciWriteSerializer, responses={201: s.RaciSerializer, **ERRORS})
    def post(self, request, slug):
        charter = _charter(request, slug)
        data = s.RaciWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = raci.raci_assign(actor=request.user, charter=charter, **data.validated_data)
        return Response(s.RaciSerializer(assignment).data, status=status.HTTP_201_CREATED)


class RaciItemView(APIView):
    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, slug, pk):
        charter = _charter(request, slug)
        assignment = get_object_or_404(RaciAssignment, pk=pk, charter=charter)
        raci.raci_remove(
            actor=request.user, assignment=assignment, reason=request.query_params.get("reason", "")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApprovalRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Approval requests you may read; `?mine=1` lists what waits for your decision."""

    serializer_class = s.ApprovalRequestSerializer
    filterset_fields = ["status", "kind"]
    queryset = ApprovalRequest.objects.none()  # the schema's model; requests use get_queryset

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApprovalRequest.objects.none()
        return (
            services.visible_requests(self.request.user)
            .select_related("requested_by", "charter", "prompt_version__prompt")
            .prefetch_related("decisions__actor")
            .order_by("-created_at", "-id")
        )

    @extend_schema(
        parameters=[OpenApiParameter("mine", bool, description="Only what waits for me")],
        responses=s.ApprovalRequestSerializer(many=True),
    )
    def list(self, request, *args, **kwargs):
        if request.query_params.get("mine", "").lower() in {"1", "true", "yes"}:
            # Paged like the full list: one response shape whatever the query.
            page = self.paginate_queryset(services.inbox_for(request.user))
            return self.get_paginated_response(
                s.ApprovalRequestSerializer(page, many=True, context={"request": request}).data
            )
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=s.DecideSerializer, responses={200: s.ApprovalRequestSerializer, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        approval = self.get_object()
        data = s.DecideSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.approval_decide(actor=request.user, request=approval, **data.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=approval.pk)).data)

    @extend_schema(request=None, responses={200: s.ApprovalRequestSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        approval = services.approval_withdraw(actor=request.user, request=self.get_object())
        return Response(self.get_serializer(approval).data)


class CharterDecisionRequestView(APIView):
    """Ask the Accountable for a charter decision (go live, resume, retire)."""

    @extend_schema(
        request=s.DecisionRequestSerializer,
        responses={201: s.ApprovalRequestSerializer, **ERRORS},
    )
    def post(self, request, slug, name):
        charter = _charter(request, slug)
        data = s.DecisionRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval = services.charter_transition_request(
            actor=request.user, charter=charter, name=name, reason=data.validated_data["reason"]
        )
        return Response(
            s.ApprovalRequestSerializer(approval, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


class EvidencePackView(APIView):
    """A charter's complete evidence pack for auditors, as JSON or CSV."""

    @extend_schema(
        parameters=[
            OpenApiParameter("as", str, enum=["json", "csv"], description="json (default) or csv")
        ],
        responses={200: OpenApiResponse(description="The evidence pack")},
    )
    def get(self, request, slug):
        charter = _charter(request, slug)
        fmt = request.query_params.get("as", "json")  # DRF reserves ?format= for renderers
        if fmt not in ("json", "csv"):
            raise ValidationFailed("Choose json or csv.", errors={"as": ["json or csv"]})
        return evidence.pack_response(charter, fmt)


class TimelineView(APIView):
    """Audit events you may see, newest first: filter by object, person, verb and period."""

    @extend_schema(
        parameters=[
            OpenApiParameter("object_type", str),
            OpenApiParameter("object_id", str),
            OpenApiParameter("actor", str, description="username"),
            OpenApiParameter("verb", str),
            OpenApiParameter("since", str, description="YYYY-MM-DD"),
            OpenApiParameter("until", str, description="YYYY-MM-DD"),
            OpenApiParameter("charter", str, description="charter slug"),
        ],
        responses={200: OpenApiResponse(description="[{id, created_at, verb, actor, object…}]")},
    )
    def get(self, request):
        events = evidence.timeline(request.user, request.query_params)[:500]
        return Response([evidence.event_dict(e) for e in events])
