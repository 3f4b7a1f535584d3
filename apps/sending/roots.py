"""Paths users give (a folder to send, an inbox, its archive) must resolve inside IMPORT_ROOTS:
symlinks and `..` are resolved first, so neither can lead out of a configured root."""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings


class OutsideRoots(ValueError):
    pass


def import_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.IMPORT_ROOTS]


def inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def confined(path: str | os.PathLike, *, what: str = "path") -> Path:
    """The resolved path, or OutsideRoots saying why it is refused."""
    roots = import_roots()
    if not roots:
        raise OutsideRoots(f"No IMPORT_ROOTS are configured, so no {what} on the server can be used.")
    if not str(path).strip() or not Path(path).is_absolute():
        raise OutsideRoots(f"The {what} must be an absolute path inside IMPORT_ROOTS.")
    resolved = Path(path).resolve()
    if not any(inside(resolved, root) for root in roots):
        raise OutsideRoots(f"The {what} {path} is outside IMPORT_ROOTS ({', '.join(map(str, roots))}).")
    return resolved


def root_of(path: Path) -> Path | None:
    """The configured root a resolved path lies in."""
    return next((root for root in import_roots() if inside(path, root)), None)
