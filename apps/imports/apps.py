from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "apps.imports"
    label = "imports"
    verbose_name = "Folder imports"

    def ready(self):
        # Changes to a stored patient (an admin correcting a name) are recorded by django-auditlog; images
        # are recorded per batch by audit.record("images.imported"), not one log row each.
        from auditlog.registry import auditlog

        from apps.imports.models import ImportedPatient

        if not auditlog.contains(ImportedPatient):
            auditlog.register(ImportedPatient)

        from apps.imports import work
        from apps.imports.models import ImportItem
        from apps.jobs.registry import register

        register(ImportItem, work.import_item)
