"""PacsClient (the script facade) against a real Orthanc: send a file and a folder, query, retrieve a study."""
from apps.dicom.client import PacsClient
from apps.dicom.demo.synthetic import write_dataset


def test_send_query_and_retrieve_like_the_old_tool(empty_orthanc, tmp_path):
    manifest = write_dataset(tmp_path / "src", patients=2, instances=2, seed=3, id_prefix="CLI")
    (tmp_path / "src" / "manifest.json").write_text("not DICOM")
    pacs = PacsClient("127.0.0.1", empty_orthanc.dicom_port, pacs_ae_title=empty_orthanc.aet, ae_title="MY_APP")
    first = next((tmp_path / "src").rglob("*.dcm"))
    assert pacs.send_dicom_file(first) is True
    report = pacs.send_dir(tmp_path / "src")
    assert report.landed == 4 and [p.endswith("manifest.json") for p, _ in report.failed] == [True]

    studies = pacs.query_pacs({"QueryRetrieveLevel": "STUDY", "PatientID": "CLI00002"})
    study = next(s for s in manifest["studies"] if s["PatientID"] == "CLI00002")
    assert [s["StudyInstanceUID"] for s in studies] == [study["StudyInstanceUID"]]
    assert studies[0]["PatientID"] == "CLI00002"

    result = pacs.retrieve_study(study["StudyInstanceUID"], tmp_path / "out")
    assert result.completed == 2 and result.failed == 0
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.dcm")) == sorted(
        empty_orthanc.study_instances(study["StudyInstanceUID"]))


def test_a_file_the_pacs_cannot_take_is_false_not_an_exception(empty_orthanc, tmp_path):
    (tmp_path / "x.txt").write_text("no")
    pacs = PacsClient(port=empty_orthanc.dicom_port, pacs_ae_title=empty_orthanc.aet)
    assert pacs.send_file(tmp_path / "x.txt") is False
