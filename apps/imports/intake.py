"""Starting an import, shared by the API, the admin page and `manage.py import_dicom`."""
from __future__ import annotations

from django.db import transaction

from apps.audit import record
from apps.imports.models import ImportItem, ImportJob
from apps.imports.scan import resolve_source


def create_import(source_path: str, description: str = "", *, user=None, run_inline: bool = False) -> ImportJob:
    """A job with its scan item, not yet queued. Raises SourceRefused for a folder outside IMPORT_ROOTS."""
    source = resolve_source(source_path)
    with transaction.atomic():
        job = ImportJob.objects.create(source_path=str(source), description=description[:200], created_by=user,
                                       run_inline=run_inline)
        ImportItem.objects.create(job=job, kind=ImportItem.Kind.SCAN, number=0)
    record(user, "import.created", job, source_path=str(source))
    return job


def start_import(source_path: str, description: str = "", *, user=None) -> ImportJob:
    """Create the job and queue its scan for the workers."""
    job = create_import(source_path, description, user=user)
    job.start(user)
    return job
