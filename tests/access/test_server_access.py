"""Per-group server access: a server closed to everyone but its groups refuses a user outside them with a
403 that says why (query API), marks their case-list rows bad with that reason (retrieval API), and a row
whose access was withdrawn after the list was read fails when it runs. Against the real Orthanc."""
import pytest
from django.contrib.auth.models import Group

from apps.jobs import runner
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer, ServerAccessDenied

pytestmark = pytest.mark.django_db


@pytest.fixture
def groups(db):
    return Group.objects.create(name="Radiology"), Group.objects.create(name="Ward")


@pytest.fixture
def closed_server(orthanc, groups):
    """The session Orthanc as server ORTH, open only to Radiology (query and retrieve)."""
    peer = orthanc.peer()
    server = DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                        retries=0, retrieve_method="c-get", open_to_everyone=False)
    server.query_groups.add(groups[0])
    server.retrieve_groups.add(groups[0])
    return server


@pytest.mark.orthanc
def test_a_user_outside_the_servers_groups_gets_a_403_that_says_why(api, user, closed_server, groups,
                                                                    orthanc_dataset):
    patient = orthanc_dataset["studies"][0]["PatientID"]
    user.groups.add(groups[1])  # Ward: not one of ORTH's groups
    refused = api.get(f"/api/servers/ORTH/studies?PatientID={patient}")
    assert refused.status_code == 403
    assert refused.json()["detail"] == ("You may not query server 'ORTH': it is open only to its query groups. "
                                        "Ask an administrator to add you to one of them.")
    user.groups.add(groups[0])
    allowed = api.get(f"/api/servers/ORTH/studies?PatientID={patient}")
    assert allowed.status_code == 200 and allowed.json()["count"] == 2


@pytest.mark.orthanc
def test_case_list_rows_for_a_refused_server_are_bad_rows_with_the_reason(api, user, closed_server, orthanc,
                                                                          orthanc_dataset):
    peer = orthanc.peer()
    DicomServer.objects.create(name="OPEN", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0,
                               retrieve_method="c-get")
    study = orthanc_dataset["studies"][0]
    day = f"{study['StudyDate'][:4]}-{study['StudyDate'][4:6]}-{study['StudyDate'][6:]}"
    created = api.post("/api/retrievals/", {"rows": [
        {"PatientID": study["PatientID"], "StudyDate": day, "Server": "orth"},
        {"PatientID": study["PatientID"], "StudyDate": day, "Server": "OPEN"}]}, format="json")
    assert created.status_code == 201, created.content
    job = RetrievalJob.objects.get(pk=created.json()["id"])
    assert [(item.line, item.server_name) for item in job.items.all()] == [(3, "OPEN")]
    assert job.row_errors == [{"line": 2, "text": f"{study['PatientID']},{day},,orth,",
                               "message": "You may not retrieve from server 'ORTH': it is open only to its "
                                          "retrieve groups. Ask an administrator to add you to one of them."}]
    # Only refused rows: nothing to run, a 400 naming each row and its reason.
    rows = "".join(f"{study['PatientID']},{day},,{name}\n" for name in ("orth", "ORTH"))
    only_refused = api.post("/api/retrievals/", {"file": _upload("PatientID,StudyDate,Modality,Server\n" + rows)})
    assert only_refused.status_code == 400
    assert {e["line"] for e in only_refused.json()["row_errors"]} == {2, 3}
    assert "You may not retrieve from server 'ORTH'" in only_refused.json()["row_errors"][0]["message"]


def _upload(text: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("cases.csv", text.encode(), content_type="text/csv")


@pytest.mark.orthanc
def test_a_row_fails_when_access_was_withdrawn_after_the_list_was_read(api, user, closed_server, groups,
                                                                       orthanc_dataset):
    study = orthanc_dataset["studies"][0]
    user.groups.add(groups[0])
    created = api.post("/api/retrievals/", {"rows": [{"StudyInstanceUID": study["StudyInstanceUID"],
                                                      "Server": "ORTH"}]}, format="json")
    assert created.status_code == 201, created.content
    closed_server.retrieve_groups.clear()
    job = RetrievalJob.objects.get(pk=created.json()["id"])
    item = job.items.get()
    runner.run_item(item._meta.label, item.pk)
    item.refresh_from_db()
    assert item.status == "failed" and item.instances == 0
    assert item.error.startswith("You may not retrieve from server 'ORTH'")


def test_check_access_rules(django_user_model, groups):
    server = DicomServer.objects.create(name="S", ae_title="S", host="127.0.0.1", port=104)
    radiologist = django_user_model.objects.create_user("rad")
    radiologist.groups.add(groups[0])
    nurse = django_user_model.objects.create_user("nurse")
    boss = django_user_model.objects.create_superuser("boss", email="")
    for action in ("query", "retrieve", "send"):  # open to everyone: the default, one-user installs need nothing
        server.check_access(nurse, action)
    server.open_to_everyone = False
    server.save()
    server.send_groups.add(groups[0])
    server.check_access(radiologist, "send")
    server.check_access(boss, "send")  # a superuser may everything
    server.check_access(None, "send")  # the portal itself: command line, watched inboxes
    with pytest.raises(ServerAccessDenied, match="You may not send to server 'S'"):
        server.check_access(nurse, "send")
    with pytest.raises(ServerAccessDenied, match="You may not query server 'S'"):
        server.check_access(radiologist, "query")  # groups are per action
    with pytest.raises(ValueError, match="unknown server access 'delete'"):
        server.check_access(radiologist, "delete")
