"""Case lists (the batch download tool's format, docs/contracts.md): CSV rows of PatientID,StudyDate,Modality,Server, or StudyInstanceUID rows.

Rules: header optional; '#' lines are comments; blank lines skipped;
spaces trimmed; UTF-8 with or without BOM; dates YYYY-MM-DD (also YYYYMMDD, and ranges
YYYY-MM-DD..YYYY-MM-DD); Modality may be empty (any modality); IDs are text, so leading zeros stay.
A header may name the columns in any order, and may add StudyInstanceUID, MaxStudies (a query row finding
more studies is flagged) and AccessionNumber (a row may name a study by it instead of PatientID and date). Without a header, rows are
PatientID,StudyDate,Modality,Server[,StudyInstanceUID]. Fields may be quoted (a quoted comma is part
of the value). Values match exactly: a C-FIND wildcard ('*', '?'), the multi-value separator '\\' or a
control character (NUL, a line break inside quotes) makes the row bad, and so does an empty PatientID
without a StudyInstanceUID. Every bad row comes back with its line number, its text as written and the
reason; the good rows still run.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass

from apps.dicom.query import DATE_FORMS, QueryError, literal_value_problem, parse_study_date

COLUMNS = ("PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID", "MaxStudies", "AccessionNumber")
DEFAULT_ORDER = COLUMNS[:5]  # a list without a header: the batch download tool's four columns and the UID
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")


@dataclass(frozen=True)
class CaseRow:
    line: int
    patient_id: str
    study_date: str  # DICOM form: "YYYYMMDD", "YYYYMMDD-YYYYMMDD", or "" (with a UID)
    modality: str
    server: str
    study_instance_uid: str = ""
    max_studies: int | None = None  # a query finding more studies than this flags the row
    accession_number: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RowError:
    line: int
    text: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class CaseList:
    rows: list[CaseRow]
    errors: list[RowError]


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the file is not UTF-8 text (bad byte at position {exc.start}); "
                         "save it as 'CSV UTF-8'") from None


def _header(cells: list[str]) -> list[str] | None:
    names = {c.lower(): c for c in COLUMNS}
    if cells and cells[0].strip().lower() in names | {"patient_id": "PatientID", "studyinstanceuid": ""}:
        return [names.get(c.strip().lower(), c.strip()) for c in cells]
    return None


def _records(text: str):
    """(first line number, the record as written, its cells) for each CSV record of `text`, read by the
    csv module over the whole text so a quoted comma or line break stays inside its field. Blank lines
    and '#' comment lines between records are skipped."""
    lines = io.StringIO(text, newline="").readlines()
    taken: list[tuple[int, str]] = []  # the physical lines of the record being read

    def feed():
        for number, line in enumerate(lines, start=1):
            stripped = line.strip()
            if not taken and (not stripped or stripped.startswith("#")):
                continue  # between records: a blank or comment line
            taken.append((number, line))
            yield line

    for cells in csv.reader(feed(), skipinitialspace=True):
        record, first, last = "".join(line for _, line in taken), taken[0][0], taken[-1][0]
        taken.clear()
        yield first, last, record.rstrip("\r\n"), [c.strip() for c in cells]


def _uninert(value: str) -> str:
    """A value the portal wrote inert ('=x: the report and the failed-rows case list guard formula-like cells
    with an apostrophe, as a spreadsheet does) reads back as itself, so a case list downloaded from the
    portal uploads again unchanged."""
    if value.startswith("'") and value[1:2] in ("=", "+", "-", "@"):
        return value[1:]
    return value


def parse_case_list(text: str | bytes, known_servers: set[str], *, default_server: str = "",
                    refused: dict[str, str] | None = None) -> CaseList:
    """Parse a case list. Server names match case-insensitively (they are unique without regard to case)
    and come back as configured; a row naming a server in `refused` (name -> reason) is a bad row."""
    if isinstance(text, bytes):
        text = decode(text)
    servers = {s.upper(): s for s in known_servers}
    shown = sorted(s for s in known_servers if s not in (refused or {}))  # an unknown name lists only these
    rows: list[CaseRow] = []
    errors: list[RowError] = []
    seen: dict[tuple, int] = {}
    order: list[str] = list(DEFAULT_ORDER)
    header_seen = False
    for number, last, raw, cells in _records(text):
        if not header_seen and not rows and not errors and _header(cells):
            order, header_seen = _header(cells), True
            unknown = [c for c in order if c not in COLUMNS]
            if unknown:
                errors.append(RowError(number, raw, f"unknown column(s) {', '.join(unknown)}; "
                                                    f"expected {','.join(COLUMNS[:4])}[,StudyInstanceUID][,MaxStudies]"))
                order = list(DEFAULT_ORDER)
            continue
        row, problem = _row(number, cells, order, servers, default_server, header_seen, shown)
        if row is not None and row.server in (refused or {}):
            row, problem = None, refused[row.server]
        if problem:
            if last > number:  # an unclosed quote swallows the lines after it: say where it ran
                problem += f" (a quoted field runs from line {number} to line {last})"
            errors.append(RowError(number, raw, problem))
            continue
        key = (row.patient_id, row.study_date, row.modality, row.server, row.study_instance_uid,
               row.accession_number)
        if key in seen:
            errors.append(RowError(number, raw, f"duplicate of line {seen[key]}; skipped"))
            continue
        seen[key] = number
        rows.append(row)
    return CaseList(rows, errors)


def _row(number, cells, order, servers, default_server, header_seen, shown) -> tuple[CaseRow | None, str]:
    expected = len(order) if header_seen else None
    if expected is not None and len(cells) != expected:
        return None, f"has {len(cells)} columns, the header has {expected}"
    if expected is None and len(cells) not in (4, 5):
        return None, (f"has {len(cells)} columns; expected 4 (PatientID,StudyDate,Modality,Server) "
                      "or 5 (with StudyInstanceUID)")
    values = dict.fromkeys(COLUMNS, "")
    values.update(zip(order, (_uninert(cell) for cell in cells)))
    for column in COLUMNS:  # a value that would match more than itself never reaches a PACS
        problem = literal_value_problem(column, values[column])
        if problem:
            return None, problem
    uid = values["StudyInstanceUID"]
    if uid and (not _UID.match(uid) or len(uid) > 64):
        return None, f"StudyInstanceUID '{uid}' is not a valid UID (digits and dots, at most 64)"
    accession = values["AccessionNumber"]
    if len(accession) > 16:
        return None, f"AccessionNumber '{accession}' is longer than 16 characters"
    if not values["PatientID"] and not uid and not accession:
        return None, ("PatientID is empty (an empty PatientID would match every patient; give it, a StudyInstanceUID "
                      "or an AccessionNumber)")
    if len(values["PatientID"]) > 64:
        return None, "PatientID is longer than 64 characters"
    date = ""
    if values["StudyDate"]:
        try:
            date = parse_study_date(values["StudyDate"])
        except QueryError as exc:
            return None, str(exc)
    elif not uid and not accession:
        return None, f"StudyDate is empty (use {DATE_FORMS})"
    modality = values["Modality"].upper()
    if modality and not _MODALITY.match(modality):
        return None, f"Modality '{values['Modality']}' is not a DICOM modality code such as CT, MR, US"
    server_name = values["Server"] or default_server
    if not server_name:
        return None, "Server is empty"
    server = servers.get(server_name.upper())
    if server is None:
        known = ", ".join(shown) or ("none you may retrieve from" if servers else "none configured")
        return None, f"unknown server '{server_name}' (known: {known})"
    max_studies = None
    if values["MaxStudies"]:
        if not values["MaxStudies"].isdigit() or not 0 < int(values["MaxStudies"]) < 1_000_000:
            return None, f"MaxStudies '{values['MaxStudies']}' is not a whole number of studies (1 or more)"
        max_studies = int(values["MaxStudies"])
    return CaseRow(number, values["PatientID"], date, modality, server, uid, max_studies, accession), ""
