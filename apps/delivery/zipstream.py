"""A batch's zip, produced while it is read. Django-free.

The zip of a batch is a function of its files' names and contents: entries sorted by name, stored (DICOM
pixel data hardly compresses, and the link is the bottleneck only across sites), fixed timestamps,
Zip64 records throughout, each entry's CRC-32 in a data descriptor after its bytes. So its length is
known from names and sizes before a byte is read, any range of it can be produced on demand, and a
resumed upload regenerates exactly the bytes the receiving end is missing. Nothing is written on the
sending side unless a zip file is wanted (`write_to`: kept zips, folder targets in zip mode).

A CRC is computed from the bytes as they are produced; a range that starts past an entry's beginning
(a resumed upload) reads the part before it once more for the CRC only. A file whose size changed since
the batch was planned stops the stream (SourceChanged); one whose bytes changed between a cut and a
resumption gives a CRC the receiving end's unpacking refuses, so nothing is confirmed either way."""
from __future__ import annotations

import bisect
import hashlib
import os
import struct
import zlib
from pathlib import Path

from apps.delivery.bundle import check_relative_path

BLOCK = 1024 * 1024
DOS_TIME, DOS_DATE = 0, (2000 - 1980) << 9 | 1 << 5 | 1  # 2000-01-01 00:00:00
VERSION = 45  # Zip64
FLAGS = 0x08  # CRC and sizes in a data descriptor after the data
MODE = (0o100644) << 16  # a regular file, rw-r--r--
U32 = 0xFFFFFFFF
LOCAL_EXTRA = struct.pack("<HHQQ", 1, 16, 0, 0)
LOCAL_HEADER, DESCRIPTOR = 30 + len(LOCAL_EXTRA), 24
CENTRAL_HEADER = 46 + 28
END = 56 + 20 + 22


class SourceChanged(OSError):
    """A file of the batch changed size (or vanished) after the batch was planned."""


class ZipStream:
    """Stored zip of (name inside the zip, file) pairs: `length`, `read(offset, size)`, `write_to`. A file
    is a path, or a source made on demand: an object with `size` and `read_into(at, into)` that fills the
    buffer with its bytes from `at` (or raises SourceChanged)."""

    def __init__(self, entries: list[tuple[str, Path]]):
        self.entries = []  # (name bytes, path, size, offset of its data)
        pieces = []  # (start, kind, entry index or bytes)
        offset = 0
        for name, path in sorted(entries, key=lambda entry: entry[0]):
            check_relative_path(name)
            source = path if hasattr(path, "read_into") else Path(path)
            encoded, size = name.encode("ascii"), source.size if hasattr(source, "read_into") else source.stat().st_size
            pieces.append((offset, "bytes", self._local_header(encoded)))
            offset += LOCAL_HEADER + len(encoded)
            pieces.append((offset, "data", len(self.entries)))
            self.entries.append((encoded, source, size, offset))
            offset += size
            pieces.append((offset, "descriptor", len(self.entries) - 1))
            offset += DESCRIPTOR
        self.directory_at = offset
        self.directory_size = sum(CENTRAL_HEADER + len(name) for name, *_ in self.entries)
        pieces.append((offset, "directory", None))
        pieces.append((offset + self.directory_size, "bytes", self._end()))
        self.length = offset + self.directory_size + END
        self._pieces, self._starts = pieces, [start for start, *_ in pieces]
        self._entry_starts = [data_at - LOCAL_HEADER - len(name) for name, _, _, data_at in self.entries]
        self._crc = [(0, 0)] * len(self.entries)  # per entry: (CRC of its first n bytes, n)
        self._directory = None

    # --- the fixed parts ---------------------------------------------------------------------------
    @staticmethod
    def _local_header(name: bytes) -> bytes:
        return struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", VERSION, FLAGS, 0, DOS_TIME, DOS_DATE, 0, U32, U32,
                           len(name), len(LOCAL_EXTRA)) + name + LOCAL_EXTRA

    def _end(self) -> bytes:
        count, at, size = len(self.entries), self.directory_at, self.directory_size
        zip64_end = struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, VERSION, VERSION, 0, 0, count, count, size, at)
        locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at + size, 1)
        end = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                          min(size, U32), min(at, U32), 0)
        return zip64_end + locator + end

    def _descriptor(self, index: int) -> bytes:
        size = self.entries[index][2]
        return struct.pack("<4sLQQ", b"PK\x07\x08", self.crc(index), size, size)

    def _central_directory(self) -> bytes:
        if self._directory is None:
            records = []
            for index, (name, _, size, data_at) in enumerate(self.entries):
                extra = struct.pack("<HHQQQ", 1, 24, size, size, data_at - LOCAL_HEADER - len(name))
                records.append(struct.pack("<4sBBBBHHHHLLLHHHHHLL", b"PK\x01\x02", VERSION, 3, VERSION, 0, FLAGS,
                                           0, DOS_TIME, DOS_DATE, self.crc(index), U32, U32, len(name),
                                           len(extra), 0, 0, 0, MODE, U32) + name + extra)
            self._directory = b"".join(records)
        return self._directory

    # --- the files -----------------------------------------------------------------------------------
    def crc(self, index: int) -> int:
        """The entry's CRC-32, reading whatever part of its file was not produced in order yet."""
        value, done = self._crc[index]
        size = self.entries[index][2]
        if done < size:
            buffer = memoryview(bytearray(min(BLOCK, size - done)))
            while done < size:
                part = buffer[:min(len(buffer), size - done)]
                self._read_file(index, done, part)
                value, done = zlib.crc32(part, value), done + len(part)
            self._crc[index] = (value, done)
        return value

    def _read_file(self, index: int, at: int, into: memoryview) -> None:
        _, path, size, _ = self.entries[index]
        if hasattr(path, "read_into"):  # bytes made on demand (a research project's de-identified file)
            path.read_into(at, into)
            return
        try:
            with open(path, "rb", buffering=0) as source:
                source.seek(at)
                got = 0
                while got < len(into):
                    count = source.readinto(into[got:])
                    if not count:
                        raise SourceChanged(f"{path} is shorter than the {size} bytes it had when the batch "
                                            f"was planned; it changed meanwhile")
                    got += count
                if at + got == size and os.fstat(source.fileno()).st_size != size:
                    raise SourceChanged(f"{path} is no longer {size} bytes long; it changed meanwhile")
        except FileNotFoundError:
            raise SourceChanged(f"{path} vanished after the batch was planned") from None

    def _fill_data(self, index: int, at: int, into: memoryview) -> None:
        self._read_file(index, at, into)
        value, done = self._crc[index]
        if done == at:  # produced in order: the CRC comes for free
            self._crc[index] = (zlib.crc32(into, value), at + len(into))

    # --- reading ---------------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> bytearray:
        """`size` bytes of the zip from `offset` (fewer only at the end)."""
        size = max(0, min(size, self.length - offset))
        out = bytearray(size)
        view, filled = memoryview(out), 0
        piece = bisect.bisect_right(self._starts, offset) - 1
        while filled < size:
            start, kind, what = self._pieces[piece]
            end = self._starts[piece + 1] if piece + 1 < len(self._pieces) else self.length
            at = offset + filled - start
            count = min(end - start - at, size - filled)
            into = view[filled:filled + count]
            if kind == "data":
                self._fill_data(what, at, into)
            else:
                fixed = what if kind == "bytes" else (
                    self._descriptor(what) if kind == "descriptor" else self._central_directory())
                into[:] = fixed[at:at + count]
            filled += count
            piece += 1
        return out

    def entry_at(self, offset: int) -> str:
        """The name of the entry being sent at `offset` (progress), or "" past the last one."""
        index = bisect.bisect_right(self._entry_starts, offset) - 1
        return self.entries[index][0].decode() if 0 <= index < len(self.entries) and offset < self.directory_at else ""

    def sha1(self) -> str:
        digest = hashlib.sha1()
        for offset in range(0, self.length, 16 * BLOCK):
            digest.update(self.read(offset, 16 * BLOCK))
        return digest.hexdigest()

    def write_to(self, destination: Path) -> str:
        """Write the zip to the file `destination`; the sha1 (hex) of what was written."""
        digest = hashlib.sha1()
        with open(destination, "wb") as out:
            for offset in range(0, self.length, 16 * BLOCK):
                block = self.read(offset, 16 * BLOCK)
                digest.update(block)
                out.write(block)
        return digest.hexdigest()
