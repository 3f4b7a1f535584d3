"""The admin as a technologist meets it: branded, ordered by the work, the task queue for superusers only."""
import pytest
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def section_order(html: str, labels) -> list[int]:
    return [html.index(f'class="app-{label} module') for label in labels]


def test_the_index_is_branded_and_ordered_by_work_then_settings_then_people(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    html = client.get("/admin/").content.decode()
    assert "PACS Portal" in html and "Django administration" not in html
    positions = section_order(html, ["retrieval", "servers", "auth", "audit"])
    assert positions == sorted(positions), "retrieve first, then servers, then users, then the audit trail"
    assert 'class="app-django_q module' in html, "a superuser sees the task queue"


def test_the_task_queue_is_for_superusers_only(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["django_q", "retrieval"]))
    client.force_login(staff)
    html = client.get("/admin/").content.decode()
    assert 'class="app-retrieval module' in html
    assert "django_q" not in html
    assert client.get("/admin/django_q/schedule/").status_code == 403


def test_a_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("core/favicon.svg")
    assert finders.find("core/favicon.svg")
