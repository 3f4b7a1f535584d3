"""apps.dicom.query: the one study-date dialect of case lists, the query API, the admin and the CLI."""
import pytest

from apps.dicom.query import QueryError, parse_study_date, study_query


@pytest.mark.parametrize("text, dicom", [
    ("2025-09-22", "20250922"),
    ("20250922", "20250922"),
    ("2025-01-01..2025-03-31", "20250101-20250331"),
    ("20250101-20250331", "20250101-20250331"),
    ("2025-01-01..20250331", "20250101-20250331"),
    (" 2025-01-01 .. 2025-03-31 ", "20250101-20250331"),
    ("2025-01-01..", "20250101-"),
    ("-20250331", "-20250331"),
    ("0999-01-01..2030-12-31", "09990101-20301231"),  # a year's leading zeros are kept
    ("0001-01-01", "00010101"),
])
def test_both_range_forms_and_both_day_forms_read_alike(text, dicom):
    assert parse_study_date(text) == dicom


@pytest.mark.parametrize("text, words", [
    ("2025-02-30", "not a real date"),
    ("22/09/2025", "not a real date"),
    ("2025", "not a real date"),
    ("yesterday", "not a real date"),
    ("2025-03-31..2025-01-01", "ends before it starts"),
    ("20250331-20250101", "ends before it starts"),
    ("..", "without dates"),
    ("-", "without dates"),
])
def test_impossible_dates_are_refused_with_the_users_spelling(text, words):
    with pytest.raises(QueryError) as caught:
        parse_study_date(text)
    assert words in str(caught.value) and text.strip() in str(caught.value)


def test_a_study_query_names_every_return_key_and_maps_modality():
    query = study_query({"PatientID": "P1", "StudyDate": "2025-01-01..2025-01-31", "Modality": "CT"})
    assert query["PatientID"] == "P1" and query["StudyDate"] == "20250101-20250131"
    assert query["ModalitiesInStudy"] == "CT" and "Modality" not in query
    assert query["NumberOfStudyRelatedInstances"] == "" and query["StudyInstanceUID"] == ""


def test_an_unknown_filter_is_refused_not_ignored():
    with pytest.raises(QueryError, match="Unknown filter"):
        study_query({"PatientId": "P1"})
