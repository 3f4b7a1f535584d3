"""How a staged instance is written: the form a move's instances take (as they came, or de-identified for a
research project, apps/dicom/deid_form.py), and the file a streamed instance goes into as it arrives
(StagedFile, the InstanceSink of wire/received.py). staging.py's writes use both."""
from __future__ import annotations

import errno
import fcntl
import filecmp
import itertools
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger(__name__)
_sequence = itertools.count()
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
DUPLICATE = "foreign/duplicate"  # below a move's folder: a SOP instance sent again with other content


class Withheld(Exception):
    """Raised by a form (below) for an instance it will not pass on as bytes (a research project's
    instance that may show the patient in its pixels, or that cannot be de-identified): staged as a
    placeholder naming the reason (placeholder()), so the instance still counts as arrived."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


PLACEHOLDER = b"PACS-PORTAL-NOT-FILED\n"  # a staged instance's first bytes when it was withheld (never DICOM's)


def placeholder(reason: str) -> bytes:
    return PLACEHOLDER + reason.encode("utf-8", "replace")


class Verbatim:
    """How a move's instances are staged: the form the receiver writes them in, chosen per move. This one
    keeps the bytes as they arrived. A form has `whole(chunks)` (an instance received whole: the chunks to
    write), `head(chunks)` (a streamed instance's file meta and header: the chunks to write before the rest
    streams through unchanged), and `keeps_trailer` (whether elements after the pixel data are kept).
    Either may raise Withheld. The de-identifying form of a research project is apps/dicom/deid_form.py."""

    keeps_trailer = True

    def whole(self, chunks):
        return chunks

    def head(self, chunks):
        return chunks


VERBATIM = Verbatim()


def formed(form, chunks):
    """`chunks` in `form` (whole), or the placeholder of an instance it withholds."""
    try:
        return form.whole(chunks)
    except Withheld as exc:
        return placeholder(exc.reason)


class StagedFile:
    """A streamed instance on its way into `target` (InstanceSink): a temporary file in the target's folder
    takes the head at once (in `form`) and then the rest as it arrives; commit() puts it in place as
    write_new does (never over other bytes: those go apart, under DUPLICATE), discard() removes it. Only
    the instance's header is ever held, whatever its size."""

    def __init__(self, move_folder: Path, target: Path, head, form=VERBATIM, *, within: Path | None = None):
        self.move_folder, self.target, self.within = move_folder, target, within
        self.tmp = target.parent / f".streaming-{os.getpid()}-{next(_sequence)}-{target.name}.part"
        try:
            self.fd = os.open(self.tmp, _CREATE, 0o600)
        except FileNotFoundError:
            _make_folder(target.parent, within)
            self.fd = os.open(self.tmp, _CREATE, 0o600)
        self.keeps_rest, self.keeps_trailer = True, form.keeps_trailer
        try:
            try:
                head = form.head(head)
            except Withheld as exc:  # staged as its placeholder: the rest is dropped as it arrives
                head, self.keeps_rest, self.keeps_trailer = placeholder(exc.reason), False, False
            write_all(self.fd, head)
        except BaseException:
            self.discard()
            raise

    def write(self, data) -> None:
        if self.keeps_rest:
            write_all(self.fd, data)

    def commit(self, trailer: bytes = b"") -> Path:
        """The instance is complete: in place (or apart, when `target` holds other bytes). Returns where."""
        try:
            if trailer and self.keeps_trailer:
                write_all(self.fd, trailer)
            os.close(self.fd)
            self.fd = None
            try:
                os.link(self.tmp, self.target)
                return self.target
            except FileExistsError:
                if filecmp.cmp(self.tmp, self.target, shallow=False):
                    return self.target
            apart = _apart(self.move_folder, self.target)
            _make_folder(apart.parent, self.within or self.move_folder)
            os.link(self.tmp, apart)
            return apart
        finally:
            self.discard()

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.tmp.unlink(missing_ok=True)


def _make_folder(folder: Path, within: Path | None) -> None:
    """`folder` and its missing parents; with `within`, only those below it, which must exist (else
    FileNotFoundError): a folder someone removed is never made again by a write arriving late."""
    if within is None:
        folder.mkdir(parents=True, exist_ok=True)
        return
    below = [folder, *folder.parents][:len(folder.relative_to(within).parts)]
    for part in reversed(below):
        part.mkdir(exist_ok=True)
    if not below and not folder.is_dir():
        raise FileNotFoundError(f"{folder} is gone")


def write_atomically(target: Path, data, *, within: Path | None = None, replace: bool = True) -> bool:
    """`data` (a buffer, or a sequence of buffers) into `target` by a temporary file and a rename: no
    reader (a count, a C-FIND, a C-MOVE) ever sees half an instance. With `within`, only folders below
    it are made (see _make_folder). With `replace=False` an existing `target` is never replaced (a hard
    link, which fails when the name exists, instead of the rename): True when written or when `target`
    already held the same bytes, False when it holds other bytes (then nothing was written).

    This runs once per received instance, so it is plain system calls: the temporary name is unique in
    the process (the process, a sequence number, the target's name), the folder is made only when the
    first open finds it missing, and the bytes go to the file unbuffered. Files are private to the
    portal's user (0600), as tempfile.mkstemp made them."""
    # (plain strings, not Path objects: making the temporary name took more time than opening it)
    folder, name = os.path.split(os.fspath(target))
    tmp = f"{folder}/.incoming-{os.getpid()}-{next(_sequence)}-{name}.part"
    try:
        fd = os.open(tmp, _CREATE, 0o600)
    except FileNotFoundError:
        _make_folder(Path(folder), within)
        fd = os.open(tmp, _CREATE, 0o600)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, target)
            return True
        try:
            os.link(tmp, target)
        except FileExistsError:
            return _holds(target, data)
        finally:
            _unlink(tmp)
        return True
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _holds(path: Path, data) -> bool:
    """Whether the file at `path` is exactly `data` (read only when an instance arrives a second time, a
    megabyte at a time: the copy staged first may be a streamed instance of gigabytes)."""
    views = [memoryview(chunk).cast("B") for chunk in (data if isinstance(data, (list, tuple)) else (data,))]
    try:
        with open(path, "rb") as staged:
            if os.fstat(staged.fileno()).st_size != sum(len(view) for view in views):
                return False
            for view in views:
                for at in range(0, len(view), 1 << 20):
                    piece = view[at:at + (1 << 20)]
                    if staged.read(len(piece)) != piece:
                        return False
            return True
    except OSError:
        return False


def write_new(move_folder: Path, target: Path, data, *, within: Path | None = None) -> Path:
    """`data` into `target` unless it already holds other bytes: then beside the move's instances, under
    DUPLICATE, where the retrieval finds it and quarantines the study. An instance staged is never
    replaced by a second arrival. Returns where it was written."""
    if write_atomically(target, data, within=within, replace=False):
        return target
    apart = _apart(move_folder, target)
    write_atomically(apart, data, within=within or move_folder)
    return apart


def _apart(move_folder: Path, target: Path) -> Path:
    """Where a second copy of `target` with other bytes is kept, under the move's DUPLICATE folder."""
    log.debug("kept a second, different copy of %s apart", target.name)
    return move_folder / DUPLICATE / f"{target.stem}~{os.getpid()}-{next(_sequence)}.dcm"


def make_move_folder(move_folder: Path) -> None:
    """A move's (or C-GET's) staging folder, made when its first instance arrives, in a folder marked as
    the top of directory hierarchies (`chattr +T`): ext4's Orlov allocator then starts each move folder in
    a block group of its own with free inodes to spare, and the move's files get their inodes there.
    Why: ext4 without a journal passes over every inode freed in the last minute (five while its table is
    unwritten) for each file it creates, and searches from the group's start each time: right after an
    earlier study's files or a retention run's deletions, creating a file in their group cost 0.3-1.1 ms
    instead of 50-70 us (measured here: 2,000 files made in a new folder right after 2,000 were deleted,
    3 rounds each way). A file system without the flag (or a folder not ours to mark) keeps its own
    placement: the folder is made all the same."""
    parent = move_folder.parent
    try:
        parent.mkdir(parents=True)
    except FileExistsError:
        pass  # (a file there, not a folder: making the move folder says so)
    _mark_top_of_hierarchy(parent)
    move_folder.mkdir(exist_ok=True)


_LONG = struct.calcsize("l")
FS_IOC_GETFLAGS = (2 << 30) | (_LONG << 16) | (ord("f") << 8) | 1  # _IOR('f', 1, long), linux/fs.h
FS_IOC_SETFLAGS = (1 << 30) | (_LONG << 16) | (ord("f") << 8) | 2  # _IOW('f', 2, long)
FS_TOPDIR_FL = 0x00020000


def _mark_top_of_hierarchy(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        # (the kernel reads and writes an int through the long-sized argument)
        flags = struct.unpack_from("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(_LONG)))[0]
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_TOPDIR_FL).ljust(_LONG, b"\0"))
    except OSError:
        pass  # not ext2/3/4, or not allowed: the placement is the file system's own
    finally:
        os.close(fd)


def write_all(fd: int, data) -> None:
    """`data`: one buffer, or a sequence of them (a ReceivedInstance's chunks) written with one writev."""
    views = [memoryview(chunk).cast("B") for chunk in (data if isinstance(data, (list, tuple)) else (data,))]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views:
            views[0] = views[0][written:]


class MoveSink:
    """A streamed instance of a move (AnsweredWrites.stream): a failure to write it fails the move as a
    failed write after the answer does, and once it is in, the move counts as begun."""

    def __init__(self, writes, staged: StagedFile):
        self.writes, self.staged = writes, staged

    def write(self, data) -> None:
        try:
            self.staged.write(data)
        except OSError as exc:
            self.writes._fail(self.staged.move_folder, exc.strerror or str(exc))
            raise

    def commit(self, trailer: bytes = b"") -> None:
        move_folder = self.staged.move_folder
        try:
            self.staged.commit(trailer)
        except FileNotFoundError:
            raise OSError("this retrieval is over; its staging folder was removed") from None
        except OSError as exc:
            self.writes._fail(move_folder, exc.strerror or str(exc))
            raise
        self.writes._start(move_folder)

    def discard(self) -> None:
        self.staged.discard()


class QuotaSink:
    """A streamed instance kept under a quota (the receiver's for plain C-STOREs: `take(size) -> bool`,
    `give_back(size)`): each part taken from it as it arrives; over it, the write fails (the instance is
    refused 0xA700 and discarded) and what it had taken is given back."""

    def __init__(self, sink, quota, taken: int):
        self.sink, self.quota, self.taken = sink, quota, taken

    def write(self, data) -> None:
        size = len(memoryview(data).cast("B"))
        if not self.quota.take(size):
            raise OSError(errno.EDQUOT, "the quota for unsolicited instances is used up")
        self.taken += size
        self.sink.write(data)

    def commit(self, trailer: bytes = b"") -> None:
        self.sink.commit(trailer)

    def discard(self) -> None:
        self.sink.discard()
        self.quota.give_back(self.taken)
        self.taken = 0
