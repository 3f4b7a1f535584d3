import pytest

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
    """Two members of the operators group (created by a migration) and one user outside it."""
    from django.contrib.auth.models import Group

    group = Group.objects.get(name="operators")
    members = [django_user_model.objects.create_user(username=f"op{n}", email=f"op{n}@example.org")
               for n in (1, 2)]
    group.user_set.add(*members)
    django_user_model.objects.create_user(username="outsider", email="outsider@example.org")
    return members
