from django.apps import AppConfig


class PhotosConfig(AppConfig):
    name = "apps.photos"
    label = "photos"
    verbose_name = "Photos to PACS"

    def ready(self):
        from apps.audit import track_changes
        from apps.catalog import sources
        from apps.jobs.registry import register
        from apps.photos import catalogued, work
        from apps.photos.models import PhotoSend, PhotoSettings

        track_changes(PhotoSettings)  # who changed the photo settings, and what
        register(PhotoSend, work.send_photos)
        sources.register("photos", catalogued.claims)
