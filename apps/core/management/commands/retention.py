"""`manage.py retention [--dry-run]`: remove what the retention settings no longer keep (apps/core/retention),
or with --dry-run only list it. The same runs daily from a django-q2 schedule."""
from django.core.management.base import BaseCommand

from apps.core import retention


def size(count: int) -> str:
    return f"{count / 10 ** 6:.1f} MB"


class Command(BaseCommand):
    help = "Remove old inbox archives, quarantine, delivered downloads, reports, incomplete uploads and job records."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed; remove nothing.")

    def handle(self, *args, dry_run=False, **options):
        candidates = retention.plan()
        for c in candidates:
            self.stdout.write(f"{c.category}\t{c.age_days:.0f} days\t{size(c.bytes)}\t{c.label}")
        if dry_run:
            self.stdout.write(f"{len(candidates)} entries would be removed ({size(sum(c.bytes for c in candidates))}).")
            return
        outcome = retention.apply(candidates)
        for c, why in outcome.failed:
            self.stderr.write(f"could not remove {c.label}: {why}")
        self.stdout.write(f"{len(outcome.removed)} entries removed ({size(sum(c.bytes for c in outcome.removed))}), "
                          f"{len(outcome.kept)} kept (needed again since listed), {len(outcome.failed)} failed.")
