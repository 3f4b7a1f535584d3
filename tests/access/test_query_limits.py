"""Query limits on the real Orthanc: a study query that names no patient, date, accession or study lists
every patient of the PACS, so it needs "query without filter"; answers are capped at QUERY_MAX_RESULTS
with a message that there were more."""
import pytest
from django.contrib.auth.models import Permission

from apps.servers.models import DicomServer

pytestmark = [pytest.mark.django_db, pytest.mark.orthanc]


@pytest.fixture
def orth(orthanc):
    peer = orthanc.peer()
    return DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port)


@pytest.fixture
def querier(user):
    """A user who may query, but not without a filter."""
    user.user_permissions.set(Permission.objects.filter(codename="query_server"))
    return user


@pytest.mark.parametrize("query", ["", "?Modality=CT", "?PatientID=*", "?PatientName=*&StudyDate="])
def test_an_unfiltered_query_needs_the_permission(api, querier, orth, query):
    refused = api.get(f"/api/servers/ORTH/studies{query}")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("A query without PatientID, PatientName, StudyDate, AccessionNumber "
                                               "or StudyInstanceUID lists every patient of the server")


def test_with_the_permission_it_runs_and_is_capped(api, querier, orth, orthanc_dataset, settings):
    querier.user_permissions.add(Permission.objects.get(codename="query_without_filter"))
    settings.QUERY_MAX_RESULTS = 4
    body = api.get("/api/servers/ORTH/studies").json()
    assert len(orthanc_dataset["studies"]) == 6
    assert (body["count"], body["more"], len(body["studies"])) == (4, True, 4)
    assert body["message"] == ("More results than shown: the first 4 studies the server answered are shown, and it "
                               "has more. Narrow the query (PatientID, StudyDate, Modality) to see the rest.")
    assert {s["StudyInstanceUID"] for s in body["studies"]} < {s["StudyInstanceUID"] for s in orthanc_dataset["studies"]}
    settings.QUERY_MAX_RESULTS = 6
    whole = api.get("/api/servers/ORTH/studies").json()
    assert (whole["count"], whole["more"], "message" in whole) == (6, False, False)


def test_a_filtered_query_needs_only_query_server(api, querier, orth, orthanc_dataset):
    patient = orthanc_dataset["studies"][0]["PatientID"]
    body = api.get(f"/api/servers/ORTH/studies?PatientID={patient}").json()
    assert body["count"] == 2 and not body["more"]
