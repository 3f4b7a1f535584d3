"""Where the receiver puts what a C-MOVE sends us, keyed by the move that asked for it.

A PACS answering our C-MOVE opens its own association to our receiver and C-STOREs each instance
with the Move Originator AE title and Message ID of our request (PS3.7 C.4.2.1.4). Keying the staging
folder by that pair, not by StudyInstanceUID, keeps two moves of one study (two jobs, a retry) apart.

Layout: <root>/<originator AE>/<message id>/<SOPInstanceUID>.dcm ; instances that arrive without
move originator fields (a plain C-STORE) go to <root>/_unsolicited/<calling AE>/.
Files are written to a temporary name then renamed, so a reader never sees half an instance.
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import shutil
import threading
from pathlib import Path

from apps.dicom.errors import InvalidDicomFile
from apps.dicom.staged import (
    VERBATIM,
    MoveSink,
    StagedFile,
    formed,
    make_move_folder,
    write_new,
)

log = logging.getLogger(__name__)
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
AE_SAFE_RE = re.compile(r"[^A-Za-z0-9_-]")
_sequence = itertools.count()


def safe_uid(uid: str) -> str:
    """A UID is digits and dots (PS3.5 9.1); anything else could walk out of the folder."""
    uid = (uid or "").strip().rstrip("\x00")
    if not UID_RE.match(uid) or len(uid) > 64:
        raise InvalidDicomFile(f"'{uid[:80]}' is not a valid DICOM UID")
    return uid


def safe_ae(ae_title: str) -> str:
    return AE_SAFE_RE.sub("_", (ae_title or "").strip()) or "_"


FOLDERS_CACHED = 1024
SCRATCH_SUFFIX = ".deid"


class MoveStaging:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._folders: dict[tuple, Path] = {}  # the receiver asks once per instance: the same few answers

    def folder(self, originator_ae: str | None, message_id: int | None, calling_ae: str = "") -> Path:
        key = (originator_ae, message_id, calling_ae)
        found = self._folders.get(key)
        if found is None:
            if originator_ae and message_id is not None:
                found = self.root / safe_ae(originator_ae) / str(int(message_id))
            else:
                found = self.root / "_unsolicited" / safe_ae(calling_ae)
            if len(self._folders) >= FOLDERS_CACHED:
                self._folders.clear()
            self._folders[key] = found
        return found

    def write(self, folder: Path, sop_instance_uid: str, data, move_folder: Path | None = None) -> Path:
        """Store the bytes (a buffer or a sequence of buffers) exactly as received. The same bytes again
        change nothing; other bytes under a SOP Instance UID already staged are kept apart (write_new)."""
        target = folder / f"{safe_uid(sop_instance_uid)}.dcm"
        return write_new(move_folder or folder, target, data)

    def open(self, folder: Path, sop_instance_uid: str, head, move_folder: Path | None = None) -> StagedFile:
        """write() for a streamed instance: its sink, the head written (see StagedFile)."""
        return StagedFile(move_folder or folder, folder / f"{safe_uid(sop_instance_uid)}.dcm", head)

    @staticmethod
    def scratch(folder: Path) -> Path:
        """The folder beside `folder` where a project's instances are de-identified while the move runs
        (de-identified bytes only); it goes with the staging folder (remove)."""
        return folder.with_name(folder.name + SCRATCH_SUFFIX)

    @staticmethod
    def remove(folder: Path) -> None:
        """Take a staging folder away for good, and its de-identification scratch with it (a worker that
        died mid-study leaves both; the row's next run removes them). It is renamed first, so a write
        still under way in the receiver (answered before it reached the disk) can no longer land in it:
        every path into the old name fails from that moment, and nothing makes the folder again."""
        scratch = MoveStaging.scratch(folder)
        if scratch.is_dir():
            MoveStaging._remove(scratch)
        MoveStaging._remove(folder)

    @staticmethod
    def _remove(folder: Path) -> None:
        gone = folder.with_name(f".removed-{folder.name}-{os.getpid()}-{next(_sequence)}")
        try:
            os.rename(folder, gone)
        except FileNotFoundError:
            return
        except OSError:
            gone = folder  # (not on this file system, say) remove it where it is
        shutil.rmtree(gone, ignore_errors=True)

    @staticmethod
    def writes_over(folder: Path) -> None:
        """A staging folder whose writes are all over and checked (a finished C-GET's; never a receiver's
        move folder, which a late instance may still reach): its ledger has served and goes, so the folder
        holds only what arrived and may become a case folder whole (retrieval's file_into)."""
        (folder / ANSWERED).unlink(missing_ok=True)

    @staticmethod
    def write_failure(folder: Path) -> str | None:
        """Why the receiver could not write instances it had answered for into `folder`, or None."""
        try:
            return (folder / WRITE_FAILED).read_text(errors="replace").strip() or "a write failed"
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"a write failed (and so did reading why: {exc.strerror or exc})"

    @staticmethod
    def unwritten(folder: Path) -> set[str]:
        """What the receiver answered for in `folder` (its ledger, ANSWERED) that is not on disk yet."""
        return MoveStaging.progress(folder)[1]

    @staticmethod
    def instances(folder: Path) -> list[Path]:
        """The complete instances in a staging folder (not the ones still being written)."""
        return [folder / name for name in MoveStaging.progress(folder)[0]]

    @staticmethod
    def progress(folder: Path) -> tuple[list[str], set[str]]:
        """(The names of the complete instances in `folder`, sorted; what the receiver answered for in it
        that is not on disk yet), from one pass over the folder and its subfolders: the retrieval asks
        this every few milliseconds while the receiver's last writes land."""
        try:
            answered = set((folder / ANSWERED).read_text(errors="replace").split())
        except FileNotFoundError:
            answered = set()
        names, present = [], set()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.name.endswith(".dcm"):
                        names.append(entry.name)
                    elif answered and entry.is_dir(follow_symlinks=False):
                        present.update(_files_below(entry.path, entry.name))
        except FileNotFoundError:
            return [], set()
        present.update(names)
        names.sort()
        return names, answered - present


def _files_below(path: str, relative: str) -> list[str]:
    """The .dcm files under `path`, as paths relative to the staging folder (`relative` is `path`'s)."""
    found = []
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                found += _files_below(entry.path, f"{relative}/{entry.name}")
            elif entry.name.endswith(".dcm"):
                found.append(f"{relative}/{entry.name}")
    return found


MOVES_REMEMBERED = 4096
LEDGERS_OPEN = 64  # ledgers of the most recent moves kept open
ANSWERED = ".answered"  # in a move's staging folder: what the receiver answered for, a relative path a line
WRITE_FAILED = ".write-failed"  # in a staging folder: why an instance answered for could not be written


class AnsweredWrites:
    """Staging writes of what a C-MOVE (or C-GET) of ours brings in, each done right after its C-STORE
    answer, on the thread that answered: the PACS sends the next instance while this one goes to disk.

    Only for what a retrieval of ours brings in: the PACS keeps its copy whatever we answer, and the
    retrieval files a study only when every instance it expected is on disk, so an instance answered for
    and then not written (a disk filling up mid-move, a killed receiver) is a shortfall the row reports
    and a retry fetches again, never a silent loss. Instances nobody else keeps a copy of must be written
    before they are answered (MoveStaging.write), and so is the first instance of every move, which makes
    its folder: a staging area that cannot be written at all is answered as such, instance by instance.
    Each instance answered for is noted in its move's ledger (ANSWERED) before the answer, so the
    retrieval knows what is still being written (MoveStaging.unwritten) and waits for it. A failed write
    is recorded in its move's folder (WRITE_FAILED, read by MoveStaging.write_failure) and every later
    instance of that move is refused at once.

    Why on the answering thread and not on a writer thread of the process: the two
    shared the interpreter on a 2-core machine where the PACS needs a core too, and the thread owing the
    PACS its answer kept waiting for the writer (a 200-byte answer took 220-285 us on average, 60 us
    now). Each association writes its own instances, so a slow disk slows that association's PACS down
    instead of queueing a study in memory."""

    def __init__(self):
        self._lock = threading.Lock()
        self._failed: dict[Path, str] = {}
        self._started: dict[Path, None] = {}  # move folders written into, oldest first
        self._ledgers: dict[Path, int] = {}  # move folder -> its open ANSWERED file, least recent first
        self._closed = False

    def after_answer(self, move_folder: Path, folder: Path, sop_instance_uid: str, data, written=None,
                     form=VERBATIM):
        """One instance of the move staged in `move_folder`, to be written into `folder` (the move's or
        one inside it): noted as answered for, and its write returned, to be called once the answer is
        sent (ReceivedInstance.after_answer). The move's first instance is written at once instead (None
        returned). Raises OSError when it, or an earlier write of that move, failed, or the move is over.
        `written()` is called once the write is over (done or failed): `data` is not read after that.
        `form` (Verbatim, or a research project's de-identifying form) is what is written of `data`, made
        after the answer too."""
        target = folder / f"{safe_uid(sop_instance_uid)}.dcm"
        started = self._may_write(move_folder)
        if started:
            self._answered(move_folder, target)
            return functools.partial(self._write, move_folder, target, data, written, form)
        try:
            make_move_folder(move_folder)
            write_new(move_folder, target, formed(form, data))
        except OSError as exc:
            self._fail(move_folder, exc.strerror or str(exc))
            raise
        finally:
            if written is not None:
                written()
        self._start(move_folder)
        self._answered(move_folder, target)
        return None

    def started(self, move_folder: Path) -> bool:
        """Whether the move's first instance was written here (its folder made)."""
        return move_folder in self._started

    def _may_write(self, move_folder: Path) -> bool:
        """Whether the move has begun (its folder made); raises OSError when it may not be written into."""
        with self._lock:
            if move_folder in self._failed:
                raise OSError(f"an earlier instance of this retrieval could not be written: "
                              f"{self._failed[move_folder]}")
            if self._closed:
                raise OSError("the receiver is stopping")
            started = move_folder in self._started
        if started and not move_folder.is_dir():
            raise OSError("this retrieval is over; its staging folder was removed")
        return started

    def take(self, instance, move_folder: Path, folder: Path, form=VERBATIM) -> None:
        """One received instance (wire.received.ReceivedInstance) of a move (C-MOVE or C-GET) into `folder`
        (the move's, or apart in it), in `form`: written right after its answer, or, when it is streamed,
        through its sink as it arrives (and answered once it is in)."""
        if instance.streamed:
            instance.sink = self.stream(move_folder, folder, instance.sop_instance_uid, instance.chunks, form)
        else:
            instance.after_answer = self.after_answer(move_folder, folder, instance.sop_instance_uid,
                                                      instance.chunks, instance.written, form)

    def stream(self, move_folder: Path, folder: Path, sop_instance_uid: str, head, form=VERBATIM):
        """The sink of a streamed instance of the move (see StagedFile): written before it is answered,
        as a move's first instance is, whatever its place in the move."""
        started = self._may_write(move_folder)
        target = folder / f"{safe_uid(sop_instance_uid)}.dcm"
        try:
            if not started:
                make_move_folder(move_folder)
            staged = StagedFile(move_folder, target, head, form, within=move_folder if started else None)
        except OSError as exc:
            self._fail(move_folder, exc.strerror or str(exc))
            raise
        return MoveSink(self, staged)

    def _answered(self, move_folder: Path, target: Path) -> None:
        """Note in the move's ledger (ANSWERED) that `target` (a path below `move_folder`) was answered
        for: one append, no new file. Under the lock, so no other thread closes the ledger meanwhile."""
        line = f"{str(target)[len(str(move_folder)) + 1:]}\n".encode()
        with self._lock:
            fd = self._ledgers.pop(move_folder, None)
            if fd is None:
                fd = os.open(move_folder / ANSWERED, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._ledgers[move_folder] = fd  # the most recent last
            while len(self._ledgers) > LEDGERS_OPEN:
                os.close(self._ledgers.pop(next(iter(self._ledgers))))
            os.write(fd, line)

    def _write(self, move_folder: Path, target: Path, data, written, form=VERBATIM) -> None:
        try:
            if move_folder not in self._failed:
                write_new(move_folder, target, formed(form, data), within=move_folder)
        except FileNotFoundError:
            # The retrieval already took its folder away (it ended, or was canceled): an instance
            # answered late is not kept, and its folder is not made again for nobody to remove.
            log.debug("dropped a late instance for %s", move_folder)
        except OSError as exc:
            self._fail(move_folder, exc.strerror or str(exc))
        except Exception as exc:  # a bug here must cost this retrieval's instance, never the association
            log.exception("staging write failed")
            self._fail(move_folder, type(exc).__name__)
        finally:
            del data
            if written is not None:
                written()

    def close(self) -> None:
        """Refuse what comes after, and close the ledgers."""
        with self._lock:
            self._closed = True
            for fd in self._ledgers.values():
                os.close(fd)
            self._ledgers.clear()

    def __enter__(self) -> "AnsweredWrites":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, move_folder: Path) -> None:
        with self._lock:
            self._started[move_folder] = None
            if len(self._started) > MOVES_REMEMBERED:
                del self._started[next(iter(self._started))]

    def _fail(self, move_folder: Path, reason: str) -> None:
        log.error("cannot write a staged instance into %s: %s", move_folder, reason)
        with self._lock:
            self._failed.setdefault(move_folder, reason)
        try:
            with open(move_folder / WRITE_FAILED, "a") as marker:
                marker.write(reason + "\n")
        except OSError:
            pass  # the folder itself is gone or unwritable: the retrieval still sees instances missing

