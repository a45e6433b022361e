"""`manage.py scorecards_rebuild_rollups [--charter slug]`: recompute the daily rollups."""

from django.core.management.base import BaseCommand, CommandError

from apps.charters.models import Charter
from apps.scorecards import rollups


class Command(BaseCommand):
    help = "Recompute scorecard rollups from raw observations (after a bulk import or restore)."

    def add_arguments(self, parser):
        parser.add_argument("--charter", default="", help="Only this charter's metrics.")

    def handle(self, *args, charter="", **options):
        metric_ids = None
        if charter:
            found = Charter.objects.filter(slug=charter).first()
            if found is None:
                raise CommandError(f"No charter '{charter}'.")
            metric_ids = list(found.metrics.values_list("pk", flat=True))
        count = rollups.rebuild(metric_ids)
        self.stdout.write(f"Rolled up {count} observation(s).")
