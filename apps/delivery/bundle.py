"""Zip bundles of delivered cases: the names they may hold, and their safe unpacking on the receiving
end. Django-free. (The sending end produces them: apps/delivery/zipstream.py.)

Unpacking trusts nothing: every entry name must be a relative path of plain components (letters,
digits, `._~-`, none starting with a dot, no `..`, no absolute path, no backslash, no symlink); one bad
entry fails the whole bundle before a single byte is written. Entries are extracted into a hidden
folder beside the destination first and moved into place only when all of them were read and their
CRCs checked, so a corrupt bundle leaves nothing behind either."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$")
MAX_DEPTH = 8
COPY_BUFFER = 1024 * 1024


class BundleRefused(Exception):
    """The bundle (or an uploaded file name) is unsafe or broken; nothing was written."""


@dataclass
class Unpacked:
    files: list[str]  # relative paths written, in bundle order
    bytes: int


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


def _checked_members(bundle: zipfile.ZipFile, max_bytes: int) -> list[zipfile.ZipInfo]:
    members, total = [], 0
    for info in bundle.infolist():
        if info.is_dir():
            check_relative_path(info.filename.rstrip("/"))
            continue
        check_relative_path(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind != stat.S_IFREG:
            raise BundleRefused(f"entry {info.filename!r}: not a regular file (a link or device)")
        if info.flag_bits & 0x1:
            raise BundleRefused(f"entry {info.filename!r}: encrypted")
        total += info.file_size
        if total > max_bytes:
            raise BundleRefused(f"the bundle unpacks to more than {max_bytes} bytes")
        members.append(info)
    names = [m.filename for m in members]
    if len(set(names)) != len(names):
        raise BundleRefused("the bundle names the same file twice")
    return members


def unpack(zip_path: Path, destination: Path, *, max_bytes: int) -> Unpacked:
    """Unpack a bundle under `destination`, keeping its layout (a file already there is replaced).
    Raises BundleRefused, having written nothing, for an unsafe or broken bundle."""
    try:
        bundle = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleRefused(f"not a readable zip file ({exc})") from None
    destination.mkdir(parents=True, exist_ok=True)
    scratch = destination / f".incoming-{uuid.uuid4().hex}"
    try:
        with bundle:
            members = _checked_members(bundle, max_bytes)
            scratch.mkdir()
            for info in members:
                target = scratch / info.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with bundle.open(info) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, COPY_BUFFER)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise BundleRefused(f"entry {info.filename!r}: cannot be read ({exc})") from None
        for info in members:
            final = destination / info.filename
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / info.filename, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Unpacked(files=[m.filename for m in members], bytes=sum(m.file_size for m in members))


def place_file(source: Path, destination: Path, name: str) -> str:
    """Move one received file to destination/name (name checked like a bundle entry)."""
    relative = check_relative_path(name)
    final = destination / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, final)
    return str(relative)
