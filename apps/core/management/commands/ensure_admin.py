"""manage.py ensure_admin — make sure an admin account exists (used by `make run`).

Username from DJANGO_SUPERUSER_USERNAME (default "admin"); password from DJANGO_SUPERUSER_PASSWORD,
or generated and printed once, when the account is created. An existing account is left alone.
"""
import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin account if it does not exist yet."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin account '{username}' exists.")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(
                f"Created admin account '{username}' with password: {password}\n"
                "  (shown once; set DJANGO_SUPERUSER_PASSWORD to choose it)"))
        else:
            self.stdout.write(f"Created admin account '{username}'.")
