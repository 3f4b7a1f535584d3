from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "apps.projects"
    label = "projects"
    verbose_name = "Research projects"

    def ready(self):
        # Project changes are recorded by django-auditlog, without the secret (it never leaves the database).
        from auditlog.registry import auditlog

        from apps.projects.models import Project

        if not auditlog.contains(Project):
            auditlog.register(Project, exclude_fields=["secret", "updated_at"])
