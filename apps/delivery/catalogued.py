"""The received files, for `catalog rebuild`: DOWNLOADS_DIR/received/<account>/, owned by that account;
what STOW-RS stored (its dicomweb/ folder) as "stored". Which upload brought a file is kept from the
catalog's row when it has one (a zip's members are not listed on the upload)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from apps.catalog.sources import Claim
from apps.dicom.paths import Skipped, walk


def account(folder: str):
    users = get_user_model().objects
    if folder.startswith("~") and folder[1:].isdigit():
        return users.filter(pk=int(folder[1:])).values_list("pk", flat=True).first()
    return users.filter(**{users.model.USERNAME_FIELD: folder}).values_list("pk", flat=True).first()


def claims():
    root = (Path(settings.DOWNLOADS_DIR) / "received").resolve()
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
            continue
        owner = account(folder.name)
        if owner is None:
            continue
        for found in walk(folder, [folder], skip_hidden=True):
            if isinstance(found, Skipped):
                continue
            stored = found.relative_to(folder).parts[0] == "dicomweb"
            yield Claim(str(found.resolve()), "stored" if stored else "received", "", "", owner)
