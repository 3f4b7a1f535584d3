"""The phone page under /photos/: the page, its login, and the PWA files that must live in its scope."""
from django.contrib.auth.views import LogoutView
from django.urls import path

from apps.photos import views

app_name = "photos"
urlpatterns = [
    path("", views.photo_page, name="page"),
    path("login/", views.PhotoLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(next_page="photos:login"), name="logout"),
    path("manifest.webmanifest", views.manifest, name="manifest"),
    path("sw.js", views.service_worker, name="sw"),
]
