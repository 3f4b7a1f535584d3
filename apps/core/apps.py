from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What belongs to the portal as a whole rather than to one workflow: starting every process
    (`runportal`), the first admin account (`ensure_admin`), and the admin site's branding and order."""

    name = "apps.core"
    label = "core"
    verbose_name = "PACS Portal"

    def ready(self):
        from django.contrib import admin

        from apps.core.admin_site import restrict_to_superusers

        restrict_to_superusers(admin.site)

