"""Import a Hugging Face Optimum export folder as a model artifact."""

import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.charters.models import Charter
from apps.core.errors import ApplicationError
from apps.evaluations.choices import ArtifactStatus
from apps.evaluations.services import artifact_import_folder, artifact_validate
from apps.evaluations.services.artifacts import validation_limits


class Command(BaseCommand):
    help = (
        "Import an Optimum export folder (model.onnx, tokenizer.json, config.json) and validate it."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--user", required=True, help="Username of the person importing.")
        parser.add_argument("--name", default="")
        parser.add_argument("--slug", default="")
        parser.add_argument("--task", default="", help="When config.json does not tell.")
        parser.add_argument("--charter", default="", help="Charter slug (empty: shared library).")
        parser.add_argument("--license", default="")
        parser.add_argument("--source", default="")

    def handle(self, *args, folder, user, name, slug, task, charter, license, source, **options):
        actor = get_user_model().objects.filter(username=user, is_active=True).first()
        if actor is None:
            raise CommandError(f"No active user '{user}'.")
        charter_obj = None
        if charter:
            charter_obj = Charter.objects.filter(slug=charter).first()
            if charter_obj is None:
                raise CommandError(f"No charter '{charter}'.")
        try:
            with transaction.atomic():
                artifact = artifact_import_folder(
                    actor=actor,
                    folder=folder,
                    name=name,
                    slug=slug,
                    task=task,
                    charter=charter_obj,
                    source=source,
                    license=license,
                )
        except ApplicationError as exc:
            details = "; ".join(m for ms in exc.errors.values() for m in ms)
            raise CommandError(f"{exc.message} {details}".strip()) from exc
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from exc
        artifact_validate(artifact.pk)
        # A running worker may have taken the validation first (its message was enqueued
        # on commit): wait for its verdict rather than judging by who got there first.
        deadline = time.monotonic() + validation_limits().wall_seconds + 60
        artifact.refresh_from_db()
        while artifact.status == ArtifactStatus.PENDING and time.monotonic() < deadline:
            time.sleep(0.5)
            artifact.refresh_from_db()
        if artifact.status != ArtifactStatus.VALID:
            problems = "; ".join(artifact.validation.get("problems", []))
            raise CommandError(f"{artifact.slug} is {artifact.status}: {problems}")
        self.stdout.write(
            f"{artifact.slug}: valid ({artifact.get_task_display()}, sha256 {artifact.sha256[:16]}…)"
        )
