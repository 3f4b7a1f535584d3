import pytest

from tests.fixtures_common import own_data_folders
from tests.notify.smtp import SMTPServer


@pytest.fixture
def smtp(settings):
    """A real SMTP server started for the test, and the portal's e-mail pointed at it."""
    server = SMTPServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield server
    server.stop()


@pytest.fixture
def operators(db, django_user_model):
    """Two members of the operators group and one user outside it. The group comes from a migration
    (test_operators.py checks), but a transactional test's flush removes it for the tests after it."""
    from django.contrib.auth.models import Group

    group, _ = Group.objects.get_or_create(name="operators")
    members = [django_user_model.objects.create_user(username=f"op{n}", email=f"op{n}@example.org")
               for n in (1, 2)]
    group.user_set.add(*members)
    django_user_model.objects.create_user(username="outsider", email="outsider@example.org")
    return members


@pytest.fixture
def server(db, orthanc, settings, tmp_path):
    """The session Orthanc as server B, retrieved from with C-GET (no receiver needed), filing into folders of the
    test's own."""
    from apps.servers.models import DicomServer

    own_data_folders(settings, tmp_path)
    peer = orthanc.peer()
    return DicomServer.objects.create(name="B", ae_title=peer.ae_title, host=peer.host, port=peer.port,
                                      retrieve_method="c-get", retries=0)


@pytest.fixture
def owner(user):
    """The `user` fixture with an e-mail address."""
    user.email = "tech@example.org"
    user.save(update_fields=["email"])
    return user
