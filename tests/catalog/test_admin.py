"""The catalog's admin pages follow DICOMweb's rule: a staff user who may view the catalog sees their own
rows only, another account's row is a 404; "view all jobs" sees all; nobody adds, changes or deletes."""
import pytest
from django.contrib.auth.models import Permission

from apps.catalog.models import Instance
from tests.catalog.conftest import file_like_retrieval

pytestmark = pytest.mark.django_db


def staff(django_user_model, name, *codenames):
    person = django_user_model.objects.create_user(name, is_staff=True)
    person.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return person


def test_staff_see_their_own_rows_only(client, django_user_model, template, settings, tmp_path):
    settings.DOWNLOADS_DIR = tmp_path / "downloads"
    mine, theirs = staff(django_user_model, "mine", "view_instance"), staff(django_user_model, "theirs")
    file_like_retrieval(template, settings.DOWNLOADS_DIR / "a", mine, patients=1)
    file_like_retrieval(template, settings.DOWNLOADS_DIR / "b", theirs, patients=1, server="OTHER")
    own, other = Instance.objects.filter(owner=mine).first(), Instance.objects.filter(owner=theirs).first()
    client.force_login(mine)
    listing = client.get("/admin/catalog/instance/")
    assert listing.status_code == 200
    assert own.study_instance_uid in listing.content.decode() and other.study_instance_uid not in listing.content.decode()
    assert client.get(f"/admin/catalog/instance/{own.pk}/change/").status_code == 200
    assert client.get(f"/admin/catalog/instance/{other.pk}/change/").status_code == 404
    assert client.get(f"/admin/catalog/instance/{own.pk}/delete/").status_code == 403
    assert client.get("/admin/catalog/instance/add/").status_code == 403
    boss = staff(django_user_model, "boss", "view_instance", "view_all_jobs")
    client.force_login(boss)
    assert client.get(f"/admin/catalog/instance/{other.pk}/change/").status_code == 200
