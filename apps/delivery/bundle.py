"""Zip bundles of delivered cases: the names they may hold, and their safe unpacking on the receiving
end. Django-free. (The sending end produces them: apps/delivery/zipstream.py.)

Unpacking trusts nothing: every entry name must be a relative path of plain components (letters,
digits, `._~-`, none starting with a dot, no `..`, no absolute path, no backslash, no symlink), the
sizes are capped in total and per entry against the compressed size (zip bombs); one bad entry fails
the whole bundle before a single byte is written. Entries are extracted into a hidden folder inside the
destination first and linked into place only when all of them were read, their CRCs checked and none
clashes with what is already there: a file is never replaced (the same bytes count as delivered), a
folder never takes a file's place nor the reverse. A failure undoes what was placed: all or nothing."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$")
MAX_DEPTH = 8
COPY_BUFFER = 1024 * 1024


class BundleRefused(Exception):
    """The bundle (or an uploaded file name) is unsafe or broken; nothing was written."""


@dataclass
class Unpacked:
    files: list[str]  # relative paths delivered, in bundle order
    bytes: int
    already: list[str] = field(default_factory=list)  # of those, the ones that were already there, same bytes


def file_sha1(path: Path) -> str:
    """Hex sha1 of a file, read in 1 MB blocks."""
    digest = hashlib.sha1()
    with open(path, "rb") as fp:
        while block := fp.read(COPY_BUFFER):
            digest.update(block)
    return digest.hexdigest()


class Crc32:
    """CRC-32 with hashlib's update/digest (4 bytes, big-endian): a chunk checksum at zlib's pace, about
    3x sha1's here, for two portals that both offer it; sha1 stays the one every tus server has."""

    def __init__(self):
        self.value = 0

    def update(self, data) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


CHUNK_CHECKSUMS = {"crc32": Crc32, "sha1": hashlib.sha1}  # tus Upload-Checksum algorithms, preferred first


def check_relative_path(name: str) -> PurePosixPath:
    """The name as a safe relative path, or BundleRefused saying what is wrong with it."""
    if not name or "\\" in name or "\x00" in name:
        raise BundleRefused(f"entry {name!r}: empty, or contains a backslash or NUL")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleRefused(f"entry {name!r}: absolute path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise BundleRefused(f"entry {name!r}: climbs out with '..'")
    if len(path.parts) > MAX_DEPTH:
        raise BundleRefused(f"entry {name!r}: nested deeper than {MAX_DEPTH} folders")
    bad = [part for part in path.parts if not SAFE_COMPONENT.match(part)]
    if bad:
        raise BundleRefused(f"entry {name!r}: {bad[0]!r} is not a plain file or folder name")
    return path


RATIO_FLOOR = 64 * 1024  # entries smaller than this are not held to the ratio (a tiny blank file compresses well)


def _checked_members(bundle: zipfile.ZipFile, max_bytes: int, max_ratio: float | None) -> list[zipfile.ZipInfo]:
    """The bundle's files, every name, kind and size checked before anything is written. A folder entry
    or file under a name another entry uses as a file is refused too (nothing can land there)."""
    members, folders, total = [], set(), 0
    for info in bundle.infolist():
        if info.is_dir():
            folders.add(check_relative_path(info.filename.rstrip("/")).as_posix())
            continue
        check_relative_path(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind != stat.S_IFREG:
            raise BundleRefused(f"entry {info.filename!r}: not a regular file (a link or device)")
        if info.flag_bits & 0x1:
            raise BundleRefused(f"entry {info.filename!r}: encrypted")
        if max_ratio and info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(info.compress_size, 1):
            raise BundleRefused(f"entry {info.filename!r}: unpacks to {info.file_size} bytes, "
                                f"{info.file_size / max(info.compress_size, 1):.0f} times its compressed size "
                                f"(the limit is {max_ratio:g} times): refused as a zip bomb")
        total += info.file_size
        if total > max_bytes:
            raise BundleRefused(f"the bundle unpacks to more than {max_bytes} bytes (the limit for this upload): "
                                "refused as a zip bomb")
        members.append(info)
    names = [m.filename for m in members]
    if len(set(names)) != len(names):
        raise BundleRefused("the bundle names the same file twice")
    files = set(names)
    for name in [*names, *folders]:
        for parent in PurePosixPath(name).parents:
            if parent.as_posix() in files:
                raise BundleRefused(f"entry {name!r}: lies under {parent.as_posix()!r}, which the bundle gives as a file")
    if folders & files:
        raise BundleRefused(f"entry {sorted(folders & files)[0]!r}: given as both a file and a folder")
    return members


def _clash(destination: Path, name: str, incoming: Path | None) -> str | None:
    """What is already at destination/name: None (nothing), "same" (a file with incoming's bytes), or
    BundleRefused naming the clash: a file where a folder is needed, a folder or other bytes where the
    file would go. `incoming` None: a folder is wanted there."""
    path = destination
    parts = PurePosixPath(name).parts
    for depth, part in enumerate(parts, start=1):
        path = path / part
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        last = depth == len(parts)
        if stat.S_ISLNK(info.st_mode):
            raise BundleRefused(f"{'/'.join(parts[:depth])!r} is a symbolic link here; nothing is written through it")
        if not last or incoming is None:
            if not stat.S_ISDIR(info.st_mode):
                raise BundleRefused(f"entry {name!r}: {'/'.join(parts[:depth])!r} is already a file here, "
                                    "not a folder")
            continue
        if stat.S_ISDIR(info.st_mode):
            raise BundleRefused(f"entry {name!r}: a folder of that name is already here")
        if not stat.S_ISREG(info.st_mode):
            raise BundleRefused(f"entry {name!r}: something other than a file is already here")
        if info.st_size == incoming.stat().st_size and file_sha1(path) == file_sha1(incoming):
            return "same"
        raise BundleRefused(f"{name} is already here with other content; it is never replaced")
    return None


class _Placement:
    """Files moved into place without ever replacing one, undone as a whole if any step fails."""

    def __init__(self, destination: Path):
        self.destination = destination
        self.placed: list[Path] = []
        self.made: list[Path] = []

    def folder(self, relative: PurePosixPath) -> None:
        path = self.destination
        for part in relative.parts:
            path = path / part
            try:
                path.mkdir()
                self.made.append(path)
            except FileExistsError:
                if not path.is_dir() or path.is_symlink():
                    raise BundleRefused(f"{path.relative_to(self.destination).as_posix()!r} is already a file "
                                        "here, not a folder") from None

    def file(self, source: Path, name: str) -> None:
        """Link source (on the destination's file system) to its name: fails if anything is there."""
        final = self.destination / name
        self.folder(PurePosixPath(name).parent)
        try:
            os.link(source, final)
        except FileExistsError:
            raise BundleRefused(f"{name} appeared here meanwhile; it is never replaced") from None
        self.placed.append(final)
        source.unlink()

    def undo(self) -> None:
        for path in reversed(self.placed):
            path.unlink(missing_ok=True)
        for path in reversed(self.made):
            try:
                path.rmdir()
            except OSError:
                pass


def unpack(zip_path: Path, destination: Path, *, max_bytes: int, max_ratio: float | None = None) -> Unpacked:
    """Unpack a bundle under `destination`, keeping its layout. A file already there with the same bytes
    counts as delivered; anything else already there (other bytes, a folder where a file goes, a file
    where a folder goes) refuses the bundle. Raises BundleRefused, having written nothing, for an
    unsafe, oversized or broken bundle or a clash; OSError (our disk), having written nothing either."""
    try:
        bundle = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleRefused(f"not a readable zip file ({exc})") from None
    destination.mkdir(parents=True, exist_ok=True)
    scratch = destination / f".incoming-{uuid.uuid4().hex}"
    placement = _Placement(destination)
    try:
        with bundle:
            members = _checked_members(bundle, max_bytes, max_ratio)
            folders = [i.filename.rstrip("/") for i in bundle.infolist() if i.is_dir()]
            scratch.mkdir()
            for info in members:
                target = scratch / info.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with bundle.open(info) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, COPY_BUFFER)
                except (zipfile.BadZipFile, EOFError) as exc:
                    raise BundleRefused(f"entry {info.filename!r}: cannot be read ({exc})") from None
        for name in folders:
            _clash(destination, name, None)
        already = [m.filename for m in members if _clash(destination, m.filename, scratch / m.filename) == "same"]
        for name in folders:
            placement.folder(PurePosixPath(name))
        for info in members:
            if info.filename not in already:
                placement.file(scratch / info.filename, info.filename)
    except BaseException:
        placement.undo()
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Unpacked(files=[m.filename for m in members], bytes=sum(m.file_size for m in members), already=already)


def check_placement(destination: Path, name: str) -> None:
    """BundleRefused if a file could never land at destination/name (a folder is there, or a file where
    one of its folders would be). Whether a file there has the same bytes is known only once it arrived."""
    path = destination / check_relative_path(name)
    if path.is_dir() and not path.is_symlink():
        raise BundleRefused(f"{name}: a folder of that name is already here")
    for parent in list(PurePosixPath(name).parents)[:-1]:
        there = destination / parent
        if there.is_symlink() or (there.exists() and not there.is_dir()):
            raise BundleRefused(f"{name}: {parent.as_posix()!r} is already a file here, not a folder")


def place_file(source: Path, destination: Path, name: str) -> bool:
    """Put one received file at destination/name (name checked like a bundle entry), never replacing a
    file: True when it was placed, False when the same bytes were already there. BundleRefused for
    other bytes or a folder there."""
    relative = check_relative_path(name)
    destination.mkdir(parents=True, exist_ok=True)
    if _clash(destination, relative.as_posix(), source) == "same":
        return False
    staged = destination / f".incoming-{uuid.uuid4().hex}"
    placement = _Placement(destination)
    try:
        shutil.copyfile(source, staged)
        placement.file(staged, relative.as_posix())
    except BaseException:
        placement.undo()
        raise
    finally:
        staged.unlink(missing_ok=True)
    return True
