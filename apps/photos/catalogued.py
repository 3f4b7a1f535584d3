"""The photos kept after sending, for `catalog rebuild`: the DICOM files of each upload that succeeded
and keeps its files."""
from pathlib import Path

from apps.catalog.sources import Claim
from apps.photos.models import PhotoUpload

JOB = "photos.photoupload"


def claims():
    kept = PhotoUpload.objects.filter(keep_files=True, status="succeeded").exclude(folder="")
    for pk, folder, owner_id in kept.values_list("pk", "folder", "created_by_id").iterator():
        for path in sorted(Path(folder).glob("*.dcm")):
            if path.is_file() and not path.is_symlink():
                yield Claim(str(path.resolve()), "photo", JOB, str(pk), owner_id)
