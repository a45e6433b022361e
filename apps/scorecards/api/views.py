"""Telemetry ingest for integrations, scorecards and the portfolio for BI tools."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.charters.selectors import charter_list_visible
from apps.core import csvsafe
from apps.core.errors import ValidationFailed
from apps.scorecards import selectors, services


class TelemetrySerializer(serializers.Serializer):
    observations = serializers.ListField(
        child=serializers.JSONField(), required=False, default=list
    )
    events = serializers.ListField(child=serializers.JSONField(), required=False, default=list)
    source = serializers.CharField(required=False, allow_blank=True, default="")


class TelemetryView(APIView):
    """Post up to 10,000 observations and workflow events; each item is judged on its own."""

    @extend_schema(
        request=TelemetrySerializer,
        responses={
            200: OpenApiResponse(
                description="Everything kept: {accepted, duplicates, rejected: []}"
            ),
            207: OpenApiResponse(description="Some items rejected: they are listed with reasons"),
            400: OpenApiResponse(description="Nothing could be kept"),
        },
    )
    def post(self, request):
        # Items are checked one by one by the service (a serializer per item would cost more
        # than the insert); only the envelope is checked here.
        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed(
                "Post an object.", errors={"body": ["Expected {observations, events}."]}
            )
        observations, events = body.get("observations", []), body.get("events", [])
        errors = {
            name: ["Expected a list."]
            for name, value in (("observations", observations), ("events", events))
            if not isinstance(value, list)
        }
        if errors:
            raise ValidationFailed("The batch is not valid.", errors=errors)
        result = services.telemetry_ingest(
            actor=request.user,
            observations=observations,
            events=events,
            source=str(body.get("source") or ""),
        )
        kept = sum(result["accepted"].values()) + sum(len(v) for v in result["duplicates"].values())
        if result["rejected"] and not kept:
            raise ValidationFailed(
                "No item could be kept.",
                errors={
                    f"{r['kind']}[{r['index']}]": [r["error"]] for r in result["rejected"][:500]
                },
            )
        return Response(
            result,
            status=status.HTTP_207_MULTI_STATUS if result["rejected"] else status.HTTP_200_OK,
        )


def _window(request) -> int:
    try:
        days = int(request.query_params.get("window", 28))
    except ValueError:
        raise ValidationFailed(
            "window must be a number of days.", errors={"window": ["Enter days."]}
        ) from None
    if not 1 <= days <= 366:
        raise ValidationFailed("window must be 1 to 366 days.", errors={"window": ["1 to 366."]})
    return days


class ScorecardView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("window", int, description="days (default 28)")],
        responses={200: OpenApiResponse(description="The charter's scorecard")},
    )
    def get(self, request, slug):
        charter = charter_list_visible(request.user).filter(slug=slug).first()
        if charter is None:
            raise NotFound("No charter matches the given query.")
        return Response(selectors.scorecard(charter, window_days=_window(request)))


PORTFOLIO_COLUMNS = [
    "slug",
    "title",
    "status",
    "risk_tier",
    "owner",
    "primary_metric",
    "primary_current",
    "primary_target",
    "primary_status",
    "open_approvals",
    "review_overdue",
    "call",
    "rule",
]


def portfolio_csv(rows) -> HttpResponse:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [*PORTFOLIO_COLUMNS, *(f"layer_{k}" for k in rows[0]["layers"])]
        if rows
        else PORTFOLIO_COLUMNS
    )
    for row in rows:
        writer.writerow(
            csvsafe.row([row[c] for c in PORTFOLIO_COLUMNS] + list(row["layers"].values()))
        )
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="ai-pulse.csv"'
    return response


class LiveEvaluationSerializer(serializers.Serializer):
    prompt = serializers.CharField()
    version = serializers.IntegerField()
    verdict = serializers.CharField(help_text="pass, fail or `no evaluation`")


class PortfolioRowSerializer(serializers.Serializer):
    """One charter of the portfolio (selectors.portfolio)."""

    slug = serializers.CharField()
    title = serializers.CharField()
    status = serializers.CharField()
    risk_tier = serializers.CharField()
    owner = serializers.CharField()
    primary_metric = serializers.CharField(allow_null=True)
    primary_current = serializers.FloatField(allow_null=True)
    primary_target = serializers.FloatField(allow_null=True)
    primary_status = serializers.CharField()
    layers = serializers.DictField(child=serializers.CharField(), help_text="layer: status")
    open_approvals = serializers.IntegerField()
    live_evaluations = LiveEvaluationSerializer(many=True)
    review_overdue = serializers.BooleanField()
    open_drift_alerts = serializers.IntegerField()
    call = serializers.CharField()
    rule = serializers.CharField()
    url = serializers.CharField()


class PortfolioView(APIView):
    """The AI pulse across every charter you may see (`?as=csv` for spreadsheets)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("window", int),
            OpenApiParameter("as", str, enum=["json", "csv"]),
        ],
        responses={
            (200, "application/json"): PortfolioRowSerializer(many=True),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="With ?as=csv"),
        },
    )
    def get(self, request):
        rows = selectors.portfolio(request.user, window_days=_window(request))
        if request.query_params.get("as") == "csv":
            return portfolio_csv(rows)
        return Response(rows)
