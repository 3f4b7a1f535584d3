"""The imported files, for `catalog rebuild`: each image an import filed, where it lies in the import roots."""
from apps.catalog.sources import Claim
from apps.imports.models import ImportedImage

JOB = "imports.importjob"


def claims():
    rows = ImportedImage.objects.order_by("pk").values_list("source_path", "job_id", "job__created_by_id")
    for path, job_id, owner_id in rows.iterator():
        yield Claim(path, "imported", JOB if job_id else "", str(job_id or ""), owner_id)
