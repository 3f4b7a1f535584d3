"""Server names are unique without regard to case ('orth' beside 'ORTH' let case-list rows meant for one
reach the other), in the API, the admin and the database; the migration refuses existing clashes and
names them; lookups by name are case-exact."""
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from apps.servers.models import DicomServer

SERVER = {"ae_title": "ORTH", "host": "127.0.0.1", "port": 4242}


@pytest.mark.django_db
def test_the_api_refuses_a_name_that_differs_only_by_case(api):
    DicomServer.objects.create(name="ORTH", **SERVER)
    response = api.post("/api/servers/", {"name": "orth", **SERVER}, format="json")
    assert response.status_code == 400
    assert response.json() == {"name": ["Server 'ORTH' already exists; names are compared without regard to case."]}
    other = DicomServer.objects.create(name="LK", **SERVER)
    renamed = api.patch(f"/api/servers/{other.name}/", {"name": "Orth"}, format="json")
    assert renamed.status_code == 400 and "'ORTH' already exists" in renamed.json()["name"][0]
    assert api.patch("/api/servers/ORTH/", {"name": "Orth"}, format="json").status_code == 200  # itself


@pytest.mark.django_db
def test_lookups_by_name_are_case_exact(api):
    DicomServer.objects.create(name="ORTH", **SERVER)
    assert api.get("/api/servers/ORTH/").status_code == 200
    assert api.get("/api/servers/orth/").status_code == 404
    assert api.delete("/api/servers/orth/").status_code == 404 and DicomServer.objects.filter(name="ORTH").exists()


@pytest.mark.django_db
def test_the_admin_form_refuses_it_with_the_reason(admin_client_logged_in):
    DicomServer.objects.create(name="ORTH", **SERVER)
    form = {"name": "orth", "ae_title": "X", "host": "127.0.0.1", "port": 104, "query_timeout": 30,
            "download_timeout": 120, "retries": 0, "retrieve_method": "c-move", "max_associations": 2,
            "dicomweb_auth": "none", "open_to_everyone": "on"}
    page = admin_client_logged_in.post("/admin/servers/dicomserver/add/", form)
    assert page.status_code == 200
    assert "names are compared without regard to case" in page.content.decode()
    assert DicomServer.objects.count() == 1


@pytest.mark.django_db
def test_the_database_refuses_it_too():
    DicomServer.objects.create(name="ORTH", **SERVER)
    with pytest.raises(IntegrityError), transaction.atomic():
        DicomServer.objects.create(name="Orth", **SERVER)


@pytest.mark.django_db(transaction=True)
def test_the_migration_refuses_existing_clashes_and_names_them():
    before, after = [("servers", "0002_server_access")], [("servers", "0003_server_names_unique_ignoring_case")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = MigrationExecutor(connection).loader.project_state(before[0]).apps.get_model("servers", "DicomServer")
        for name in ("orth", "ORTH", "LK"):
            old.objects.create(name=name, **SERVER)
        with pytest.raises(RuntimeError) as refused:
            MigrationExecutor(connection).migrate(after)
        assert str(refused.value).startswith("DICOM server names must be unique without regard to case, and "
                                             "these differ only by case: 'ORTH' and 'orth'. Rename or delete")
        old.objects.filter(name="orth").delete()
    finally:
        MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert sorted(DicomServer.objects.values_list("name", flat=True)) == ["LK", "ORTH"]

