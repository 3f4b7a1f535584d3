"""Building .xlsx workbooks for tests: openpyxl's own, and the same with parts replaced or added by hand
(for the hostile ones)."""
import datetime as dt
import io
import re
import zipfile
from xml.sax.saxutils import escape

from openpyxl import Workbook


def workbook(rows, *, sheets=()) -> bytes:
    """An .xlsx whose first sheet holds `rows` (lists of cell values; a str starting '=' is a formula);
    `sheets`: (title, rows) of further sheets."""
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    for title, more in sheets:
        extra = book.create_sheet(title)
        for row in more:
            extra.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def with_parts(data: bytes, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> bytes:
    """`data` (an .xlsx) with some parts' bytes replaced and others added."""
    replace, add = replace or {}, add or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info.filename)))
        for name, content in add.items():
            target.writestr(name, content)
    return out.getvalue()


SHEET = "xl/worksheets/sheet1.xml"
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def sheet_xml(rows_xml: str, dimension: str = "A1:D2") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><dimension ref="{dimension}"/>'
            f"<sheetData>{rows_xml}</sheetData></worksheet>").encode()


def text_row(number: int, values) -> str:
    cells = "".join(f'<c r="{chr(65 + i)}{number}" t="inlineStr"><is><t>{v}</t></is></c>' for i, v in enumerate(values))
    return f'<row r="{number}">{cells}</row>'


def excel_like(rows, date_columns=()) -> bytes:
    """An .xlsx written as Excel writes one: text in the shared-strings table, dates as serial numbers with
    a date style (openpyxl writes text inline, which is slower to read than what people upload)."""
    strings: dict[str, int] = {}
    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if value is None:
                continue
            if hasattr(value, "toordinal"):
                serial = value.toordinal() - 693594  # days since 1899-12-30
                cells.append(f'<c r="{ref}" s="1"><v>{serial}</v></c>')
            elif isinstance(value, (int, float)):
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                index = strings.setdefault(str(value), len(strings))
                cells.append(f'<c r="{ref}" t="s"><v>{index}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    shared = "".join(f"<si><t>{s}</t></si>" for s in strings)
    base = workbook([["x", dt.date(2020, 1, 1)]])  # its styles' second format is openpyxl's date format
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        types = z.read("[Content_Types].xml").replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" '
                                                      b'ContentType="application/vnd.openxmlformats-officedocument.'
                                                      b'spreadsheetml.sharedStrings+xml"/></Types>')
        rels = z.read("xl/_rels/workbook.xml.rels").replace(
            b"</Relationships>", b'<Relationship Id="rIdSS" Type="http://schemas.openxmlformats.org/officeDocument/'
                                 b'2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
    return with_parts(base, replace={SHEET: sheet_xml("".join(xml_rows), f"A1:D{len(rows)}"),
                                     "[Content_Types].xml": types, "xl/_rels/workbook.xml.rels": rels},
                      add={"xl/sharedStrings.xml": (f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN}">'
                                                    f"{shared}</sst>").encode()})


def as_openpyxl_writes(rows) -> bytes:
    """The .xlsx openpyxl writes for `rows` of text and dates, its sheet's rows written here in openpyxl's
    own form (text inline, dates as serial numbers in its date style, the dimension it declares): openpyxl
    itself spends ~15 s of CPU on 100,000 rows. Compare with `workbook(rows)` on a sample: the same bytes."""
    base = workbook(rows[:2])  # openpyxl's workbook, styles and sheet around the rows (a date: style 1)
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        sheet = z.read(SHEET).decode()
    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if isinstance(value, dt.date):
                cells.append(f'<c r="{ref}" s="1" t="n"><v>{value.toordinal() - 693594}</v></c>')
            else:
                assert isinstance(value, str) and value == value.strip(), value  # what this writes as openpyxl does
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{escape(value)}</t></is></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    columns = chr(64 + max(len(row) for row in rows))
    sheet = re.sub(r'<dimension ref="[^"]*"', f'<dimension ref="A1:{columns}{len(rows)}"', sheet)
    sheet = re.sub(r"<sheetData>.*</sheetData>", lambda _: f"<sheetData>{''.join(xml_rows)}</sheetData>", sheet, flags=re.S)
    return with_parts(base, replace={SHEET: sheet.encode()})


def sheet_part(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read(SHEET)
