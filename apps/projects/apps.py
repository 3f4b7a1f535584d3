from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "apps.projects"
    label = "projects"
    verbose_name = "Research projects"

    def ready(self):
        from apps.audit import track_changes
        from apps.projects.models import Project

        # Project changes are recorded by django-auditlog, without the secret (it never leaves the database).
        track_changes(Project, exclude_fields=["secret", "updated_at"])
