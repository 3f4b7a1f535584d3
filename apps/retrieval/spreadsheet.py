"""Excel case lists: the first sheet of an .xlsx workbook turned into the CSV text the case-list parser
reads, so a workbook passes through exactly the same door, checks and background preparation as a CSV.
Each sheet row becomes one CSV line (row n is line n in every message).

The workbook's structure (which part is the first sheet, the shared strings, which styles are dates, the
date epoch) is read by openpyxl in read-only mode (defusedxml guards its XML); the sheet's own XML is read
here with expat, cell by cell, about three times faster than openpyxl's cell objects (100,000 rows in a few
seconds), refusing any DTD or entity. Nothing is evaluated: a formula cell is refused (naming the cell), and
so is an error cell (#N/A); dates become YYYY-MM-DD; whole numbers lose Excel's ".0"; text stays text, so
an ID typed as text keeps its leading zeros. Before openpyxl sees a byte, the zip is checked: at most
MAX_PARTS parts and MAX_UNPACKED_BYTES unpacked (a zip bomb is refused by its declared sizes, and
zipfile stops at them). The sheet's declared dimensions are ignored, only the first MAX_COLUMNS columns
are read, and a sheet whose rows run past MAX_ROWS is refused. External links are not loaded."""
from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import zipfile
from xml.parsers import expat

from openpyxl.reader.excel import ExcelReader
from openpyxl.styles.stylesheet import apply_stylesheet
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.datetime import from_excel
from openpyxl.xml.constants import SHARED_STRINGS

log = logging.getLogger(__name__)
ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0"  # the old .xls format
MAX_PARTS = 1000
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
MAX_ROWS = 200_000
MAX_COLUMNS = 32
HEADER_STARTS = {"patientid", "patient_id", "studydate", "modality", "server", "studyinstanceuid", "maxstudies",
                 "accessionnumber", "seriesdescription", "seriesmodality", "seriesinstanceuid"}


class SpreadsheetRefused(ValueError):
    """The workbook cannot be read as a case list; the message says why and what to do."""


def is_workbook(data: bytes) -> bool:
    return data[:4] in (ZIP_MAGIC, OLE2_MAGIC)


def case_list_bytes(data: bytes) -> bytes:
    """The case list as CSV bytes: a workbook converted, anything else unchanged."""
    if not is_workbook(data):
        return data
    return workbook_to_csv(data).encode("utf-8")


def _check_zip(data: bytes) -> None:
    if data[:4] == OLE2_MAGIC:
        raise SpreadsheetRefused("this is an old Excel .xls workbook; save it as .xlsx (Excel Workbook) or "
                                 "'CSV UTF-8'")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):  # ValueError, OSError: zipfile's own words for a bad zip
        raise SpreadsheetRefused("the file starts like an .xlsx workbook but is not a readable one") from None
    if len(parts) > MAX_PARTS:
        raise SpreadsheetRefused(f"the workbook has {len(parts)} parts, more than the {MAX_PARTS} a case list "
                                 "may have")
    unpacked = sum(part.file_size for part in parts)
    if unpacked > MAX_UNPACKED_BYTES:
        raise SpreadsheetRefused(f"the workbook unpacks to {unpacked} bytes, over the {MAX_UNPACKED_BYTES} byte "
                                 "limit; save it as 'CSV UTF-8' or split it")


def _where(row: int, column: int) -> str:
    return f"{get_column_letter(column)}{row}"


def _number(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else text


CHUNK = 256 * 1024
_LOCAL: dict[str, str] = {}  # element name as written ("x:c") -> its local name ("c")


def _local(name: str) -> str:
    if len(_LOCAL) < 1000:  # a hostile part with endless names cannot grow it
        _LOCAL[name] = name.rpartition(":")[2]
    return name.rpartition(":")[2]


def _refuse_dtd(*args):
    raise SpreadsheetRefused("the workbook declares a DTD or entities, which a workbook never needs")


def _parser(start, end, chars):
    """An expat parser that refuses any DTD or entity declaration and never reads anything external."""
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    return parser


class SharedStrings:
    """The workbook's shared-strings table read with expat, as openpyxl reads it: each <si>'s text is its
    <t>, or its rich-text runs' <t> joined, phonetic runs (<rPh>) left out, "x005F_" escapes removed.
    (openpyxl's own reader builds objects per string: 100,000 IDs took longer than the sheet itself.)"""

    def __init__(self):
        self.strings: list[str] = []
        self.parts: list[str] | None = None
        self.phonetic = 0
        self.in_text = False

    def read(self, stream) -> list[str]:
        parser = _parser(self._start, self._end, self._chars)
        try:
            while chunk := stream.read(CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise SpreadsheetRefused(f"the shared strings cannot be read: they are not well-formed XML ({exc})") from None
        return self.strings

    def _start(self, name, attrs):
        name = _LOCAL.get(name) or _local(name)
        if name == "si":
            self.parts = []
        elif name == "rPh":
            self.phonetic += 1
        elif name == "t" and self.parts is not None and not self.phonetic:
            self.in_text = True

    def _end(self, name):
        name = _LOCAL.get(name) or _local(name)
        if name == "t":
            self.in_text = False
        elif name == "rPh":
            self.phonetic -= 1
        elif name == "si" and self.parts is not None:
            self.strings.append("".join(self.parts).replace("x005F_", ""))
            self.parts = None

    def _chars(self, data):
        if self.in_text:
            self.parts.append(data)


class SheetReader:
    """Reads a worksheet's XML with expat into rows of text cells, turning each cell's value into the text
    a CSV would hold (see the module's rules)."""

    def __init__(self, shared: list, date_styles, epoch):
        self.shared, self.date_styles, self.epoch = shared, set(date_styles), epoch
        self.rows: list[tuple[int, dict[int, str]]] = []
        self.row_number, self.cells, self.column = 0, {}, 0
        self.cell = None  # (row, column, type, style) of the cell being read
        self.text: list[str] = []
        self.formula: list[str] | None = None
        self.target: list[str] | None = None  # where the characters being read go

    def read(self, stream):
        """Yield (row number, {column: text}) for each row the sheet holds, in order."""
        parser = _parser(self._start, self._end, self._chars)
        try:
            while True:
                chunk = stream.read(CHUNK)
                parser.Parse(chunk, not chunk)
                yield from self.rows
                self.rows.clear()
                if not chunk:
                    return
        except expat.ExpatError as exc:
            raise SpreadsheetRefused(f"the first sheet cannot be read: it is not well-formed XML ({exc})") from None

    def _start(self, name, attrs):
        name = _LOCAL.get(name) or _local(name)
        if name == "c":
            ref = attrs.get("r", "")
            letters = ref.rstrip("0123456789")
            column = column_index_from_string(letters) if letters else self.column + 1
            self.column = column
            self.cell = (self.row_number, column, attrs.get("t", "n"), int(attrs.get("s", 0) or 0))
            self.text, self.formula = [], None
        elif name == "row":
            number = int(attrs.get("r", self.row_number + 1))
            if number > MAX_ROWS:
                raise SpreadsheetRefused(f"the first sheet has rows past row {MAX_ROWS}; split the list")
            self.row_number, self.cells, self.column = number, {}, 0
        elif self.cell is not None and name in ("v", "t", "f"):
            if name == "f":
                self.formula = []
            self.target = self.formula if name == "f" else self.text

    def _chars(self, data):
        if self.target is not None:
            self.target.append(data)

    def _end(self, name):
        name = _LOCAL.get(name) or _local(name)
        if name in ("v", "t", "f"):
            self.target = None
        elif name == "c" and self.cell is not None:
            row, column, kind, style = self.cell
            if column <= MAX_COLUMNS:
                value = self._value(row, column, kind, style)
                if value:
                    self.cells[column] = value
            self.cell = None
        elif name == "row":
            self.rows.append((self.row_number, self.cells))

    def _value(self, row, column, kind, style) -> str:
        if self.formula is not None:
            formula = "".join(self.formula)[:40]
            raise SpreadsheetRefused(f"cell {_where(row, column)} holds a formula (={formula}); a case list takes "
                                     "values, so formulas are never run: copy the cells and paste them as values")
        text = "".join(self.text)
        if kind == "s":
            try:
                return str(self.shared[int(text)]).strip()
            except (ValueError, IndexError):
                raise SpreadsheetRefused(f"cell {_where(row, column)} names a shared string the workbook "
                                         "does not have") from None
        if kind == "e":
            raise SpreadsheetRefused(f"cell {_where(row, column)} holds the Excel error {text}; fix or clear it")
        if kind == "b":
            return "TRUE" if text.strip() == "1" else "FALSE"
        if kind in ("inlineStr", "str"):
            return text.strip()
        if kind == "d":
            return text.strip().removesuffix("T00:00:00")
        text = text.strip()
        if text and style in self.date_styles:
            try:
                value = from_excel(float(text), self.epoch)
            except (ValueError, OverflowError):
                raise SpreadsheetRefused(f"cell {_where(row, column)} is formatted as a date but holds "
                                         f"{text}, which is no date") from None
            if isinstance(value, dt.datetime):
                return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
            return value.isoformat()
        return _number(text)


def workbook_to_csv(data: bytes) -> str:
    """The first sheet as CSV text, one line per sheet row; see the module's rules."""
    _check_zip(data)
    try:
        book = _Book(data)
    except SpreadsheetRefused:
        raise
    except Exception as exc:  # openpyxl raises many kinds for a damaged workbook: all mean the same to a user
        log.debug("workbook refused by openpyxl", exc_info=True)
        raise SpreadsheetRefused(f"the workbook cannot be read ({type(exc).__name__}); save it again from "
                                 "Excel as .xlsx, or as 'CSV UTF-8'") from None
    try:
        if not book.worksheet_paths:
            raise SpreadsheetRefused("the workbook has no sheet")
        return _rows_to_csv(book, book.worksheet_paths[0])  # its declared dimensions are never used
    except SpreadsheetRefused:
        raise
    except Exception as exc:
        log.debug("worksheet refused", exc_info=True)
        raise SpreadsheetRefused(f"the first sheet cannot be read ({type(exc).__name__}); save it again from "
                                 "Excel as .xlsx, or as 'CSV UTF-8'") from None
    finally:
        book.archive.close()


class _Book:
    """What openpyxl's read-only loading reads of a workbook (its manifest, shared strings, workbook part
    and styles), without the worksheet objects it makes for every sheet: each of those reads its whole
    sheet when the sheet declares no dimensions (as many generated workbooks do not), so a 100,000-row
    list was parsed twice, once only to find no dimension."""

    def __init__(self, data: bytes):
        reader = ExcelReader(io.BytesIO(data), read_only=True, keep_vba=False, data_only=False, keep_links=False)
        self.archive = reader.archive
        reader.read_manifest()
        strings = reader.package.find(SHARED_STRINGS)
        self.shared_strings = []
        if strings is not None:
            with self.archive.open(strings.PartName[1:]) as stream:
                self.shared_strings = SharedStrings().read(stream)
        reader.read_workbook()
        apply_stylesheet(reader.archive, reader.wb)
        self.date_formats, self.epoch = reader.wb._date_formats, reader.wb.epoch
        self.worksheet_paths = [rel.target for _, rel in reader.parser.find_sheets()
                                if rel.target in reader.valid_files and "chartsheet" not in rel.Type]


def _rows_to_csv(book: _Book, path: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    width = None  # the header's width: a row's empty trailing cells still count up to it, as in a CSV
    seen_values = False
    written = 0
    reader = SheetReader(book.shared_strings, book.date_formats, book.epoch)
    with book.archive.open(path) as stream:
        for number, cells in reader.read(stream):
            while written < number - 1:  # rows the sheet leaves out are blank lines: row n stays line n
                out.write("\n")
                written += 1
            values = [cells.get(column, "") for column in range(1, max(cells, default=0) + 1)]
            if values and not seen_values:
                seen_values = True
                if values[0].strip().lower() in HEADER_STARTS:
                    width = len(values)
            if values and width and len(values) < width:
                values += [""] * (width - len(values))
            writer.writerow(values)
            written += 1
    if not seen_values:
        raise SpreadsheetRefused("the first sheet is empty")
    return out.getvalue()
