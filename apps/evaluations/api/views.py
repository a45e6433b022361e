"""Evaluation endpoints: reads scoped to the caller, commands that call the services, and the
gate call CI pipelines make (start a run for a candidate, wait, get pass/fail)."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.approvals import services as approval_services
from apps.approvals.api.serializers import ApprovalRequestSerializer
from apps.charters.selectors import charter_list_visible
from apps.core import uploads
from apps.core.api.parsers import FormParser, JSONParser, MultiPartParser
from apps.core.errors import ValidationFailed, hidden_reference
from apps.evaluations import permissions, selectors, services
from apps.evaluations.choices import ACTIVE_RUN_STATUSES, RunStatus
from apps.evaluations.models import CaseResult, DatasetVersion, Run, RunOutput, Suite, Threshold
from apps.evaluations.services.runs import outputs_from_jsonl
from apps.prompts import selectors as prompt_selectors
from apps.prompts.models import Label

from . import serializers as s

ERRORS = {
    400: OpenApiResponse(description="Invalid input: {detail, code, errors: {field: [messages]}}"),
    403: OpenApiResponse(description="Visible, but you may not do this"),
    404: OpenApiResponse(description="Not found, or not visible to you"),
    409: OpenApiResponse(description="The current state does not allow this"),
}


def _visible_charter(request, charter):
    if (
        charter is not None
        and not charter_list_visible(request.user).filter(pk=charter.pk).exists()
    ):
        raise hidden_reference("charter", charter.slug)
    return charter


def _visible_prompt(request, prompt):
    if (
        prompt is not None
        and not prompt_selectors.prompt_list_visible(request.user).filter(pk=prompt.pk).exists()
    ):
        raise hidden_reference("prompt", prompt.slug)
    return prompt


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Datasets of evaluation cases; versions are immutable, uploads are streamed."""

    lookup_field = "slug"
    serializer_class = s.DatasetSerializer
    http_method_names = ["get", "post", "head", "options"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST":  # before anything reads the body
            uploads.install(request, {"file": services.datasets.max_bytes()})
        return super().initialize_request(request, *args, **kwargs)

    def get_queryset(self):
        return (
            selectors.dataset_list_visible(self.request.user)
            .select_related("charter", "prompt", "owner")
            .prefetch_related(
                Prefetch(
                    "versions", queryset=DatasetVersion.objects.only("id", "dataset_id", "number")
                )
            )
            .order_by("name", "id")
        )

    @extend_schema(
        request=s.DatasetCreateSerializer, responses={201: s.DatasetSerializer, **ERRORS}
    )
    def create(self, request, *args, **kwargs):
        data = s.DatasetCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        _visible_charter(request, fields.get("charter"))
        _visible_prompt(request, fields.get("prompt"))
        dataset = services.dataset_create(actor=request.user, **fields)
        return Response(
            s.DatasetSerializer(self.get_queryset().get(pk=dataset.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        methods=["GET"],
        summary="The dataset's versions",
        responses=s.DatasetVersionSerializer(many=True),
    )
    @extend_schema(
        methods=["POST"],
        summary="Upload a JSONL or CSV file as a new version (any bad row keeps nothing)",
        request={"multipart/form-data": s.DatasetUploadSerializer},
        responses={201: s.DatasetVersionSerializer, **ERRORS},
    )
    # A plain list (a dataset has few versions): neither paged nor filtered like the datasets.
    @action(
        detail=True,
        methods=["get", "post"],
        url_path="versions",
        pagination_class=None,
        filter_backends=[],
    )
    def versions(self, request, slug=None):
        dataset = self.get_object()
        if request.method == "GET":
            # Not dataset.versions: get_queryset prefetched them with deferred fields.
            rows = (
                DatasetVersion.objects.filter(dataset=dataset)
                .select_related("created_by")
                .order_by("-number")
            )
            return Response(s.DatasetVersionSerializer(rows, many=True).data)
        data = s.DatasetUploadSerializer(data=request.data)
        uploads.raise_refusals(request)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        version = services.dataset_version_upload(
            actor=request.user,
            dataset=dataset,
            stream=upload,
            filename=upload.name,
            fmt=data.validated_data.get("format"),
            notes=data.validated_data.get("notes", ""),
        )
        return Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Add, replace or remove cases by id: writes a new version",
        request=s.DatasetDeriveSerializer,
        responses={201: s.DatasetVersionSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="versions/derive")
    def derive(self, request, slug=None):
        dataset = self.get_object()
        data = s.DatasetDeriveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.dataset_version_derive(
            actor=request.user, dataset=dataset, **data.validated_data
        )
        return Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    def _version(self, slug, number) -> DatasetVersion:
        dataset = self.get_object()
        version = dataset.versions.filter(number=number).first()
        if version is None:
            raise NotFound("No such dataset version.")
        return version

    @extend_schema(summary="The cases of one version", responses=s.CaseSerializer(many=True))
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>\d+)/cases")
    def cases(self, request, slug=None, number=None):
        version = self._version(slug, int(number))
        page = self.paginate_queryset(version.cases.order_by("position"))
        return self.get_paginated_response(s.CaseSerializer(page, many=True).data)

    @extend_schema(
        summary="Export one version as JSONL (streamed)",
        responses={(200, "application/x-ndjson"): OpenApiResponse(description="One case per line")},
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>\d+)/export")
    def export(self, request, slug=None, number=None):
        version = self._version(slug, int(number))
        response = StreamingHttpResponse(
            services.dataset_version_export(version), content_type="application/x-ndjson"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{version.dataset.slug}-v{version.number}.jsonl"'
        )
        return response


class ArtifactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """ONNX scorer models and models under test; validated by a worker after upload."""

    lookup_field = "slug"
    serializer_class = s.ArtifactSerializer
    http_method_names = ["get", "post", "head", "options"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def initialize_request(self, request, *args, **kwargs):
        if request.method == "POST":  # before anything reads the body
            uploads.install(request, services.artifacts.upload_limits())
        return super().initialize_request(request, *args, **kwargs)

    def get_queryset(self):
        return (
            selectors.artifact_list_visible(self.request.user)
            .select_related("charter", "owner", "quantized_from")
            .order_by("name", "id")
        )

    @extend_schema(
        request={"multipart/form-data": s.ArtifactUploadSerializer},
        responses={201: s.ArtifactSerializer, **ERRORS},
    )
    def create(self, request, *args, **kwargs):
        data = s.ArtifactUploadSerializer(data=request.data)
        uploads.raise_refusals(request)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        _visible_charter(request, fields.get("charter"))
        artifact = services.artifact_upload(actor=request.user, **fields)
        return Response(s.ArtifactSerializer(artifact).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Derive an int8 variant (kept only above the agreement floor)",
        request=s.QuantizeSerializer,
        responses={202: OpenApiResponse(description="Queued"), **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def quantize(self, request, slug=None):
        artifact = self.get_object()
        data = s.QuantizeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.artifact_quantize(
            actor=request.user, artifact=artifact, floor=data.validated_data.get("floor")
        )
        return Response({"detail": "Quantization queued."}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Retire the artifact", request=None, responses={200: s.ArtifactSerializer, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def retire(self, request, slug=None):
        artifact = services.artifact_retire(actor=request.user, artifact=self.get_object())
        return Response(s.ArtifactSerializer(artifact).data)


def _dataset_version(request, data, current=None):
    slug = data.get("dataset")
    number = data.get("dataset_version")
    if not slug and number is None:
        return current
    if not slug and current is not None:
        dataset = current.dataset
    else:
        dataset = selectors.dataset_list_visible(request.user).filter(slug=slug).first()
    if dataset is None:
        raise ValidationFailed("The suite is not valid.", errors={"dataset": ["No such dataset."]})
    versions = dataset.versions.order_by("-number")
    version = versions.filter(number=number).first() if number is not None else versions.first()
    if version is None:
        raise ValidationFailed(
            "The suite is not valid.", errors={"dataset_version": ["No such dataset version."]}
        )
    return version


class SuiteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Suites: a dataset version, scorers and owned thresholds."""

    lookup_field = "slug"
    serializer_class = s.SuiteSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return (
            selectors.suite_list_visible(self.request.user)
            .select_related("charter", "prompt", "owner", "dataset_version__dataset")
            .prefetch_related(
                Prefetch("thresholds", queryset=Threshold.objects.select_related("owner"))
            )
            .order_by("name", "id")
        )

    def _detail(self, pk, code=status.HTTP_200_OK):
        return Response(s.SuiteSerializer(self.get_queryset().get(pk=pk)).data, status=code)

    @extend_schema(request=s.SuiteWriteSerializer, responses={201: s.SuiteSerializer, **ERRORS})
    def create(self, request, *args, **kwargs):
        data = s.SuiteWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        charter = _visible_charter(request, fields.pop("charter", None))
        _visible_prompt(request, fields.get("prompt"))
        slug = fields.pop("slug", "")
        fields.pop("reason", None)
        version = _dataset_version(request, fields)
        fields.pop("dataset", None)
        fields["dataset_version"] = version
        suite = services.suite_create(actor=request.user, charter=charter, slug=slug, fields=fields)
        return self._detail(suite.pk, status.HTTP_201_CREATED)

    @extend_schema(
        request=s.SuiteWriteSerializer,
        responses={
            200: s.SuiteSerializer,
            202: OpenApiResponse(
                description="A change of what the gate tests waits for the threshold owners "
                "(the approval request)"
            ),
            **ERRORS,
        },
    )
    def partial_update(self, request, *args, **kwargs):
        suite = self.get_object()
        data = s.SuiteWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        reason = fields.pop("reason", "")
        if "dataset" in fields or "dataset_version" in fields:
            fields["dataset_version"] = _dataset_version(request, fields, suite.dataset_version)
        fields.pop("dataset", None)
        if "prompt" in fields:
            _visible_prompt(request, fields["prompt"])
        outcome = approval_services.suite_change(
            actor=request.user, suite=suite, fields=fields, reason=reason
        )
        if not isinstance(outcome, Suite):
            return Response(
                ApprovalRequestSerializer(outcome, context={"request": request}).data,
                status=status.HTTP_202_ACCEPTED,
            )
        return self._detail(suite.pk)

    @extend_schema(
        methods=["POST"],
        summary="Add a threshold (recorded in its history)",
        request=s.ThresholdSerializer,
        responses={201: s.ThresholdSerializer, **ERRORS},
    )
    @extend_schema(methods=["GET"], responses=s.ThresholdSerializer(many=True))
    # A plain list (a suite has a few thresholds): neither paged nor filtered like the suites.
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def thresholds(self, request, slug=None):
        suite = self.get_object()
        if request.method == "GET":
            return Response(
                s.ThresholdSerializer(suite.thresholds.select_related("owner"), many=True).data
            )
        data = s.ThresholdSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        threshold = services.threshold_set(
            actor=request.user,
            suite=suite,
            fields=dict(data.validated_data),
            reason=str(request.data.get("reason", "")),
        )
        return Response(s.ThresholdSerializer(threshold).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        methods=["PATCH"],
        summary="Change a threshold (its owner at once; anyone else through an approval request)",
        request=s.ThresholdSerializer,
        responses={
            200: s.ThresholdSerializer,
            202: OpenApiResponse(description="An approval request was opened"),
            **ERRORS,
        },
    )
    @extend_schema(
        methods=["DELETE"],
        summary="Remove a threshold (its owner at once; anyone else through an approval request)",
        responses={
            204: None,
            202: OpenApiResponse(description="An approval request was opened"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["patch", "delete"], url_path=r"thresholds/(?P<threshold_id>\d+)")
    def threshold(self, request, slug=None, threshold_id=None):
        suite = self.get_object()
        threshold = get_object_or_404(Threshold, pk=threshold_id, suite=suite)
        reason = str(request.data.get("reason", "")) if hasattr(request.data, "get") else ""
        if request.method == "DELETE":
            opened = approval_services.threshold_remove(
                actor=request.user, threshold=threshold, reason=reason
            )
            if opened is None:
                return Response(status=status.HTTP_204_NO_CONTENT)
            return Response(
                ApprovalRequestSerializer(opened, context={"request": request}).data,
                status=status.HTTP_202_ACCEPTED,
            )
        data = s.ThresholdSerializer(threshold, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        # The threshold's owner changes it at once; anyone else asks the owner.
        outcome = approval_services.threshold_change(
            actor=request.user, threshold=threshold, fields=dict(data.validated_data), reason=reason
        )
        if isinstance(outcome, Threshold):
            return Response(s.ThresholdSerializer(outcome).data)
        return Response(
            ApprovalRequestSerializer(outcome, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
        )


def _subject(request, suite, data):
    """The prompt version (by number or label) or the model under test a run is about."""
    version = model = None
    if data.get("prompt"):
        if suite.prompt_id and suite.prompt.slug == data["prompt"]:
            prompt = suite.prompt  # running the suite covers reading the prompt it gates
        else:
            prompt = prompt_selectors.prompt_get(user=request.user, slug=data["prompt"])
        if prompt is None:
            raise ValidationFailed("The run cannot start.", errors={"prompt": ["No such prompt."]})
        if data.get("version") is not None:
            version = prompt.versions.filter(number=data["version"]).first()
        elif data.get("label"):
            label = (
                Label.objects.filter(prompt=prompt, name=data["label"])
                .select_related("version")
                .first()
            )
            version = label.version if label else None
        else:
            raise ValidationFailed(
                "The run cannot start.", errors={"version": ["Give a version number or a label."]}
            )
        if version is None:
            raise ValidationFailed(
                "The run cannot start.", errors={"version": ["No such version."]}
            )
    if data.get("model_under_test"):
        model = (
            selectors.artifact_list_visible(request.user)
            .filter(slug=data["model_under_test"])
            .first()
        )
        if model is None:
            raise ValidationFailed(
                "The run cannot start.", errors={"model_under_test": ["No such model artifact."]}
            )
    return version, model


def wait_for(run: Run, seconds: float) -> Run:
    """Poll the run until it stops or `seconds` pass (the CI gate's long poll)."""
    deadline = time.monotonic() + max(0.0, seconds)
    while run.status in ACTIVE_RUN_STATUSES and time.monotonic() < deadline:
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        run.refresh_from_db()
    return run


def verdict_response(run: Run, request) -> Response:
    """200 pass, 422 fail (so `curl --fail-with-body` exits non-zero), 202 still going,
    409 cancelled or failed."""
    body = s.RunSerializer(run, context={"request": request}).data
    if run.status == RunStatus.COMPLETED:
        code = status.HTTP_200_OK if run.verdict == "pass" else status.HTTP_422_UNPROCESSABLE_ENTITY
    elif run.status in ACTIVE_RUN_STATUSES:
        code = status.HTTP_202_ACCEPTED
    else:
        code = status.HTTP_409_CONFLICT
    return Response(body, status=code)


WAIT_PARAM = OpenApiParameter(
    "wait",
    int,
    description="Seconds to wait for the verdict (long poll, at most the server's cap).",
)


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Evaluation runs: start, post outputs, follow progress, read results, cancel."""

    serializer_class = s.RunSerializer
    http_method_names = ["get", "post", "head", "options"]
    filterset_fields = ["status", "verdict", "output_source"]

    def get_queryset(self):
        qs = selectors.run_list_visible(self.request.user).select_related(
            "suite",
            "prompt_version__prompt",
            "model_under_test",
            "created_by",
            "dataset_version__dataset",
        )
        suite = self.request.query_params.get("suite")
        if suite:
            qs = qs.filter(suite__slug=suite)
        return qs.order_by("-created_at", "-id")

    def get_serializer_class(self):
        return s.RunDetailSerializer if self.action == "retrieve" else s.RunSerializer

    @extend_schema(responses={200: s.RunDetailSerializer, 404: ERRORS[404]})
    def retrieve(self, request, *args, **kwargs):
        run = self.get_object()
        context = {
            **self.get_serializer_context(),
            "summary": selectors.run_summary_for(request.user, run),
        }
        return Response(s.RunDetailSerializer(run, context=context).data)

    @extend_schema(
        summary="Start a run; with outputs and wait, this is the whole CI gate in one call",
        request=s.RunStartSerializer,
        responses={
            201: s.RunSerializer,
            200: OpenApiResponse(s.RunSerializer, description="Waited: verdict pass"),
            422: OpenApiResponse(s.RunSerializer, description="Waited: verdict fail"),
            202: OpenApiResponse(s.RunSerializer, description="Waited: still running"),
            **ERRORS,
        },
    )
    def create(self, request, *args, **kwargs):
        data = s.RunStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        suite = selectors.suite_list_visible(request.user).filter(slug=fields["suite"]).first()
        if suite is None:
            raise ValidationFailed("The run cannot start.", errors={"suite": ["No such suite."]})
        version, model = _subject(request, suite, fields)
        baseline = None
        if fields.get("baseline"):
            baseline = (
                selectors.run_list_visible(request.user).filter(pk=fields["baseline"]).first()
            )
            if baseline is None:
                raise ValidationFailed(
                    "The run cannot start.", errors={"baseline": ["No such run."]}
                )
        # Starting and posting are one write: refused outputs leave no orphan run behind.
        with transaction.atomic():
            run = services.run_start(
                actor=request.user,
                suite=suite,
                prompt_version=version,
                model_under_test=model,
                output_source=fields["output_source"],
                endpoint=fields.get("endpoint"),
                input_variable=fields.get("input_variable", ""),
                baseline=baseline,
                batch_size=fields.get("batch_size"),
                queue=fields.get("queue", ""),
                note=fields.get("note", ""),
            )
            if fields.get("outputs") is not None:
                services.run_outputs_post(
                    actor=request.user,
                    run=run,
                    items=enumerate(fields["outputs"], start=1),
                    complete=True,
                )
        run.refresh_from_db()
        if fields.get("wait"):
            run = wait_for(run, min(fields["wait"], settings.EVALUATIONS_GATE_WAIT_SECONDS))
            return verdict_response(run, request)
        return Response(
            s.RunSerializer(run, context={"request": request}).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        summary="Post outputs matched by case id (JSON list or JSONL body)",
        request=s.OutputItemSerializer(many=True),
        parameters=[OpenApiParameter("complete", bool, description="Start scoring now.")],
        responses={200: OpenApiResponse(description="{received, posted, total}"), **ERRORS},
    )
    @action(detail=True, methods=["post"], parser_classes=[JSONParser], url_path="outputs")
    def outputs(self, request, pk=None):
        run = self.get_object()
        complete = request.query_params.get("complete", "").lower() in {"1", "true", "yes"}
        items = request.data
        if isinstance(items, dict):
            complete = complete or bool(items.get("complete"))
            items = items.get("outputs", [])
        if not isinstance(items, list):
            raise ValidationFailed(
                "Post a list of {id, output}.", errors={"outputs": ["Expected a list."]}
            )
        result = services.run_outputs_post(
            actor=request.user, run=run, items=enumerate(items, start=1), complete=complete
        )
        return Response(result)

    @extend_schema(
        summary="Start scoring the outputs posted so far",
        request=None,
        responses={200: s.RunSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def score(self, request, pk=None):
        run = services.run_scoring_start(actor=request.user, run=self.get_object())
        return Response(s.RunSerializer(run, context={"request": request}).data)

    @extend_schema(
        summary="Cancel the run", request=None, responses={200: s.RunSerializer, **ERRORS}
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = services.run_cancel(
            actor=request.user, run=self.get_object(), reason=str(request.data.get("reason", ""))
        )
        return Response(s.RunSerializer(run, context={"request": request}).data)

    @extend_schema(
        summary="The verdict: 200 pass, 422 fail, 202 still running, 409 failed or cancelled",
        parameters=[WAIT_PARAM],
        responses={
            200: s.RunSerializer,
            202: s.RunSerializer,
            409: s.RunSerializer,
            422: s.RunSerializer,
        },
    )
    @action(detail=True, methods=["get"])
    def verdict(self, request, pk=None):
        run = self.get_object()
        try:
            wait = float(request.query_params.get("wait", 0))
        except ValueError:
            raise ValidationFailed(
                "wait must be a number of seconds.", errors={"wait": ["Enter a number."]}
            ) from None
        run = wait_for(run, min(wait, settings.EVALUATIONS_GATE_WAIT_SECONDS))
        return verdict_response(run, request)

    @extend_schema(
        summary="Per-case results: output, scores, pass/fail; the expected answer and context "
        "only for who may view the dataset",
        parameters=[
            OpenApiParameter("failed", bool, description="Only cases that missed a pass mark."),
            OpenApiParameter("segment", str, description="key=value, e.g. language=de"),
        ],
        responses=s.CaseResultSerializer(many=True),
    )
    # Paged, but filtered by its own parameters, not by the run list's filters.
    @action(detail=True, methods=["get"], filter_backends=[])
    def results(self, request, pk=None):
        run = self.get_object()
        qs = CaseResult.objects.filter(run=run).select_related("case").order_by("case__position")
        if request.query_params.get("failed", "").lower() in {"1", "true", "yes"}:
            qs = qs.filter(passed=False)
        segment = request.query_params.get("segment", "")
        if segment:
            key, _, value = segment.partition("=")
            qs = qs.filter(**{f"case__segments__{key}": value}) if key.isidentifier() else qs.none()
        page = self.paginate_queryset(qs)
        outputs = dict(
            RunOutput.objects.filter(run=run, case_id__in=[r.case_id for r in page]).values_list(
                "case_id", "output"
            )
        )
        rows = selectors.case_views(
            page, outputs, visible=selectors.run_case_fields_visible(request.user, run)
        )
        return self.get_paginated_response(s.CaseResultSerializer(rows, many=True).data)


class JsonlStreamParser(BaseParser):
    """Accepts a JSONL body without reading it: the view streams it line by line. Without a
    parser for the type, the CSRF check of a signed-in session (which reads request.POST)
    answered 415 before the view ran."""

    media_type = "application/x-ndjson"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class OutputsJsonlView(APIView):
    """Post outputs as a JSONL body (one {"id", "output"} per line), streamed line by line."""

    parser_classes = [JsonlStreamParser]

    @extend_schema(
        summary="Post outputs as JSONL (application/x-ndjson)",
        request={"application/x-ndjson": OpenApiTypes.STR},
        parameters=[OpenApiParameter("complete", bool, description="Start scoring now.")],
        responses={200: OpenApiResponse(description="{received, posted, total}"), **ERRORS},
    )
    def post(self, request, pk: int):
        run = selectors.run_list_visible(request.user).filter(pk=pk).first()
        if run is None:
            raise NotFound("No such run.")
        permissions.require(request.user, permissions.RUN, run)
        complete = request.query_params.get("complete", "").lower() in {"1", "true", "yes"}

        result = services.run_outputs_post(
            actor=request.user,
            run=run,
            items=outputs_from_jsonl(request._request),
            complete=complete,
        )
        return Response(result)
