"""The catalog's values of a C-MOVE's instances, read while the move still runs.

Filing a study ends with cataloguing every file of it (apps.catalog.filing), and reading each file's
header was most of that: 2,000 instances cost a few tenths of a second after the last one had arrived,
with the PACS and the receiver done. While the move runs, the row's own thread only waits for the PACS's
responses, so a thread of its process reads the headers of what the receiver has staged meanwhile. A staged
instance is complete once it has its name (staged.write_atomically) and never rewritten, and filing moves
it as it is, so what is read here is what the filed file holds. Nothing is written and no database touched
here; a file not read in time (or not readable) is read by the cataloguing as before.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from apps.dicom.catalog_entry import EntryError, entry_of_chunks, read_entry
from apps.dicom.staging import ANSWERED

POLL_SECONDS = 0.05  # how often the staging folder is looked at for new instances


class EarlyEntries:
    """Reads the catalog's values of each instance staged in `folder` (directly in it: what is apart in
    it is foreign and never filed) into `into` (staged name -> values, shared by the parts of a row),
    from __enter__ until stop()."""

    def __init__(self, folder: Path, into: dict[str, dict]):
        self.folder, self.entries = folder, into
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="early-entries", daemon=True)

    def __enter__(self) -> EarlyEntries:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        # What to read comes from the move's ledger (ANSWERED: the receiver notes each instance there as it
        # answers it, one line, before writing it), read on from where the last look ended: listing the
        # folder each time cost the row's thread a pass over every instance so far, 0.2 s of CPU a
        # 2,000-instance move, on the cores the PACS and the receiver need.
        ledger, rest, waiting = None, b"", []  # waiting: answered for, not on disk at the last look
        try:
            while not self._stop.is_set():
                if ledger is None:
                    try:
                        ledger = open(self.folder / ANSWERED, "rb")  # made with the move's first instance
                    except OSError:
                        pass
                if ledger is not None:
                    rest += ledger.read()
                    lines, _, rest = rest.rpartition(b"\n")  # a line still being appended waits
                    waiting += [name for name in lines.decode("utf-8", "replace").split()
                                if "/" not in name]  # apart in the folder: foreign, never filed
                waiting = self._read(waiting)
                self._stop.wait(POLL_SECONDS)
        finally:
            if ledger is not None:
                ledger.close()

    def _read(self, names: list[str]) -> list[str]:
        """Read each of `names` into the entries; those whose write has not landed yet, to be looked at again."""
        later = []
        for name in names:
            if self._stop.is_set():
                return []
            if name in self.entries:
                continue  # (read by another reader of the folder)
            path = self.folder / name
            if not os.path.lexists(path):
                later.append(name)  # answered for, written a moment later
                continue
            try:
                self.entries[name] = read_entry(path)
            except EntryError:
                pass  # the cataloguing reads it again, and says why it skips it
        return later


def noting_entry(instance, write, into: dict[str, dict]):
    """A C-GET's instance (wire.received.ReceivedInstance) staged verbatim under its SOP Instance UID:
    `write` (its staging write after the answer) preceded by reading its catalog values from the bytes in
    memory into `into`, as EarlyEntries reads a C-MOVE's files. The C-GET's own thread receives and writes,
    so a reading thread would take the interpreter from it; here the reading fills the wait for the PACS's
    next instance, and its bytes are still ours (they go once written)."""
    def read_then_write():
        try:
            entry = entry_of_chunks(instance.chunks)
        except EntryError:
            entry = None  # the cataloguing reads the file, and says why it cannot
        if entry is not None:
            into[f"{entry['sop_instance_uid']}.dcm"] = entry
        write()
    return read_then_write


def read_early(entries: dict[str, dict], filed: list[Path]) -> dict[str, dict]:
    """What was read early of the files `filed` (moved from staging under their staged names), by path, as
    catalog_files(read=...) takes it; only values naming the instance the file is named after."""
    found = {}
    for path in filed:
        values = entries.get(path.name)
        if values is not None and f"{values['sop_instance_uid']}.dcm" == path.name:
            found[os.fspath(path)] = values
    return found
