"""Hostile .xlsx case lists, uploaded through the API: a zip bomb (declared and lying sizes), a sheet that
declares a million rows or columns, external links and formulas that would fetch or compute, XML entity
tricks, files that only look like workbooks. Each is refused with a 400 naming the file and the cause (or
read safely), quickly, nothing is fetched and no job is created."""
import io
import re
import struct
import time
import zipfile

import pytest

from apps.retrieval.models import RetrievalJob
from apps.retrieval.spreadsheet import MAX_UNPACKED_BYTES, SheetReader, SpreadsheetRefused
from apps.servers.models import DicomServer
from tests.retrieval.xlsx import MAIN, SHEET, excel_like, sheet_xml, text_row, with_parts, workbook

pytestmark = pytest.mark.django_db

BASE_ROWS = [["PatientID", "StudyDate", "Modality", "Server"], ["P1", "2025-01-01", "CT", "LK"]]
GOOD_ROWS = text_row(1, BASE_ROWS[0]) + text_row(2, BASE_ROWS[1])


@pytest.fixture(autouse=True)
def server(db):
    DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)


def post(api, data: bytes, name="evil.xlsx"):
    f = io.BytesIO(data)
    f.name = name
    started = time.monotonic()
    response = api.post("/api/retrievals/", {"file": f, "mode": "query"}, format="multipart")
    return response, time.monotonic() - started


def refused(api, data, words, name="evil.xlsx"):
    response, seconds = post(api, data, name)
    assert response.status_code == 400, response.content
    assert response.json()["error"].startswith(f"{name}: ") and words in response.json()["error"], response.json()
    assert not RetrievalJob.objects.exists()
    return seconds


def test_a_zip_bomb_is_refused_by_its_declared_size_before_it_is_unpacked(api):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook(BASE_ROWS))) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != SHEET:
                target.writestr(info.filename, source.read(info.filename))
        with target.open(SHEET, "w", force_zip64=True) as sheet:
            sheet.write(sheet_xml(GOOD_ROWS)[:-len("</sheetData></worksheet>")])
            for _ in range(MAX_UNPACKED_BYTES // (1 << 20) + 1):
                sheet.write(b" " * (1 << 20))
    bomb = out.getvalue()
    assert len(bomb) < 1_000_000
    seconds = refused(api, bomb, "unpacks to")
    assert seconds < 5


def _lie_about_size(data: bytes, name: str, size: int) -> bytes:
    """`data` with the central directory's uncompressed size of `name` replaced by `size`."""
    data = bytearray(data)
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) != -1:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if bytes(data[at + 46:at + 46 + name_length]) == name.encode():
            struct.pack_into("<I", data, at + 24, size)
            return bytes(data)
        at += 4
    raise AssertionError(f"{name} not in the archive")


def test_a_zip_that_lies_about_its_size_is_cut_at_the_size_it_declared(api):
    big_sheet = sheet_xml(GOOD_ROWS + "".join(text_row(n, ["P", "2025-01-01", "CT", "LK"]) for n in range(3, 60_000)))
    liar = _lie_about_size(with_parts(workbook(BASE_ROWS), replace={SHEET: big_sheet}), SHEET, 1000)
    refused(api, liar, "cannot be read")


def test_declared_dimensions_of_a_million_rows_and_columns_are_ignored(api):
    data = with_parts(workbook(BASE_ROWS), replace={SHEET: sheet_xml(GOOD_ROWS, "A1:XFD1048576")})
    response, seconds = post(api, data)
    assert response.status_code == 201, response.content
    assert [(i["line"], i["PatientID"]) for i in response.json()["items"]] == [(2, "P1")]
    assert seconds < 5


def test_a_cell_far_away_refuses_the_sheet_without_walking_to_it(api):
    far = GOOD_ROWS + '<row r="1048576"><c r="A1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    seconds = refused(api, with_parts(workbook(BASE_ROWS), replace={SHEET: sheet_xml(far)}), "rows past row 200000")
    assert seconds < 5


def test_a_cell_in_the_last_column_is_not_read_and_makes_no_wide_row(api):
    wide = (text_row(1, BASE_ROWS[0]) + '<row r="2">' + text_row(2, BASE_ROWS[1])[len('<row r="2">'):-len("</row>")]
            + '<c r="XFD2" t="inlineStr"><is><t>far</t></is></c></row>')
    response, _ = post(api, with_parts(workbook(BASE_ROWS), replace={SHEET: sheet_xml(wide)}))
    assert response.status_code == 201, response.content
    assert response.json()["items"][0]["Server"] == "LK" and not response.json()["row_errors"]


def _external_link(port: int) -> dict:
    rels = (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            f'2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            f'relationships/externalLinkPath" Target="http://127.0.0.1:{port}/book.xlsx" TargetMode="External"/>'
            "</Relationships>").encode()
    link = (f'<?xml version="1.0" encoding="UTF-8"?><externalLink xmlns="{MAIN}" xmlns:r="http://schemas.openxmlformats'
            '.org/officeDocument/2006/relationships"><externalBook r:id="rId1"><sheetNames><sheetName val="S"/>'
            "</sheetNames></externalBook></externalLink>").encode()
    return {"xl/externalLinks/externalLink1.xml": link, "xl/externalLinks/_rels/externalLink1.xml.rels": rels}


def test_external_links_are_never_followed_and_a_cell_using_one_is_refused(api, silent_listener):
    port, accepted = silent_listener
    linked = (text_row(1, BASE_ROWS[0]) + '<row r="2"><c r="A2" t="str"><f>[1]S!A1</f><v>P1</v></c>'
              '<c r="B2" t="inlineStr"><is><t>2025-01-01</t></is></c><c r="C2" t="inlineStr"><is><t>CT</t></is></c>'
              '<c r="D2" t="inlineStr"><is><t>LK</t></is></c></row>')
    data = with_parts(workbook(BASE_ROWS), replace={SHEET: sheet_xml(linked)}, add=_external_link(port))
    refused(api, data, "cell A2 holds a formula (=[1]S!A1)")
    plain = with_parts(workbook(BASE_ROWS), add=_external_link(port))
    response, _ = post(api, plain)
    assert response.status_code == 201, response.content
    assert accepted == [], "nothing was fetched"


def test_a_formula_that_would_fetch_is_refused_never_evaluated(api, silent_listener):
    port, accepted = silent_listener
    data = workbook([BASE_ROWS[0], [f'=WEBSERVICE("http://127.0.0.1:{port}/")', "2025-01-01", "CT", "LK"]])
    refused(api, data, "cell A2 holds a formula (=WEBSERVICE(")
    assert accepted == []


ENTITIES = ('<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY x SYSTEM "file:///etc/passwd">]>')


@pytest.mark.parametrize("part", [SHEET, "xl/sharedStrings.xml", "xl/workbook.xml"])
def test_xml_entities_anywhere_are_refused(api, part):
    base = excel_like(BASE_ROWS)  # as Excel writes it: the text in xl/sharedStrings.xml
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        original = z.read(part).decode()
    if part == SHEET:
        original = sheet_xml(GOOD_ROWS).decode()
    hostile = ENTITIES + re.sub(r"^<\?xml[^>]*\?>", "", original).replace("P1", "&c;&x;", 1).replace("<sheets>", "<sheets>&c;")
    response, _ = post(api, with_parts(base, replace={part: hostile.encode()}))
    assert response.status_code == 400, response.content
    assert "root:" not in response.content.decode()
    assert not RetrievalJob.objects.exists()


@pytest.mark.parametrize("data,words", [
    (b"PK\x03\x04" + b"\0" * 100, "not a readable one"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "old Excel .xls workbook"),
])
def test_files_that_only_look_like_workbooks_are_refused_by_name(api, data, words):
    refused(api, data, words)


def test_a_workbook_of_too_many_parts_is_refused(api):
    data = with_parts(workbook(BASE_ROWS), add={f"xl/media/p{n}.bin": b"x" for n in range(1001)})
    refused(api, data, "parts, more than the 1000")


@pytest.mark.parametrize("sheet,words", [
    (b"<worksheet><sheetData><row>", "cannot be read"),
    (sheet_xml(GOOD_ROWS)[:-30], "not well-formed XML"),
])
def test_a_sheet_that_is_no_xml_is_refused(api, sheet, words):
    refused(api, with_parts(workbook(BASE_ROWS), replace={SHEET: sheet}), words)


def test_the_sheet_reader_itself_refuses_a_dtd():
    # openpyxl's defusedxml refuses first when it reads the sheet's dimension; this reader must not rely on it
    with pytest.raises(SpreadsheetRefused, match="declares a DTD or entities"):
        list(SheetReader([], set(), None).read(io.BytesIO((ENTITIES + f'<worksheet xmlns="{MAIN}"/>').encode())))
