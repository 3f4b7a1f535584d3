"""manage.py catalog rebuild: the catalog written again from the files on disk (idempotent), with a
progress bar on stderr."""
import sys

from django.core.management.base import BaseCommand

from apps.catalog.rebuild import rebuild


class Command(BaseCommand):
    help = "Rebuild the instance catalog from the files the portal holds (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["rebuild"])
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, quiet=False, **options):
        def bar(done: int, total: int) -> None:
            width = 40
            filled = width * done // max(total, 1)
            sys.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total} files")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()

        outcome = rebuild(None if quiet else bar)
        for reason in outcome.skipped[:20]:
            self.stderr.write(f"skipped {reason}")
        if len(outcome.skipped) > 20:
            self.stderr.write(f"... and {len(outcome.skipped) - 20} more skipped")
        self.stdout.write(f"catalog: {outcome.written} instances written, {outcome.removed} stale rows removed, "
                          f"{len(outcome.skipped)} files skipped")
