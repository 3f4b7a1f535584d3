from django.apps import AppConfig


class PhotosConfig(AppConfig):
    name = "apps.photos"
    label = "photos"
    verbose_name = "Photos to PACS"

    def ready(self):
        from auditlog.registry import auditlog

        from apps.photos.models import PhotoSettings

        auditlog.register(PhotoSettings)  # who changed the photo settings, and what

        from apps.jobs.registry import register
        from apps.photos import work
        from apps.photos.models import PhotoSend

        register(PhotoSend, work.send_photos)
