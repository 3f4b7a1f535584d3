"""manage.py import_dicom <path>: import a folder tree here and now, with a progress bar."""
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.imports.intake import create_import
from apps.imports.scan import SourceRefused
from apps.jobs.runner import run_inline

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Import a folder tree of DICOM files (patients, images with JPEGs, dedup) in this process."

    def add_arguments(self, parser):
        parser.add_argument("path", help="A folder inside IMPORT_ROOTS.")
        parser.add_argument("--description", default="")
        parser.add_argument("--user", help="Username the job is recorded under (default: none, the system).")

    def handle(self, path, description, user, **options):
        owner = None
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"No user named {user!r}.")
        try:
            job = create_import(path, description or f"import_dicom {path}", user=owner, run_inline=True)
        except SourceRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{job.task_id}: importing {job.source_path}")
        job = run_inline(job, user=owner, on_progress=self.progress)
        counts = job.counts()
        self.stderr.write("")
        self.stdout.write(", ".join(f"{key} {value}" for key, value in counts.items()))
        for error in job.errors(limit=50):
            self.stdout.write(f"  failed: {error['file']}: {error['reason']}")
        if counts["failed_files"] > 50:
            self.stdout.write(f"  ... {counts['failed_files'] - 50} more (admin, or GET /api/imports/{job.task_id}/status)")
        self.stdout.write(f"{job.task_id}: {job.status}")
        if job.status not in ("succeeded", "partial"):
            sys.exit(1)

    def progress(self, job):
        counts = job.counts()
        total = counts["total_files_scanned"]
        done = counts["new_images_uploaded"] + counts["duplicate_images_skipped"] + counts["failed_files"]
        filled = int(BAR_WIDTH * done / total) if total else 0
        self.stderr.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} files, "
                          f"{counts['new_images_uploaded']} new, {counts['duplicate_images_skipped']} duplicate, "
                          f"{counts['failed_files']} failed", ending="")
        self.stderr.flush()
