from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "apps.imports"
    label = "imports"
    verbose_name = "Folder imports"

    def ready(self):
        from apps.audit import track_changes
        from apps.catalog import sources
        from apps.imports import catalogued, work
        from apps.imports.models import ImportedPatient, ImportItem
        from apps.jobs.registry import register

        # Changes to a stored patient (an admin correcting a name) are recorded by django-auditlog; images
        # are recorded per batch by audit.record("images.imported"), not one log row each.
        track_changes(ImportedPatient)
        register(ImportItem, work.import_item)
        sources.register("imports", catalogued.claims)
