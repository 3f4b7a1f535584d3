from django.urls import path

from apps.viewer import views

urlpatterns = [
    path("app-config.js", views.config_js, name="viewer-config"),
    path("", views.page, name="viewer"),
    path("<path:path>", views.page, name="viewer-file"),
]
