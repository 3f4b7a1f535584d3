"""Attacks on rows searched on several servers, from an account over the API with its own token, against two
real Orthancs: '*' never reaches a server the account may not query, a list naming one it may not use is a bad
row with the reason, and access withdrawn after the upload stops the whole row before any server is asked."""
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.retrieval.models import RetrievalJob
from tests.retrieval.test_integrity import run
from tests.retrieval.test_several_servers import two_pacs  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)
ROW = {"PatientID": "ORT00001", "StudyDate": "2021-03-01..2021-03-03"}


@pytest.fixture
def client(user):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def closed_to_queries(server, user) -> None:
    """`user` may retrieve from `server` but not query it."""
    group = Group.objects.create(name=f"retrievers-{server.name}")
    user.groups.add(group)
    server.open_to_everyone = False
    server.save()
    server.retrieve_groups.set([group])


def start(client, server_cell: str):
    response = client.post("/api/retrievals/", {"rows": [{**ROW, "Server": server_cell}]}, format="json")
    assert response.status_code in (201, 400), response.content
    return response


def test_star_never_reaches_a_server_the_account_may_not_query(two_pacs, client, user, settings):  # noqa: F811
    closed_to_queries(two_pacs["servers"]["S"], user)
    response = start(client, "*")
    job = RetrievalJob.objects.get(pk=response.json()["id"])
    item = run(job).items.get()
    assert item.server_list == ["A"], "'*' is every server the account may query and retrieve from"
    assert item.status == "succeeded", item.error
    assert not (Path(settings.DOWNLOADS_DIR) / "S").exists()
    assert two_pacs["only_s"] not in item.result["found_on"], "S, which holds it, was never asked"


def test_a_list_naming_a_server_the_account_may_not_retrieve_from_is_a_bad_row(two_pacs, client):  # noqa: F811
    server = two_pacs["servers"]["S"]
    server.open_to_everyone = False
    server.save()
    response = start(client, "A|S")
    assert response.status_code == 400
    assert "You may not retrieve from server 'S'" in str(response.json()), response.json()
    assert not RetrievalJob.objects.exists()


def test_access_withdrawn_after_the_upload_stops_the_row_before_any_server_is_asked(two_pacs, client, settings):  # noqa: F811
    job = RetrievalJob.objects.get(pk=start(client, "A|S").json()["id"])
    server = two_pacs["servers"]["S"]
    server.open_to_everyone = False
    server.save()
    item = run(job).items.get()
    assert item.status == "failed" and "You may not retrieve from server 'S'" in item.error
    assert not Path(settings.DOWNLOADS_DIR).exists() or not any(Path(settings.DOWNLOADS_DIR).rglob("*.dcm"))


def test_a_list_with_a_server_the_account_may_not_query_fails_when_it_runs(two_pacs, client, user, settings):  # noqa: F811
    closed_to_queries(two_pacs["servers"]["S"], user)
    job = RetrievalJob.objects.get(pk=start(client, "A|S").json()["id"])
    item = run(job).items.get()
    assert item.status == "failed" and "You may not query server 'S'" in item.error
    assert not any(Path(settings.DOWNLOADS_DIR).rglob("*.dcm"))
