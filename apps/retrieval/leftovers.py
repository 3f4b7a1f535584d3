"""What a retrieval row makes sure of before its first move: its folders can take files, and nothing a
dead run left (move keys, staged originals, C-GET and holding folders) is still there to be filed or to
linger on disk."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from django.utils import timezone

from apps.dicom.staging import MoveStaging
from apps.jobs.errors import ItemFailed
from apps.retrieval.holding import HOLD
from apps.retrieval.models import MoveKey

log = logging.getLogger(__name__)


def require_writable(folder: Path, what: str) -> None:
    """Fail the row before anything moves when `folder` cannot take files, naming it and the OS error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        log.info("the %s %s is not writable: %s", what, folder, exc.strerror or exc)
        raise ItemFailed(f"The {what} {folder} is not writable ({exc.strerror or exc}). Fix its permissions "
                         "or free space, then retry the row; nothing was retrieved.") from None


def clear_earlier_runs(item, staging: MoveStaging, local_ae_title: str) -> None:
    """A run of this row that died (a killed worker, a reclaimed lease) leaves its move keys and staging
    behind; only one run of a row is current, so this one takes them away: the receiver refuses what
    still arrives for them, and nothing of theirs is ever filed."""
    _drop(MoveKey.objects.filter(item=item), staging, local_ae_title)
    for folder in [*(staging.root / "c-get").glob(f"{item.pk}-*"), *(staging.root / HOLD).glob(f"{item.pk}-*")]:
        staging.remove(folder)


def clear_expired_moves(staging: MoveStaging, local_ae_title: str) -> None:
    """Keys of any row's moves that died with their worker, with their staging folders: what those moves
    staged (originals, of other patients too) does not stay on disk until that row runs again."""
    _drop(MoveKey.objects.filter(expires_at__lt=timezone.now()), staging, local_ae_title)


def _drop(keys, staging: MoveStaging, local_ae_title: str) -> None:
    for key in keys:
        staging.remove(staging.folder(local_ae_title, key.message_id))
        key.delete()
