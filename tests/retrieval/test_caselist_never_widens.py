"""A case list never widens: a value that would match more than itself in a C-FIND is a bad row that names
the character, quoted fields are read as CSV, and the report CSV never runs as a spreadsheet formula."""
import csv
import io

import pytest

from apps.jobs.spreadsheets import inert
from apps.retrieval.caselist import parse_case_list
from apps.retrieval.intake import rows_to_csv
from apps.retrieval.report import report_csv

SERVERS = {"LK", "ORTH"}


def only_error(text):
    result = parse_case_list(text, SERVERS)
    assert result.rows == [] and len(result.errors) == 1, (result.rows, result.errors)
    return result.errors[0]


@pytest.mark.parametrize("row, column, char", [
    ("*,2024-01-05,CT,ORTH", "PatientID", "'*'"),
    ("000*,2024-01-05,CT,ORTH", "PatientID", "'*'"),
    ("00099?,2024-01-05,CT,ORTH", "PatientID", "'?'"),
    ("P1\\P2,2024-01-05,CT,ORTH", "PatientID", "'\\'"),
    ("P1,2024-01-05,C*,ORTH", "Modality", "'*'"),
    ("P1,2024-01-05,CT?,ORTH", "Modality", "'?'"),
    ("P1,2024-01-05,CT\\MR,ORTH", "Modality", "'\\'"),
    ("P1,2024-01-05,CT,ORTH,1.2.*", "StudyInstanceUID", "'*'"),
])
def test_a_wildcard_or_separator_is_a_bad_row_naming_the_character(row, column, char):
    error = only_error(row + "\n")
    assert error.line == 1 and error.text == row
    assert error.message.startswith(f"{column} ") and f"contains {char}" in error.message, error.message
    assert "another patient" in error.message


def test_good_rows_around_a_wildcard_row_still_run_and_nothing_is_queried_for_it():
    result = parse_case_list("P1,2024-01-05,CT,ORTH\n*,2024-01-05,CT,ORTH\nP3,2024-01-06,MR,LK\n", SERVERS)
    assert [r.patient_id for r in result.rows] == ["P1", "P3"]
    assert [e.line for e in result.errors] == [2]


def test_an_empty_patient_id_without_a_uid_is_bad_but_a_uid_row_may_leave_it_empty():
    assert "PatientID is empty" in only_error(",2024-01-05,CT,ORTH\n").message
    rows = parse_case_list("PatientID,StudyDate,Modality,Server,StudyInstanceUID\n,,,ORTH,1.2.3\n", SERVERS).rows
    assert [(r.patient_id, r.study_instance_uid) for r in rows] == [("", "1.2.3")]


def test_a_quoted_comma_stays_in_its_field():
    result = parse_case_list('"P,1",2024-01-05,CT,ORTH\n"P2" , 2024-01-06 , "MR" , LK\n', SERVERS)
    assert result.errors == []
    assert [(r.line, r.patient_id, r.modality) for r in result.rows] == [(1, "P,1", "CT"), (2, "P2", "MR")]


def test_a_quoted_line_break_is_one_bad_row_and_the_next_row_keeps_its_own_line_number():
    text = 'P1,2024-01-05,CT,ORTH\n"A\nB",2024-01-05,CT,ORTH\nP3,2024-01-06,MR,LK\n'
    result = parse_case_list(text, SERVERS)
    assert [(r.line, r.patient_id) for r in result.rows] == [(1, "P1"), (4, "P3")]
    (error,) = result.errors
    assert error.line == 2 and error.text == '"A\nB",2024-01-05,CT,ORTH'
    assert "PatientID contains a line break" in error.message and "from line 2 to line 3" in error.message


def test_an_unclosed_quote_names_the_lines_it_swallowed():
    error = only_error('"P1,2024-01-05,CT,ORTH\nP2,2024-01-06,MR,LK\n')
    assert error.line == 1 and "from line 1 to line 2" in error.message


def test_a_nul_character_is_refused_not_stored():
    error = only_error("P\x001,2024-01-05,CT,ORTH\n")
    assert error.message.startswith("PatientID contains a NUL character")


def test_a_comment_or_blank_line_inside_quotes_is_part_of_the_field_not_skipped():
    result = parse_case_list('# header comment\n\n"P1\n# not a comment",2024-01-05,CT,ORTH\nP2,2024-01-05,CT,LK\n',
                             SERVERS)
    assert [r.patient_id for r in result.rows] == ["P2"]
    assert result.errors[0].line == 3 and "# not a comment" in result.errors[0].text


def test_years_before_1000_keep_four_digits():
    rows = parse_case_list("P1,0001-01-01,CT,ORTH\nP2,0999-01-01..2030-12-31,CT,ORTH\n", SERVERS).rows
    assert [r.study_date for r in rows] == ["00010101", "09990101-20301231"]


def test_a_json_patient_id_with_a_line_break_never_runs_as_the_row_it_smuggles():
    text = rows_to_csv([{"PatientID": "P1\nVICTIM,2024-01-05,CT,ORTH", "StudyDate": "2024-01-05",
                         "Modality": "CT", "Server": "ORTH"}])
    result = parse_case_list(text, SERVERS)
    assert result.rows == []
    assert [e.line for e in result.errors] == [2] and "line break" in result.errors[0].message


def test_an_accession_number_column_is_honoured_never_ignored():
    # AccessionNumber is a case-list column (issue 24): the row's C-FIND asks for it and every answer must carry it
    from types import SimpleNamespace

    from apps.retrieval.plans import row_mismatch, row_query

    (row,) = parse_case_list("PatientID,StudyDate,Modality,Server,AccessionNumber\nP1,2024-01-05,CT,ORTH,A7\n",
                             SERVERS).rows
    assert row.accession_number == "A7"
    item = SimpleNamespace(patient_id="P1", study_date=row.study_date, modality="CT", study_instance_uid="",
                           accession_number="A7")
    assert row_query(item)["AccessionNumber"] == "A7"
    assert row_mismatch(item, {"PatientID": "P1", "StudyDate": "20240105", "AccessionNumber": "A8"}) == \
        "the PACS returned a study with another AccessionNumber"
    assert "AccessionNumber 'A*'" in parse_case_list("AccessionNumber,Server\nA*,ORTH\n", SERVERS).errors[0].message


@pytest.mark.parametrize("value", ["=cmd|' /C calc'!A0", "+SUM(1+1)*cmd|' /C calc'!A0", "@HYPERLINK(\"http://x\")",
                                   "-2+3", "\tTAB", "\rCR"])
def test_report_cells_that_a_spreadsheet_would_run_are_written_inert(value):
    assert inert(value) == "'" + value
    report = {"failed": [{"line": 2, "PatientID": value, "reason": "No study"}], "timed_out": [],
              "bad_rows": [{"line": 3, "text": f"{value},2024-01-05,CT,ORTH", "reason": "why"}], "canceled": [],
              "not_finished": [], "succeeded": [], "summary": {"success_rate": 0.0, "succeeded": 0, "rows": 2}}
    rows = list(csv.DictReader(io.StringIO(report_csv(report).split("\n# success")[0])))
    assert rows[0]["PatientID"] == "'" + value
    assert rows[1]["text"] == "'" + value + ",2024-01-05,CT,ORTH", "a bad row keeps its text, made inert"
    assert inert("P1") == "P1" and inert(12) == 12


@pytest.mark.django_db
def test_json_rows_with_a_wildcard_or_a_smuggled_row_start_nothing(api):
    from apps.retrieval.models import RetrievalItem, RetrievalJob
    from apps.servers.models import DicomServer

    DicomServer.objects.create(name="ORTH", ae_title="ORTH", host="127.0.0.1", port=104)
    response = api.post("/api/retrievals/", {"rows": [
        {"PatientID": "000*", "StudyDate": "2024-01-05", "Server": "ORTH"},
        {"PatientID": "P1\nVICTIM,2024-01-05,CT,ORTH", "StudyDate": "2024-01-05", "Server": "ORTH"}]}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "no row can be run" in body["error"]
    assert [e["line"] for e in body["row_errors"]] == [2, 3]
    assert "contains '*'" in body["row_errors"][0]["message"] and "line break" in body["row_errors"][1]["message"]
    assert not RetrievalJob.objects.exists() and not RetrievalItem.objects.filter(patient_id="VICTIM").exists()
