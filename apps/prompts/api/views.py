"""Prompt library endpoints: reads scoped to the caller, commands that call the services,
and the lean resolve / render path that integrations hit on every request."""

from __future__ import annotations

import datetime as dt
import json
import re
from email.utils import format_datetime

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Prefetch
from django.http import HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.charters.api.serializers import ReasonSerializer
from apps.charters.selectors import charter_list_visible
from apps.core import hotcache, ratelimit
from apps.core.api.authentication import verified_key
from apps.core.errors import ValidationFailed, hidden_reference
from apps.prompts import content, permissions, rendering, selectors, services
from apps.prompts.choices import PromptStatus, TemplateKind
from apps.prompts.models import Application, Label, LabelMove, PolicyFinding, Prompt, PromptVersion

from . import serializers as s
from .filters import PromptFilter

ERRORS = {
    400: OpenApiResponse(description="Invalid input: {detail, code, errors: {field: [messages]}}"),
    403: OpenApiResponse(description="Visible, but you may not do this"),
    404: OpenApiResponse(description="Not found, or not visible to you"),
    409: OpenApiResponse(description="The current state does not allow this"),
}


def _visible_prompt(request, slug: str) -> Prompt:
    prompt = selectors.prompt_get(user=request.user, slug=slug)
    if prompt is None:
        raise NotFound("No prompt matches the given query.")
    return prompt


def _version(prompt: Prompt, number: int) -> PromptVersion:
    version = (
        PromptVersion.objects.select_related("prompt__charter", "author")
        .filter(prompt=prompt, number=number)
        .first()
    )
    if version is None:
        raise NotFound(f"Prompt {prompt.slug} has no version {number}.")
    return version


def _content_fields(data) -> dict:
    return {k: v for k, v in data.items() if v is not None}


@extend_schema_view(
    list=extend_schema(summary="Prompts you may see"),
    retrieve=extend_schema(
        summary="One prompt", responses={200: s.PromptSerializer, 404: ERRORS[404]}
    ),
    create=extend_schema(
        summary="Create a prompt (optionally with its first draft)",
        request=s.PromptCreateSerializer,
        responses={201: s.PromptSerializer, **ERRORS},
    ),
    partial_update=extend_schema(
        summary="Edit a prompt's metadata", responses={200: s.PromptSerializer, **ERRORS}
    ),
)
class PromptViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Prompt assets; another team's unlisted prompt is a 404."""

    lookup_field = "slug"
    serializer_class = s.PromptSerializer
    filterset_class = PromptFilter
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return (
            selectors.prompt_list_visible(self.request.user)
            .select_related("owner", "charter", "successor", "forked_from__prompt")
            .prefetch_related(
                Prefetch("labels", queryset=Label.objects.select_related("version")),
                Prefetch(
                    "versions", queryset=PromptVersion.objects.only("id", "prompt_id", "number")
                ),
            )
            .order_by("name", "id")
        )

    def _detail(self, prompt_id: int, code=status.HTTP_200_OK) -> Response:
        return Response(
            s.PromptSerializer(
                self.get_queryset().get(pk=prompt_id), context=self.get_serializer_context()
            ).data,
            status=code,
        )

    def create(self, request, *args, **kwargs):
        data = s.PromptCreateSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        first = fields.pop("first_version", None)
        charter = fields.get("charter")
        if (
            charter is not None
            and not charter_list_visible(request.user).filter(pk=charter.pk).exists()
        ):
            raise hidden_reference("charter", charter.slug)
        prompt = services.prompt_create(
            actor=request.user,
            fields=fields,
            first_version=_content_fields(first) if first else None,
        )
        return self._detail(prompt.pk, status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        prompt = self.get_object()
        data = s.PromptSerializer(
            prompt, data=request.data, partial=True, context=self.get_serializer_context()
        )
        data.is_valid(raise_exception=True)
        fields = {k: v for k, v in data.validated_data.items() if k not in {"slug", "charter"}}
        services.prompt_update(actor=request.user, prompt=prompt, fields=fields)
        return self._detail(prompt.pk)

    @extend_schema(
        summary="The prompt's versions, newest first",
        responses={200: s.VersionSerializer(many=True)},
        methods=["GET"],
    )
    @extend_schema(
        summary="Write a new draft version",
        request=s.VersionContentSerializer,
        responses={201: s.VersionSerializer, **ERRORS},
        methods=["POST"],
    )
    # A plain list: neither paged nor filtered like the prompt list.
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def versions(self, request, slug=None):
        prompt = self.get_object()
        if request.method == "GET":
            return Response(s.VersionSerializer(selectors.version_list(prompt), many=True).data)
        data = s.VersionContentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_create(
            actor=request.user, prompt=prompt, fields=_content_fields(data.validated_data)
        )
        return Response(s.VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Labels and every move of them", responses={200: s.LabelsSerializer})
    @action(detail=True, methods=["get"])
    def labels(self, request, slug=None):
        prompt = self.get_object()
        moves = LabelMove.objects.filter(prompt=prompt).select_related(
            "from_version", "to_version", "moved_by"
        )
        return Response(
            s.LabelsSerializer(
                {
                    "labels": {label.name: label.version.number for label in prompt.labels.all()},
                    "moves": moves,
                }
            ).data
        )

    @extend_schema(
        summary="Side-by-side difference between two versions",
        parameters=[
            OpenApiParameter("from", int, required=True),
            OpenApiParameter("to", int, required=True),
        ],
        responses={200: s.DiffSerializer, 400: ERRORS[400], 404: ERRORS[404]},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, slug=None):
        prompt = self.get_object()
        try:
            a, b = int(request.query_params["from"]), int(request.query_params["to"])
        except (KeyError, ValueError):
            raise ValidationFailed(
                "Give two version numbers.",
                errors={"from": ["A version number."], "to": ["A version number."]},
            ) from None
        return Response({"diff": content.diff(_version(prompt, a), _version(prompt, b))})

    @extend_schema(
        summary="Use a version as the starting point of a new prompt",
        request=s.ForkSerializer,
        responses={201: s.PromptSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def fork(self, request, slug=None):
        prompt = self.get_object()
        data = s.ForkSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        charter = (
            charter_list_visible(request.user).filter(slug=data.validated_data["charter"]).first()
        )
        if charter is None:
            raise ValidationFailed(
                "The fork is not valid.", errors={"charter": ["No such charter."]}
            )
        number = data.validated_data.get("version")
        if number is None:
            live = prompt.labels.filter(name="production").first()
            source = live.version if live else prompt.versions.order_by("-number").first()
            if source is None:
                raise ValidationFailed(
                    "The prompt has no version to fork.", errors={"version": ["Nothing to fork."]}
                )
        else:
            source = _version(prompt, number)
        fork = services.prompt_fork(
            actor=request.user,
            source=source,
            charter=charter,
            name=data.validated_data["name"],
            slug=data.validated_data.get("slug", ""),
        )
        return self._detail(fork.pk, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Deprecate, with a sunset date and successor",
        request=s.DeprecateSerializer,
        responses={200: s.PromptSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def deprecate(self, request, slug=None):
        prompt = self.get_object()
        data = s.DeprecateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        successor = None
        if data.validated_data.get("successor"):
            successor = selectors.prompt_get(
                user=request.user, slug=data.validated_data["successor"]
            )
            if successor is None:
                raise ValidationFailed(
                    "The deprecation is not valid.", errors={"successor": ["No such prompt."]}
                )
        services.prompt_deprecate(
            actor=request.user,
            prompt=prompt,
            reason=data.validated_data["reason"],
            sunset_date=data.validated_data.get("sunset_date"),
            successor=successor,
        )
        return self._detail(prompt.pk)

    @extend_schema(
        summary="Retire (at once if no application reads it, else through an approval request)",
        request=ReasonSerializer,
        responses={
            200: s.PromptSerializer,
            202: OpenApiResponse(description="An approval request was opened"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def retire(self, request, slug=None):
        prompt = self.get_object()
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        from apps.approvals.api.serializers import ApprovalRequestSerializer
        from apps.approvals.models import ApprovalRequest
        from apps.approvals.services import retirement_request

        # Nothing reads it: retired at once; applications read it: an approval request.
        outcome = retirement_request(
            actor=request.user, prompt=prompt, reason=data.validated_data.get("reason", "")
        )
        if isinstance(outcome, ApprovalRequest):
            return Response(
                ApprovalRequestSerializer(outcome, context={"request": request}).data,
                status=status.HTTP_202_ACCEPTED,
            )
        return self._detail(prompt.pk)


class VersionViewSet(viewsets.ViewSet):
    """One version of a prompt, addressed by its number; drafts only change."""

    serializer_class = s.VersionSerializer

    def _get(self, request, slug, number) -> PromptVersion:
        return _version(_visible_prompt(request, slug), number)

    @extend_schema(responses={200: s.VersionSerializer, 404: ERRORS[404]})
    def retrieve(self, request, slug, number):
        version = self._get(request, slug, number)
        return Response(s.VersionSerializer(version).data)

    @extend_schema(
        request=s.VersionContentSerializer, responses={200: s.VersionSerializer, **ERRORS}
    )
    def partial_update(self, request, slug, number):
        version = self._get(request, slug, number)
        data = s.VersionContentSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = {k: v for k, v in data.validated_data.items() if k in request.data}
        version = services.version_update(actor=request.user, version=version, fields=fields)
        return Response(s.VersionSerializer(version).data)

    @extend_schema(responses={204: None, **ERRORS})
    def destroy(self, request, slug, number):
        services.version_delete(actor=request.user, version=self._get(request, slug, number))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Submit for review: freezes the content and runs the policy checks",
        request=None,
        responses={200: s.VersionSerializer, **ERRORS},
    )
    def submit(self, request, slug, number):
        version = services.version_submit(
            actor=request.user, version=self._get(request, slug, number)
        )
        return Response(s.VersionSerializer(PromptVersion.objects.get(pk=version.pk)).data)

    @extend_schema(
        summary="Approve (a reviewer who is not the author)",
        request=ReasonSerializer,
        responses={200: s.VersionSerializer, **ERRORS},
    )
    def approve(self, request, slug, number):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_approve(
            actor=request.user,
            version=self._get(request, slug, number),
            reason=data.validated_data.get("reason", ""),
        )
        return Response(s.VersionSerializer(version).data)

    @extend_schema(
        summary="Reject with a reason",
        request=ReasonSerializer,
        responses={200: s.VersionSerializer, **ERRORS},
    )
    def reject(self, request, slug, number):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_reject(
            actor=request.user,
            version=self._get(request, slug, number),
            reason=data.validated_data.get("reason", ""),
        )
        return Response(s.VersionSerializer(version).data)

    @extend_schema(
        summary="Request promotion to a protected label (an approval request behind the gate)",
        request=s.LabelSerializer,
        responses={
            201: OpenApiResponse(description="The approval request: {id, status, url, evidence}"),
            **ERRORS,
        },
    )
    def promote(self, request, slug, number):
        from apps.approvals.api.serializers import ApprovalRequestSerializer
        from apps.approvals.services import promotion_request

        data = s.LabelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = self._get(request, slug, number)
        approval = promotion_request(
            actor=request.user,
            version=version,
            label=data.validated_data["label"],
            reason=data.validated_data.get("reason", ""),
        )
        return Response(
            ApprovalRequestSerializer(approval, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Point an unprotected label at this version",
        request=s.LabelSerializer,
        responses={200: s.LabelsSerializer, **ERRORS},
    )
    def label(self, request, slug, number):
        data = s.LabelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = self._get(request, slug, number)
        services.label_move(
            actor=request.user,
            version=version,
            label=data.validated_data["label"],
            reason=data.validated_data.get("reason", ""),
        )
        return _labels_response(version.prompt)

    @extend_schema(
        summary="Policy findings on this version", responses={200: s.FindingSerializer(many=True)}
    )
    def findings(self, request, slug, number):
        version = self._get(request, slug, number)
        return Response(
            s.FindingSerializer(
                version.findings.select_related("rule", "waived_by"), many=True
            ).data
        )


def _labels_response(prompt: Prompt) -> Response:
    labels = {
        label.name: label.version.number
        for label in Label.objects.filter(prompt=prompt).select_related("version")
    }
    moves = LabelMove.objects.filter(prompt=prompt).select_related(
        "from_version", "to_version", "moved_by"
    )
    return Response(s.LabelsSerializer({"labels": labels, "moves": moves}).data)


class WaiveView(APIView):
    """Waive a policy finding with a written reason (compliance)."""

    @extend_schema(request=ReasonSerializer, responses={200: s.FindingSerializer, **ERRORS})
    def post(self, request, pk: int):
        finding = get_object_or_404(
            PolicyFinding.objects.select_related("version__prompt__charter", "rule"), pk=pk
        )
        if not permissions.can(request.user, permissions.VIEW, finding.version.prompt):
            raise NotFound()
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        finding = services.finding_waive(
            actor=request.user, finding=finding, reason=data.validated_data.get("reason", "")
        )
        return Response(s.FindingSerializer(finding).data)


class ResolveView(APIView):
    """The live version behind a label, for integrations; cached, with ETag and lifecycle headers.

    This is the hottest path of the product, so it checks the API key and the caller's
    right to see the prompt from the shared cache (see apps.core.hotcache) and touches
    the database only on a cache miss.
    """

    # Browsers use their session; API keys are checked below, from the cache.
    authentication_classes = [SessionAuthentication]
    permission_classes: list = []
    renderer_classes = [JSONRenderer]

    @extend_schema(
        summary="Resolve a label to its version",
        parameters=[OpenApiParameter("label", str, default="production")],
        auth=[{"ApiKeyAuth": []}, {"cookieAuth": []}],
        responses={
            200: s.ResolvedSerializer,
            304: OpenApiResponse(description="Not modified (If-None-Match matched the ETag)"),
            401: OpenApiResponse(description="No or invalid credentials"),
            404: ERRORS[404],
            429: OpenApiResponse(description="Too many failed API keys from this address"),
            409: OpenApiResponse(
                description="The label's version has unwaived blocking policy findings "
                "(code blocked_by_findings, blocking_findings: the rule codes)"
            ),
            410: OpenApiResponse(description="The prompt is retired; see successor"),
        },
    )
    def get(self, request, slug: str):
        return self.resolve(request._request, slug)

    def dispatch(self, request, *args, **kwargs):
        """Serve GET straight from Django's request: DRF's wrapping is measurable here.

        The class (and `get`) still documents the endpoint in the OpenAPI schema; other
        methods go through DRF and get its 405.
        """
        if request.method == "GET":
            return self.resolve(request, kwargs["slug"])
        return super().dispatch(request, *args, **kwargs)

    def resolve(self, request, slug: str):
        """The resolve itself, on a plain Django request."""
        label = request.GET.get("label", "production")
        header = request.META.get("HTTP_AUTHORIZATION", "")
        plain = header[len("Api-Key ") :].strip() if header.startswith("Api-Key ") else None
        if plain is None:
            user = request.user
            if user is None or not user.is_authenticated:
                return _problem(
                    "Authentication credentials were not provided.", "not_authenticated", 401
                )
            caller = f"user:{user.pk}"
        else:
            caller = f"key:{plain.partition('.')[0]}"

        address = ratelimit.client_address(request)
        keys = {
            "key": hotcache.key_cache_key(caller[4:]) if plain else None,
            "failures": ratelimit.API_KEYS.key(address) if plain else None,
            "meta": services.prompt_meta_cache_key(slug),
            # Label names are slugs: anything else is no label, and never a cache key.
            "payload": services.resolve_cache_key(slug, label) if LABEL.fullmatch(label) else None,
            "version": hotcache.AUTHZ_VERSION_KEY,
            "decision": f"authz:{caller}:prompt:{slug}",
        }
        cached = cache.get_many([k for k in keys.values() if k])
        if plain is not None:
            try:
                key = verified_key(
                    plain,
                    address=address,
                    info=hotcache.key_info(caller[4:], cached=cached.get(keys["key"])),
                    failures=cached.get(keys["failures"], 0),
                )
            except ratelimit.TooManyAttempts as exc:
                response = _problem(str(exc), "throttled", 429)
                response["Retry-After"] = str(exc.wait)
                return response
            if key is None:
                return _problem("Invalid API key.", "authentication_failed", 401)
            user_id, application_id = key.user_id, key.application_id
        else:
            user_id, application_id = request.user.pk, None

        meta = _meta_if_visible(user_id, slug, keys, cached)
        if meta is None:
            return _problem("No prompt matches the given query.", "not_found", 404)
        if meta["status"] == PromptStatus.RETIRED:
            return _problem(f"Prompt {slug} is retired.", "gone", 410, successor=meta["successor"])
        payload = keys["payload"] and (
            cached.get(keys["payload"]) or _label_payload(meta["id"], slug, label, keys["payload"])
        )
        if payload is None:
            return _problem(f"Prompt {slug} has no label {label!r}.", "not_found", 404)
        if "blocked" in payload:
            return _blocked(slug, label, payload)
        if application_id is not None:
            services.consumer_record(
                application_id=application_id, prompt_id=meta["id"], label=label
            )

        etag = f'"{payload["content_hash"]}-v{payload["version"]}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache", **meta["headers"]}
        if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
            return HttpResponseNotModified(headers=headers)
        # The payload's JSON is encoded once, when it is cached; only the lifecycle is added.
        body = (
            payload["json"][:-1]
            + f', "status": {json.dumps(meta["status"])}, "successor": {json.dumps(meta["successor"])}}}'
        )
        return HttpResponse(body, content_type="application/json", headers=headers)


LABEL = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def _problem(detail: str, code: str, status_code: int, **extra) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code, "errors": {}, **extra}, status=status_code)


def _blocked(slug: str, label: str | None, payload: dict) -> JsonResponse:
    """409 for a version with unwaived blocking findings (behind a label, or asked for by
    number): the rule codes, never the content."""
    codes, number = payload["blocked"], payload["version"]
    what = f"label {label!r} points at v{number}, which" if label else f"v{number}"
    return _problem(
        f"Prompt {slug} {what} has unwaived blocking policy findings ({', '.join(codes)}); "
        "it is not served until compliance waives them.",
        services.BlockedByFindings.code,
        409,
        blocking_findings=codes,
    )


def _prompt_meta(slug: str, cache_key: str) -> dict | None:
    """Status, successor and lifecycle headers of a prompt (cached until the prompt is saved)."""
    prompt = Prompt.objects.select_related("successor").filter(slug=slug).first()
    if prompt is None:
        return None
    successor = prompt.successor.slug if prompt.successor_id else None
    headers = {}
    if prompt.status == PromptStatus.DEPRECATED:
        deprecated_at = (
            prompt.history.filter(status=PromptStatus.DEPRECATED)
            .order_by("history_date")
            .values_list("history_date", flat=True)
            .first()
            or timezone.now()
        )
        headers["Deprecation"] = f"@{int(deprecated_at.timestamp())}"
        if prompt.sunset_date:
            headers["Sunset"] = format_datetime(
                dt.datetime.combine(prompt.sunset_date, dt.time.min, tzinfo=dt.UTC), usegmt=True
            )
        if successor:
            headers["Link"] = f'</api/v1/prompts/{successor}/resolve>; rel="successor-version"'
    meta = {"id": prompt.pk, "status": prompt.status, "successor": successor, "headers": headers}
    cache.set(cache_key, meta, hotcache.ttl())
    return meta


def _visible_id(user_id: int, slug: str, version: str, key: str, cached) -> int | None:
    """The id of the prompt `slug` names if the caller may see it, else None.

    One question to the database, the same whether the prompt is missing or hidden (so the
    two cannot be told apart by time either), and its answer, either way, is cached under
    the authorization version (creating a prompt bumps it)."""
    if cached is not None and cached[0] == version:
        return cached[1]
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    found = (
        selectors.prompt_list_visible(user).filter(slug=slug).values_list("pk", flat=True).first()
        if user is not None
        else None
    )
    cache.set(key, (version, found), hotcache.ttl())
    return found


def _meta_if_visible(user_id: int, slug: str, keys: dict, cached: dict) -> dict | None:
    """The prompt's cached meta when the caller may see it; None for hidden and missing alike."""
    version = cached.get(keys["version"]) or hotcache.authz_version()
    found = _visible_id(user_id, slug, version, keys["decision"], cached.get(keys["decision"]))
    if found is None:
        return None
    meta = cached.get(keys["meta"]) or _prompt_meta(slug, keys["meta"])
    if meta is None or meta["id"] != found:
        return None
    return meta


def _visible_meta(user, slug: str) -> dict:
    """The prompt's cached meta if `user` may see it (decided as resolve decides, from the
    shared cache), else NotFound, the same for a hidden prompt as for a missing one."""
    keys = {
        "meta": services.prompt_meta_cache_key(slug),
        "version": hotcache.AUTHZ_VERSION_KEY,
        "decision": f"authz:user:{user.pk}:prompt:{slug}",
    }
    cached = cache.get_many(list(keys.values()))
    meta = _meta_if_visible(user.pk, slug, keys, cached)
    if meta is None:
        raise NotFound("No prompt matches the given query.")
    return meta


class _Resolved:
    """A version as resolve's cached payload describes it (what rendering reads)."""

    def __init__(self, payload: dict) -> None:
        self.number = payload["version"]
        self.content_hash = payload["content_hash"]
        self.template_kind = payload["template_kind"]
        self.variables = payload["variables"]
        self.model_config = payload["model_config"]
        self.messages = payload.get("messages") or []
        self.text = payload.get("text") or ""


def _label_payload(prompt_id: int, slug: str, label: str, cache_key: str) -> dict | None:
    target = Label.objects.select_related("version").filter(prompt_id=prompt_id, name=label).first()
    if target is None:
        return None
    version = target.version
    codes = services.blocking_codes(version)
    if codes:
        # Never cached: a waiver makes it servable at once, and a finding added or un-waived
        # later forgets the cached payload (services.resolved_forget).
        return {"blocked": codes, "version": version.number}
    payload = {
        "prompt": slug,
        "label": label,
        "version": version.number,
        "content_hash": version.content_hash,
        "template_kind": version.template_kind,
        "variables": version.variables,
        "model_config": version.model_config,
    }
    if version.template_kind == TemplateKind.CHAT:
        payload["messages"] = version.messages
    else:
        payload["text"] = version.text
    payload = {
        "content_hash": version.content_hash,
        "version": version.number,
        "json": json.dumps(payload),
    }
    cache.set(cache_key, payload, hotcache.ttl())
    return payload


class RenderView(APIView):
    """Render a label's (or a version's) template with variables."""

    @extend_schema(
        summary="Render with variables",
        request=s.RenderSerializer,
        responses={200: s.RenderedSerializer, **ERRORS},
    )
    def post(self, request, slug: str):
        meta = _visible_meta(request.user, slug)
        data = s.RenderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        number = data.validated_data.get("version")
        if number is not None:
            version = _version(Prompt.objects.get(pk=meta["id"]), number)
            codes = services.blocking_codes(version)
            if codes:
                return _blocked(slug, None, {"blocked": codes, "version": number})
        else:
            # A label renders from resolve's cached payload: no query once it is warm.
            label_name = data.validated_data.get("label", "production")
            key = services.resolve_cache_key(slug, label_name)
            payload = LABEL.fullmatch(label_name) and (
                cache.get(key) or _label_payload(meta["id"], slug, label_name, key)
            )
            if not payload:
                raise NotFound(f"Prompt {slug} has no label {label_name!r}.")
            if "blocked" in payload:
                return _blocked(slug, label_name, payload)
            version = _Resolved(json.loads(payload["json"]))
        sources = content.sources(version.template_kind, version.messages, version.text)
        try:
            rendered = rendering.render_many(
                sources, data.validated_data["variables"], declared=version.variables
            )
        except rendering.TemplateError as exc:
            errors: dict[str, list[str]] = {}
            for problem in exc.problems:
                errors.setdefault(
                    f"variables.{problem.variable}" if problem.variable else "template", []
                ).append(problem.as_text())
            raise ValidationFailed("The template could not be rendered.", errors=errors) from None
        body = {
            "prompt": slug,
            "version": version.number,
            "content_hash": version.content_hash,
            "model_config": version.model_config,
        }
        if version.template_kind == TemplateKind.CHAT:
            body["messages"] = [
                {"role": m["role"], "content": text}
                for m, text in zip(version.messages, rendered, strict=True)
            ]
        else:
            body["text"] = rendered[0]
        return Response(body)


@extend_schema_view(
    list=extend_schema(summary="Applications you own (all, for compliance)"),
    create=extend_schema(
        summary="Register an application", responses={201: s.ApplicationSerializer, **ERRORS}
    ),
)
class ApplicationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Consuming systems and their API keys."""

    lookup_field = "slug"
    serializer_class = s.ApplicationSerializer
    queryset = Application.objects.none()  # for the schema; get_queryset scopes to the caller

    def get_queryset(self):
        user = self.request.user
        qs = Application.objects.select_related("owner", "service_user").order_by("name", "id")
        if user.is_superuser or user.has_perm("prompts.view_application"):
            return qs
        return qs.filter(owner=user)

    def create(self, request, *args, **kwargs):
        data = s.ApplicationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        application = services.application_create(actor=request.user, **data.validated_data)
        return Response(s.ApplicationSerializer(application).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _key_row(key) -> dict:
        return {
            "prefix": key.prefix,
            "name": key.name,
            "created": key.created,
            "revoked": key.revoked,
            "last_used_at": key.last_used_at,
        }

    @extend_schema(
        summary="The application's keys (never the keys themselves)",
        responses={200: s.KeySerializer(many=True)},
        methods=["GET"],
    )
    @extend_schema(
        summary="Issue a key (shown once)",
        request=s.KeySerializer,
        responses={201: s.NewKeySerializer, **ERRORS},
        methods=["POST"],
    )
    # Plain lists, not paged like the application list.
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def keys(self, request, slug=None):
        application = self.get_object()
        if request.method == "GET":
            rows = application.service_user.api_keys.order_by("-created")
            return Response(s.KeySerializer([self._key_row(k) for k in rows], many=True).data)
        data = s.KeySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, plain = services.application_key_create(
            actor=request.user, application=application, name=data.validated_data["name"]
        )
        return Response(
            s.NewKeySerializer({**self._key_row(key), "key": plain}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Revoke a key at once",
        parameters=[OpenApiParameter("prefix", str, OpenApiParameter.PATH)],
        request=None,
        responses={204: None, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path=r"keys/(?P<prefix>[A-Za-z0-9]+)/revoke")
    def revoke(self, request, slug=None, prefix=None):
        services.application_key_revoke(
            actor=request.user, application=self.get_object(), prefix=prefix
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Which prompts and labels this application reads",
        responses={200: s.ConsumerSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def consumptions(self, request, slug=None):
        rows = self.get_object().consumptions.select_related("prompt")
        return Response(s.ConsumerSerializer(rows, many=True).data)
