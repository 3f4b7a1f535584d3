"""Paths users give (a folder to send, an inbox, its archive) must resolve inside IMPORT_ROOTS:
apps/dicom/paths.py decides it, with the roots and the words of this app."""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from apps.dicom import paths
from apps.dicom.paths import PathRefused as OutsideRoots  # noqa: F401 (the name callers catch)

ROOTS_NAME = "IMPORT_ROOTS"


def import_roots() -> list[Path]:
    return paths.resolved_roots(settings.IMPORT_ROOTS)


def inside(path: Path, root: Path) -> bool:
    return paths.within(path, [root])


def confined(path: str | os.PathLike, *, what: str = "path") -> Path:
    """The resolved path, or OutsideRoots saying why it is refused."""
    return paths.confine(path, import_roots(), what=what, roots_name=ROOTS_NAME)


def root_of(path: Path) -> Path | None:
    """The configured root a resolved path lies in."""
    return next((root for root in import_roots() if inside(path, root)), None)
