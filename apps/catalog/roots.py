"""Where catalogued files may lie: the data folders (downloads, with received/ under it, and photos) and
the import roots. A row pointing anywhere else is never written, and never served."""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from apps.dicom import paths


def catalog_roots() -> list[Path]:
    roots = [settings.DOWNLOADS_DIR, settings.PHOTOS_DIR, *settings.IMPORT_ROOTS]
    return paths.resolved_roots(roots)


def inside(path: str | os.PathLike) -> Path | None:
    """The resolved path when it lies inside the catalog's roots, else None."""
    try:
        return paths.confine(path, catalog_roots(), what="catalogued file", must_exist=False)
    except paths.PathRefused:
        return None
