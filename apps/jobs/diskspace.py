"""Free space on the data folders. Each folder has a floor, MIN_FREE_GB (or MIN_FREE_GB_<FOLDER> for one of
them; 0 turns the floor off): below it
  - workers start no item that writes there: the item waits, its job saying "Waiting: 3.1 GB free on
    /data/staging, 10 GB required (MIN_FREE_GB_STAGING)." (hold(), a check the runner asks after its claim,
    apps/jobs/registry.add_check, as it asks about pauses and windows); the minute sweep (holds.wake) lets
    them be claimed again, so the work continues by itself once space returns;
  - /healthz answers "degraded" naming the folder (apps/core/health.py);
  - operators are e-mailed, once per folder and hour (alert_low_space -> apps.notify's alert_operators);
  - the receiver refuses the first instance of a new move "out of resources" (apps/retrieval/receiving.py).
An item names the folders its work writes to with JobItem.writes_to(). GB and MB are 10**9 and 10**6 bytes,
as `df -H` and the dashboard count them."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from apps.jobs.holds import Hold
from apps.notify.operators import alert_operators

log = logging.getLogger("apps.jobs.disk")
GB = 10 ** 9
MB = 10 ** 6
# The data folders with a floor, and the setting that places each.
FOLDERS = {"downloads": "DOWNLOADS_DIR", "staging": "STAGING_DIR", "uploads": "UPLOADS_DIR",
           "photos": "PHOTOS_DIR", "imports": "IMPORT_JPG_DIR"}
ALERT_EVERY = 3600.0  # seconds between two alerts about one folder from one process


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path` (or, while `path` does
    not exist yet, its nearest existing parent). Tests replace it or mount a small tmpfs."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def folder_path(folder: str) -> Path:
    return Path(getattr(settings, FOLDERS[folder]))


def required_bytes(folder: str) -> int:
    floors = getattr(settings, "MIN_FREE_GB_BY_FOLDER", {}) or {}
    return int(float(floors.get(folder, settings.MIN_FREE_GB)) * GB)


def setting_name(folder: str) -> str:
    """The setting that gives the folder its floor, for messages that tell an operator what to change."""
    floors = getattr(settings, "MIN_FREE_GB_BY_FOLDER", {}) or {}
    return f"MIN_FREE_GB_{folder.upper()}" if folder in floors else "MIN_FREE_GB"


def size(count: int) -> str:
    """3.1 GB, 10 GB, 512 MB: one decimal, none when it is .0."""
    value, unit = (count / GB, "GB") if count >= GB else (count / MB, "MB")
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


@dataclass(frozen=True)
class Shortage:
    folder: str
    path: Path
    free: int
    required: int

    def describe(self) -> str:
        return (f"{size(self.free)} free on {self.path}, {size(self.required)} required "
                f"({setting_name(self.folder)})")

    def reason(self) -> str:
        return f"Waiting: {self.describe()}."


def shortage(folder: str) -> Shortage | None:
    """The folder's shortage, or None when it has its floor free (or no floor)."""
    required = required_bytes(folder)
    if required <= 0:
        return None
    path = folder_path(folder)
    try:
        free = free_bytes(path)
    except OSError as exc:  # a folder we cannot even stat is no place to write to
        log.error("cannot read the free space of the %s folder: %s", folder, exc.strerror or exc)
        free = 0
    return Shortage(folder, path, free, required) if free < required else None


def shortages(folders=None) -> list[Shortage]:
    return [found for folder in (folders or FOLDERS) if (found := shortage(folder)) is not None]


def hold(item) -> Hold | None:
    """The runner's check: an item whose work writes to a folder below its floor waits, and with it the
    job's other pending items (they write to the same folders)."""
    for folder in item.writes_to():
        found = shortage(folder)
        if found is not None:
            alert_low_space(found)
            return Hold(found.reason())
    return None


def health() -> str:
    """For /healthz: the folders below their floor in words ("" when none)."""
    return "; ".join(f"{found.folder}: {found.describe()}" for found in shortages())


_alerted: dict[str, float] = {}
_alert_lock = threading.Lock()


def alert_low_space(found: Shortage) -> None:
    """Tell the operators a data folder is below its floor: logged and mailed once per folder per ALERT_EVERY
    from this process (the mail's own throttle makes it one per hour across processes). The words name the
    folder and sizes only, never a patient."""
    with _alert_lock:
        last = _alerted.get(found.folder)
        if last is not None and time.monotonic() - last < ALERT_EVERY:
            return
        _alerted[found.folder] = time.monotonic()
    log.warning("low disk space: %s folder has %s; work writing there waits", found.folder, found.describe())
    notify_operators(f"disk-low:{found.folder}", f"Low disk space on the {found.folder} folder",
                     f"The {found.folder} folder has {found.describe()}. Work that writes there waits until "
                     "space is freed, and then continues by itself; the receiver refuses new moves meanwhile.")


def notify_operators(cause: str, subject: str, body: str) -> None:
    """Mail the operators group; a failure to mail is logged, never raised into the work that noticed."""
    try:
        alert_operators(cause, subject, body)
    except Exception:
        log.exception("cannot alert the operators about %s", cause)


def watch() -> int:
    """The minute schedule: alert for every folder below its floor (a receiver or a request may be the
    only writer, with no worker asking). Returns how many folders are short."""
    found = shortages()
    for each in found:
        alert_low_space(each)
    return len(found)
