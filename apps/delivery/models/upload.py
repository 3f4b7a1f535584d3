"""The receiving end's uploads (tus 1.0.0 resources at /api/uploads/<id>): bytes land in
UPLOADS_DIR/<id>.part at the offsets the client names. Everything an account sends lands in its own
folder, DOWNLOADS_DIR/received/<account>/ (never among retrieved files or another account's): a
finished zip is unpacked there by a worker (off the web request: apps/delivery/receiving.py), keeping
its layout; a finished single file is placed at <that folder>/<filename>. Nothing already there is
ever replaced (apps/delivery/bundle.py)."""
from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django_q.tasks import async_task

from apps.catalog.filing import catalog_files
from apps.delivery.bundle import (
    CHUNK_CHECKSUMS,
    SAFE_COMPONENT,
    BundleRefused,
    check_placement,
    check_relative_path,
    file_sha1,
    place_file,
    unpack,
)
from apps.jobs import diskspace

READ_BLOCK = 1024 * 1024

class ChunkRefused(Exception):
    """A PATCH the protocol says no to; `status` is the HTTP answer (409, 460, 400...)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def space_problem(*, last: bool) -> str | None:
    """Why a chunk must not be written now: the uploads folder below its MIN_FREE_GB floor (or, for the last
    chunk, the downloads folder it is placed or unpacked into); None when there is room."""
    short = diskspace.shortages(("uploads", "downloads") if last else ("uploads",))
    for found in short:
        diskspace.alert_low_space(found)
    return "; ".join(f"{found.folder}: {found.describe()}" for found in short) or None


class Upload(models.Model):
    class State(models.TextChoices):
        RECEIVING = "receiving"
        UNPACKING = "unpacking"  # a complete zip, waiting for (or in) a worker
        UNPACKED = "unpacked"  # a zip, unpacked into the account's received folder
        STORED = "stored"  # one file, placed into the account's received folder
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    filename = models.CharField(max_length=500)
    metadata = models.JSONField(default=dict, blank=True)
    length = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RECEIVING)
    error = models.TextField(blank=True)
    verified = models.BigIntegerField(default=0, help_text="Bytes from the start that arrived in chunks whose "
                                      "Upload-Checksum (sha1) matched.")
    sha1 = models.CharField(max_length=40, blank=True, help_text="Of the whole file, once complete, when not "
                            "every byte was verified by chunk checksums.")
    files = models.PositiveIntegerField(default=0, help_text="Files delivered into the account's received folder "
                                        "(including those already there with the same bytes).")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.id} {self.filename}"

    def save(self, *args, **kwargs):
        if self.expires_at is None:
            self.expires_at = self.next_expiry()
        super().save(*args, **kwargs)

    @staticmethod
    def next_expiry():
        """An upload expires this long after its last chunk (so one in use never does)."""
        return timezone.now() + timedelta(hours=settings.UPLOAD_EXPIRE_HOURS)

    @property
    def data_path(self) -> Path:
        return Path(settings.UPLOADS_DIR) / f"{self.id}.part"

    @property
    def expired(self) -> bool:
        return self.state == self.State.RECEIVING and self.expires_at <= timezone.now()

    @staticmethod
    def received_folder(user) -> Path:
        """DOWNLOADS_DIR/received/<account>: the user name when it is a plain folder name, else `~<id>`
        (a user name never holds `~`, so two accounts never share a folder)."""
        name = user.get_username()
        folder = name if SAFE_COMPONENT.match(name) else f"~{user.pk}"
        return Path(settings.DOWNLOADS_DIR) / "received" / folder

    @property
    def destination(self) -> Path:
        return self.received_folder(self.created_by)

    @property
    def is_zip(self) -> bool:
        return self.filename.lower().endswith(".zip")

    @staticmethod
    def check_filename(name: str) -> str:
        """The name must be a plain relative path (it decides where the file lands)."""
        return str(check_relative_path(name))

    def check_destination(self) -> None:
        """BundleRefused when a single file of this name could never land (a folder there, or a file
        where its folder would be): said at creation, before any byte is sent."""
        if not self.is_zip:
            check_placement(self.destination, self.filename)

    def writable_problem(self) -> str | None:
        """Why the account's received folder cannot take files now (our disk), or None."""
        try:
            self.destination.mkdir(parents=True, exist_ok=True)
            probe = self.destination / f".probe-{uuid.uuid4().hex}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            return f"the receiving portal cannot write into its downloads folder ({exc.strerror or exc})"
        return None

    def append(self, stream, offset: int, count: int, checksum: tuple[str, str] | None) -> int:
        """Write `count` bytes read from `stream` at `offset`. With a checksum the chunk is kept whole or
        not at all; without one, what arrived before a cut connection is kept (tus: store as much as
        possible). Returns the new offset; finishes the upload when its last byte arrived."""
        if offset != self.offset:
            raise ChunkRefused(409, f"Upload-Offset {offset} does not match the upload's offset {self.offset}.")
        if offset + count > self.length:
            raise ChunkRefused(400, f"{count} bytes at offset {offset} would pass Upload-Length {self.length}.")
        low = space_problem(last=offset + count == self.length)
        if low:
            raise ChunkRefused(507, f"the receiving portal is short of disk space ({low}); nothing of this chunk "
                                    f"was kept, the upload stays at offset {offset}: send it again later.")
        digest = CHUNK_CHECKSUMS[checksum[0]]() if checksum else None
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with open(self.data_path, "r+b" if self.data_path.exists() else "w+b") as out:
            out.seek(offset)
            while written < count:
                try:
                    block = stream.read(min(READ_BLOCK, count - written))
                except OSError:  # the client went away mid-body
                    block = b""
                if not block:
                    break
                out.write(block)
                written += len(block)
                if digest:
                    digest.update(block)
            if digest and (written < count or base64.b64encode(digest.digest()).decode() != checksum[1]):
                out.truncate(offset)
                if written < count:
                    raise ChunkRefused(400, f"the chunk ended after {written} of {count} bytes; it was dropped")
                raise ChunkRefused(460, "Upload-Checksum does not match the chunk; it was dropped.")
            out.truncate(offset + written)
            problem = self.writable_problem() if offset + written == self.length else None
            if problem:  # the last bytes are dropped: the upload stays resumable from `offset`
                out.truncate(offset)
                raise ChunkRefused(503, f"{problem}; the last chunk was not kept, the upload stays at offset "
                                        f"{offset}: send it again later.")
        verified = self.verified + written if digest and self.verified == offset else self.verified
        moved = type(self).objects.filter(pk=self.pk, offset=offset, state=self.State.RECEIVING).update(
            offset=offset + written, verified=verified, expires_at=self.next_expiry())
        if not moved:
            raise ChunkRefused(409, "Another request moved this upload's offset meanwhile.")
        self.offset, self.verified = offset + written, verified
        if self.offset == self.length:
            self.finish()
        return self.offset

    def finish(self) -> None:
        """The last byte arrived: a single file is placed now (a rename's work); a zip is handed to a
        worker (its unpacking may take minutes and must not hold a web thread) and shows "unpacking"."""
        if self.verified < self.length:  # some bytes came without a checksum: hash the whole file
            self.sha1 = file_sha1(self.data_path)
        self.completed_at = timezone.now()
        if not self.is_zip:
            self.save(update_fields=["sha1", "completed_at"])
            self.settle()
            return
        self.state = self.State.UNPACKING
        self.expires_at = self.completed_at  # while unpacking: the worker's lease (free to take from now)
        self.save(update_fields=["sha1", "state", "completed_at", "expires_at"])
        self.queue_unpacking()

    def queue_unpacking(self) -> None:
        pk = str(self.pk)
        transaction.on_commit(lambda: async_task("apps.delivery.receiving.unpack_upload", pk,
                                                 group="delivery: unpack uploads"))

    def unpack_limit(self) -> int:
        """The most a zip of this length may unpack to (settings UPLOAD_MAX_UNPACK_FACTOR, _UNPACKED_BYTES)."""
        return int(min(settings.UPLOAD_MAX_UNPACKED_BYTES, settings.UPLOAD_MAX_UNPACK_FACTOR * max(self.length, 1)))

    def settle(self) -> None:
        """Unpack or place the complete file into the account's folder. A refused file (or a disk that
        refused it) writes nothing there and leaves the reason in `error`."""
        placed = []
        try:
            if self.is_zip:
                unpacked = unpack(self.data_path, self.destination, max_bytes=self.unpack_limit(),
                                  max_ratio=settings.UPLOAD_MAX_ENTRY_RATIO)
                self.files, self.state = len(unpacked.files), self.State.UNPACKED
                placed = [self.destination / name for name in unpacked.files]
                if unpacked.already:
                    self.error = f"{len(unpacked.already)} of the files were already here with the same bytes"
            else:
                if not place_file(self.data_path, self.destination, self.filename):
                    self.error = f"{self.filename} was already here with the same bytes"
                self.files, self.state = 1, self.State.STORED
                placed = [self.destination / self.check_filename(self.filename)]
        except BundleRefused as exc:
            self.state, self.error = self.State.FAILED, f"{self.filename}: {exc}. Nothing of it was written."
        except OSError as exc:
            self.state, self.error = self.State.FAILED, (
                f"{self.filename}: the receiving portal could not write it ({exc.strerror or exc}). "
                "Nothing of it was written.")
        self.data_path.unlink(missing_ok=True)
        with transaction.atomic():  # the catalog holds what landed in the account's folder
            if placed:
                catalog_files(placed, source="received", job=self, owner=self.created_by_id)
            self.save(update_fields=["state", "error", "files"])

    def outcome(self) -> dict:
        """What the sender reads before it deletes anything."""
        return {"id": str(self.id), "filename": self.filename, "length": self.length, "offset": self.offset,
                "verified": self.verified, "sha1": self.sha1, "state": "expired" if self.expired else self.state,
                "files": self.files, "error": self.error, "expires_at": self.expires_at,
                "completed_at": self.completed_at}

    def discard(self) -> None:
        self.data_path.unlink(missing_ok=True)
        self.delete()
