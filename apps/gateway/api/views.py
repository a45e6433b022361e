"""`POST /api/v1/prompts/<slug>/execute`: run the live prompt through the gateway."""

from __future__ import annotations

from dataclasses import asdict

from django.http import JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.gateway.services import GatewayError, prompt_execute


class ExecuteSerializer(serializers.Serializer):
    label = serializers.CharField(required=False, default="production")
    variables = serializers.DictField(required=False, default=dict)


class ExecuteView(APIView):
    """Render the version the label points at, call its model, filter the output."""

    @extend_schema(
        request=ExecuteSerializer,
        responses={
            200: OpenApiResponse(
                description="{output, version, label, status, findings, usage, latency_ms, cost}"
            ),
            400: OpenApiResponse(description="Variables missing or invalid"),
            404: OpenApiResponse(description="No such prompt or label"),
            409: OpenApiResponse(description="No model endpoint is configured"),
            410: OpenApiResponse(description="The prompt is retired"),
            422: OpenApiResponse(description="The output was blocked by the content filter"),
            429: OpenApiResponse(description="Rate limit; Retry-After says when"),
            502: OpenApiResponse(description="The model endpoint failed"),
            504: OpenApiResponse(description="The model endpoint timed out"),
        },
    )
    def post(self, request, slug: str):
        data = ExecuteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = prompt_execute(
                actor=request.user, key=request.auth, slug=slug, **data.validated_data
            )
        except GatewayError as exc:
            body = {"detail": exc.message, "code": exc.code, "errors": {}, **exc.extra}
            response = JsonResponse(body, status=exc.status_code)
            if "retry_after" in exc.extra:
                response["Retry-After"] = str(exc.extra["retry_after"])
            return response
        return Response(asdict(result))
