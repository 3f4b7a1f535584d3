"""Where catalogued files may lie: the data folders (downloads, with received/ under it, and photos) and
the import roots. A row pointing anywhere else is never written, and never served."""
from __future__ import annotations

import os
import stat
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


class Confinement:
    """`inside` for many files at once (a study's hundreds): the roots resolved once, each folder once,
    a file's own name resolved only when it is a link; it must end at a regular file inside the roots."""

    def __init__(self):
        self.roots = catalog_roots()
        self.folders: dict[str, str | None] = {}

    def regular_file(self, path: str) -> tuple[str, int] | None:
        """(the real path, its size) when `path` is a regular file inside the roots, else None."""
        if not os.path.isabs(path) or paths.control_character(path):
            return None
        parent, name = os.path.split(path)
        if parent not in self.folders:
            real = os.path.realpath(parent)
            self.folders[parent] = real if paths.within(Path(real), self.roots) else None
        real = self.folders[parent]
        if real is None or name in ("", ".", ".."):
            return None
        full = os.path.join(real, name)
        try:
            status = os.lstat(full)
            if stat.S_ISLNK(status.st_mode):  # (an imported file may be a link inside the import roots)
                full = os.path.realpath(full)
                if not paths.within(Path(full), self.roots):
                    return None
                status = os.stat(full)
        except OSError:
            return None
        return (full, status.st_size) if stat.S_ISREG(status.st_mode) else None
