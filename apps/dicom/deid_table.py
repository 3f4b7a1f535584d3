"""PS3.15 Annex E table E.1-1 (Application Level Confidentiality Profile Attributes) as data.

The rows are in deid_table.csv next to this module (tag, basic, options, name), read once at import.
Transcribed from the standard's table as published in machine-readable form by innolitics/dicom-standard
(standard/confidentiality_profile_attributes.json, commit 7f4749d, DICOM 2025a; MIT licence); the last nine
rows (from Acquisition Context Description on) are listed by later editions (up to 2026c) than that
transcription: the tests' second table found them. The tests check the transform against that second,
independent transcription (tests/projects/e11_attributes.py).

TABLE maps a tag (group << 16 | element) to (basic profile action, option flags):
  basic action: X remove, Z empty, D dummy, U new UID, K keep, and the combined X/Z, X/D, Z/D, X/Z/D, X/Z/U*;
  flags: L  Retain Longitudinal Temporal Information with Modified Dates: the value is shifted ("C");
         P / p  Retain Patient Characteristics: kept ("K") / cleaned ("C");
         V / v  Retain Device Identity: kept / cleaned;
         C  Clean Descriptors: cleaned.
Repeating groups and private attributes are rules in apps/dicom/deidentify.py: curves (50xx,xxxx),
overlay data and comments (60xx,3000), (60xx,4000), and private attributes (odd groups), all removed.
"""
import csv
from pathlib import Path

SOURCE = Path(__file__).with_name("deid_table.csv")
ACTIONS = {"X", "Z", "D", "U", "K", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
FLAGS = set("LPpVvC")


def _read(path: Path) -> dict[int, tuple[str, str]]:
    """The table from its file; a malformed row stops the import naming its line, since a silently wrong
    table would leave identifiers in the images."""
    table: dict[int, tuple[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                tag = int(row["tag"], 16)
            except (TypeError, ValueError):
                raise ValueError(f"{path.name} line {line}: tag {row['tag']!r} is not 8 hex digits") from None
            action, flags = row["basic"], row["options"] or ""
            if len(row["tag"]) != 8 or action not in ACTIONS or not set(flags) <= FLAGS or tag in table:
                raise ValueError(f"{path.name} line {line}: {row['tag']},{action},{flags}: a bad tag, action or "
                                 f"option flag, or a tag listed twice")
            table[tag] = (action, flags)
    return table


TABLE: dict[int, tuple[str, str]] = _read(SOURCE)
