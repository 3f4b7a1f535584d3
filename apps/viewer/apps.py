from django.apps import AppConfig


class ViewerConfig(AppConfig):
    name = "apps.viewer"
    verbose_name = "Viewer"
