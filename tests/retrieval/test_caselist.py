"""Case-list parsing: every rule of the case-list format, and every bad row named with its line and reason."""
import pytest

from apps.retrieval.caselist import parse_case_list
from apps.retrieval.layout import safe_component, study_folder

SERVERS = {"LK", "LNK"}


def test_it_reads_the_seed_example_with_header_comments_bom_and_spaces():
    text = ("\ufeffPatientID,StudyDate,Modality,Server\n"
            "# comment line\n"
            "8318169, 2019-05-20, CT, LK\n"
            "\n"
            "PAT001, 2025-09-22, MR, LNK\n"
            "  012345 , 2025-09-21, us, lk  \n")
    result = parse_case_list(text.encode("utf-8"), SERVERS)
    assert result.errors == []
    assert [(r.line, r.patient_id, r.study_date, r.modality, r.server) for r in result.rows] == [
        (3, "8318169", "20190520", "CT", "LK"),
        (5, "PAT001", "20250922", "MR", "LNK"),
        (6, "012345", "20250921", "US", "LK"),  # leading zero kept, modality and server normalised
    ]


def test_the_header_is_optional_and_may_reorder_columns_and_add_a_uid():
    assert parse_case_list("8318169,2019-05-20,CT,LK\n", SERVERS).rows[0].patient_id == "8318169"
    text = "Server,StudyInstanceUID,PatientID,StudyDate,Modality\nLK,1.2.840.99.1,,,\n"
    row = parse_case_list(text, SERVERS).rows[0]
    assert (row.study_instance_uid, row.server, row.patient_id, row.study_date) == ("1.2.840.99.1", "LK", "", "")


def test_date_ranges_and_rows_without_modality():
    rows = parse_case_list("P1,2025-01-01..2025-03-31,,LK\nP2,20250102,CT,LK\n", SERVERS).rows
    assert (rows[0].study_date, rows[0].modality) == ("20250101-20250331", "")
    assert rows[1].study_date == "20250102"


@pytest.mark.parametrize("line,reason", [
    ("P1,2025-02-30,CT,LK", "is not a real date"),
    ("P1,22/09/2025,CT,LK", "is not a real date"),
    ("P1,2025-03-01..2025-01-01,CT,LK", "ends before it starts"),
    (",2025-09-22,CT,LK", "PatientID is empty"),
    ("P1,2025-09-22,CT,NOWHERE", "unknown server 'NOWHERE' (known: LK, LNK)"),
    ("P1,2025-09-22,CT", "has 3 columns"),
    ("P1,2025-09-22,CT,LK,1.2.3,extra", "has 6 columns"),
    ("P1,,CT,LK", "StudyDate is empty"),
    ("P1,2025-09-22,C T,LK", "is not a DICOM modality code"),
    ("P1,2025-09-22,CT,LK,1.2.abc", "is not a valid UID"),
])
def test_bad_rows_are_reported_with_line_and_reason_and_good_rows_still_run(line, reason):
    result = parse_case_list(f"PatientID,StudyDate,Modality,Server,StudyInstanceUID\nGOOD,2025-09-22,CT,LK,\n{line}\n"
                             if line.count(",") == 4 else f"GOOD,2025-09-22,CT,LK\n{line}\n", SERVERS)
    assert [r.patient_id for r in result.rows] == ["GOOD"]
    assert len(result.errors) == 1
    assert result.errors[0].line in (2, 3) and reason in result.errors[0].message, result.errors[0].message


def test_a_duplicate_row_is_reported_once_and_not_run_twice():
    result = parse_case_list("P1,2025-09-22,CT,LK\nP1, 2025-09-22 ,ct,lk\n", SERVERS)
    assert len(result.rows) == 1
    assert str(result.errors[0]) == "line 2: duplicate of line 1; skipped"


def test_a_file_that_is_not_utf8_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_case_list("Müller,2025-09-22,CT,LK\n".encode("latin-1"), SERVERS)


def test_a_default_server_fills_rows_without_one():
    assert parse_case_list("P1,2025-09-22,CT,\n", SERVERS, default_server="lnk").rows[0].server == "LNK"


def test_output_folders_are_safe_and_distinct(tmp_path):
    assert study_folder(tmp_path, "LK", "20190520", "8318169", "CT") == tmp_path / "LK" / "20190520_8318169_CT"
    hostile = study_folder(tmp_path, "LK", "20190520", "../../etc/passwd", "CT")
    assert hostile.parent == tmp_path / "LK" and hostile.resolve().parent == (tmp_path / "LK").resolve() and \
        hostile.name.startswith("20190520_") and hostile.name.endswith("_CT") and hostile.name not in (".", "..")
    assert safe_component("A/B") != safe_component("A_B")
    assert safe_component("A_B") == "A_B"
    assert study_folder(tmp_path, "LK", "20190520", "P1", "")  .name == "20190520_P1_ALL"
