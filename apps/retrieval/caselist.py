"""Case lists (the batch download tool's format, docs/contracts.md): CSV rows of PatientID,StudyDate,Modality,Server, or StudyInstanceUID rows.

Rules: header optional; '#' lines are comments; blank lines skipped;
spaces trimmed; UTF-8 with or without BOM; dates YYYY-MM-DD (also YYYYMMDD, and ranges
YYYY-MM-DD..YYYY-MM-DD); Modality may be empty (any modality); IDs are text, so leading zeros stay.
A header may name the columns in any order, and may add StudyInstanceUID, MaxStudies (a query row finding
more studies is flagged) and AccessionNumber (a row may name a study by it instead of PatientID and date).
SeriesDescription, SeriesModality and SeriesInstanceUID choose series within the row's studies: exact text, or
with a leading '~' a case-insensitive "contains" of plain text (never a pattern or a regex). Server may be one
name, 'A|B' (searched in that order; a study found on both is fetched once, from the first), or '*': every
server the user may query and retrieve from, in the order of their names (case-insensitive). Without a header, rows are
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

COLUMNS = ("PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID", "MaxStudies", "AccessionNumber",
           "SeriesDescription", "SeriesModality", "SeriesInstanceUID")
SERIES_COLUMNS = COLUMNS[7:]
EVERY_SERVER = "*"
SERVER_SEPARATOR = "|"
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
    series_description: str = ""  # exact, or "~text": contains text, case-insensitive
    series_modality: str = ""  # the same
    series_instance_uid: str = ""
    servers: tuple[str, ...] = ()  # a row searched on several servers: all of them, in order ('server' is the first)
    server_spec: str = ""  # how the row names them: '*' or 'A|B' (configured spelling); '' for one server

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
                    refused: dict[str, str] | None = None, everywhere: list[str] | None = None) -> CaseList:
    """Parse a case list. Server names match case-insensitively (they are unique without regard to case)
    and come back as configured; a row naming a server in `refused` (name -> reason) is a bad row. '*'
    stands for `everywhere` (default: the known servers not refused, in the order of their names)."""
    if isinstance(text, bytes):
        text = decode(text)
    servers = {s.upper(): s for s in known_servers}
    shown = sorted(s for s in known_servers if s not in (refused or {}))  # an unknown name lists only these
    if everywhere is None:
        everywhere = sorted(shown, key=lambda name: (name.casefold(), name))
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
                                                    f"expected {','.join(COLUMNS[:4])} and any of {', '.join(COLUMNS[4:])}"))
                order = list(DEFAULT_ORDER)
            continue
        row, problem = _row(number, cells, order, servers, default_server, header_seen, shown, everywhere)
        if row is not None:
            refusal = next((refused[name] for name in row.servers or (row.server,) if name in (refused or {})), "")
            if refusal:
                row, problem = None, refusal
        if problem:
            if last > number:  # an unclosed quote swallows the lines after it: say where it ran
                problem += f" (a quoted field runs from line {number} to line {last})"
            errors.append(RowError(number, raw, problem))
            continue
        key = (row.patient_id, row.study_date, row.modality, row.server_spec or row.server, row.study_instance_uid,
               row.accession_number, row.series_description, row.series_modality, row.series_instance_uid)
        if key in seen:
            errors.append(RowError(number, raw, f"duplicate of line {seen[key]}; skipped"))
            continue
        seen[key] = number
        rows.append(row)
    return CaseList(rows, errors)


def _row(number, cells, order, servers, default_server, header_seen, shown, everywhere
         ) -> tuple[CaseRow | None, str]:
    expected = len(order) if header_seen else None
    if expected is not None and len(cells) != expected:
        return None, f"has {len(cells)} columns, the header has {expected}"
    if expected is None and len(cells) not in (4, 5):
        return None, (f"has {len(cells)} columns; expected 4 (PatientID,StudyDate,Modality,Server) "
                      "or 5 (with StudyInstanceUID)")
    values = dict.fromkeys(COLUMNS, "")
    values.update(zip(order, (_uninert(cell) for cell in cells)))
    for column in COLUMNS:  # a value that would match more than itself never reaches a PACS
        if column == "Server" and EVERY_SERVER in values[column]:
            continue  # no C-FIND value: '*' stands for the servers the user may use, and a name is looked up
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
    chosen, problem = _series_choice(values)
    if problem:
        return None, problem
    names, problem = _servers(values["Server"] or default_server, servers, shown, everywhere)
    if problem:
        return None, problem
    max_studies = None
    if values["MaxStudies"]:
        if not values["MaxStudies"].isdigit() or not 0 < int(values["MaxStudies"]) < 1_000_000:
            return None, f"MaxStudies '{values['MaxStudies']}' is not a whole number of studies (1 or more)"
        max_studies = int(values["MaxStudies"])
    spec = "" if len(names) == 1 and values["Server"] != EVERY_SERVER else (
        EVERY_SERVER if values["Server"] == EVERY_SERVER else SERVER_SEPARATOR.join(names))
    return CaseRow(number, values["PatientID"], date, modality, names[0], uid, max_studies, accession, *chosen,
                   servers=tuple(names) if spec else (), server_spec=spec), ""


def _servers(spec: str, servers: dict, shown: list[str], everywhere: list[str]) -> tuple[list[str], str]:
    """The servers a row's Server cell names, in order, as configured: one name, 'A|B', or '*'."""
    if not spec:
        return [], "Server is empty"
    if spec == EVERY_SERVER:
        if not everywhere:
            return [], "Server '*' stands for every server you may query and retrieve from, and there is none"
        return list(everywhere), ""
    names = []
    for given in (part.strip() for part in spec.split(SERVER_SEPARATOR)):
        if not given:
            return [], f"Server '{spec}' has an empty name; separate names by '|', e.g. A|B"
        if given == EVERY_SERVER:
            return [], f"Server '{spec}': '*' stands alone (every server you may use), not in a list"
        server = servers.get(given.upper())
        if server is None:
            known = ", ".join(shown) or ("none you may retrieve from" if servers else "none configured")
            return [], f"unknown server '{given}' (known: {known})"
        if server not in names:
            names.append(server)
    return names, ""


def _series_choice(values: dict) -> tuple[tuple[str, str, str], str]:
    """(SeriesDescription, SeriesModality, SeriesInstanceUID) as given, checked; or why not."""
    description, modality, uid = (values[column] for column in SERIES_COLUMNS)
    for column, value, most in (("SeriesDescription", description, 64), ("SeriesModality", modality, 16)):
        if value == "~":
            return ("", "", ""), f"{column} '~' needs text after the '~' (it means: contains this text)"
        if len(value.removeprefix("~")) > most:
            return ("", "", ""), f"{column} '{value}' is longer than {most} characters"
    if uid and (not _UID.match(uid) or len(uid) > 64):
        return ("", "", ""), f"SeriesInstanceUID '{uid}' is not a valid UID (digits and dots, at most 64)"
    return (description, modality, uid), ""
