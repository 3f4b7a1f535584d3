"""The PS3.15 E.1-1 table is data (apps/dicom/deid_table.csv) read at import: it must parse to the very table
the transform was checked against, entry for entry, and the file must be one git tracks (a fresh clone has it)."""
import hashlib
import subprocess
from pathlib import Path

import pytest

from apps.dicom import deid_table

# The table as it stood when it was Python literals: 626 tags, and the sha256 of its sorted items' repr.
ENTRIES = 626
SORTED_SHA256 = "0727c08246d902856b3806ef41ef6c9f8f90a41793e9201e976a4c9da24782ce"
ROOT = Path(__file__).resolve().parents[2]


def test_the_table_parses_to_the_expected_entries_unchanged():
    table = deid_table.TABLE
    assert len(table) == ENTRIES
    assert all(isinstance(tag, int) and 0 <= tag <= 0xFFFFFFFF for tag in table)
    assert all(isinstance(action, str) and isinstance(flags, str) for action, flags in table.values())
    assert hashlib.sha256(repr(sorted(table.items())).encode()).hexdigest() == SORTED_SHA256


def test_a_few_rows_read_as_the_standard_says():
    assert deid_table.TABLE[0x00080050] == ("Z", "")  # Accession Number
    assert deid_table.TABLE[0x00080020] == ("Z", "L")  # Study Date
    assert deid_table.TABLE[0x0020000D] == ("U", "")  # Study Instance UID
    assert deid_table.TABLE[0x300C0127] == ("D", "LV")  # two option flags on one row


def test_the_data_file_is_tracked_by_git():
    source = Path(deid_table.__file__).with_name("deid_table.csv")
    assert source.is_file()
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(source.relative_to(ROOT))],
                             cwd=ROOT, capture_output=True, text=True)
    ignored = subprocess.run(["git", "check-ignore", "-q", str(source.relative_to(ROOT))], cwd=ROOT)
    assert ignored.returncode == 1, "deid_table.csv is ignored by git: a fresh clone would lack it"
    assert tracked.returncode == 0, tracked.stderr


def test_a_malformed_row_stops_the_import_naming_its_line(tmp_path):
    for bad in ("0010002,Z,,Patient ID", "00100020,Q,,Patient ID", "00100020,Z,x,Patient ID", "zz,Z,,Patient ID"):
        path = tmp_path / "table.csv"
        path.write_text(f"tag,basic,options,name\n00100010,Z,,Patient's Name\n{bad}\n")
        with pytest.raises(ValueError, match="table.csv line 3"):
            deid_table._read(path)
    path.write_text("tag,basic,options,name\n00100010,Z,,Patient's Name\n00100010,X,,Patient's Name\n")
    with pytest.raises(ValueError, match="line 3"):
        deid_table._read(path)
