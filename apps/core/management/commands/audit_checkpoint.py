"""`manage.py audit_checkpoint`: sign the audit chain's head and anchor it outside the database."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.anchors import AnchorError
from apps.core.management.integrity import checkpoint


class Command(BaseCommand):
    help = (
        "Write a signed checkpoint of the audit chain (and seal new dataset versions) to the "
        "checkpoint table, the anchor file and the aifactory.audit log. Beat runs it every "
        "few minutes."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true", help="Write one even if nothing changed."
        )

    def handle(self, *args, **options):
        try:
            row = checkpoint(force=options["force"])
        except AnchorError as exc:
            raise CommandError(
                "No checkpoint written: the log no longer matches the newest checkpoint. "
                + "; ".join(exc.problems)
            ) from exc
        if row is None:
            self.stdout.write("Nothing changed since the newest checkpoint.")
            return
        self.stdout.write(
            f"Checkpoint #{row.pk} signed at event #{row.sequence} ({row.event_count} event(s), "
            f"{len(row.seals)} new seal(s)); appended to {settings.AUDIT_ANCHOR_FILE}."
        )
