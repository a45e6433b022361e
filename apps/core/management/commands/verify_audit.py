"""`manage.py verify_audit`: the audit chain, its newest signed checkpoint, and the rows it covers.

Names every problem it finds: a broken link, a log cut back or emptied since the newest
checkpoint, a forged checkpoint, a history row no event chains, a submitted prompt version or
sealed dataset version whose content changed. Exits non-zero when there is one.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from apps.core.management.integrity import verify


class Command(BaseCommand):
    help = (
        "Verify the tamper-evident audit chain against its newest signed checkpoint, the history "
        "rows it chains and the content of submitted prompt versions and dataset versions."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        report = verify()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2, default=str))
            if not report.ok:
                raise CommandError(f"Audit verification failed: {len(report.findings)} problem(s).")
            return
        if not report.ok:
            lines = "\n".join(f"- [{f.kind}] {f.message}" for f in report.findings)
            raise CommandError(
                f"Audit verification failed: {len(report.findings)} problem(s).\n{lines}"
            )
        self.stdout.write(f"Audit chain intact: {report.events} event(s) verified.")
        if report.checkpoint:
            cp = report.checkpoint
            self.stdout.write(
                f"Anchored: checkpoint #{cp['checkpoint']} ({cp['created_at']}) at event "
                f"#{cp['sequence']} with {cp['event_count']} event(s) matches the log."
            )
        self.stdout.write(
            f"History: {report.history_rows} row(s), each chained. Content: "
            f"{report.prompt_versions} submitted prompt version(s) and "
            f"{report.dataset_versions} sealed dataset version(s) match."
        )
        for note in report.notes:
            self.stdout.write(f"Note: {note}")
