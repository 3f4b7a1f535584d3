"""API routes of the photo page's contract (with or without a trailing slash) and the upload history."""
from django.urls import re_path

from apps.photos.api.views import PacsEchoView, PhotoUploadViewSet, SettingsInfoView, SettingsView, StudiesView
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("photo-uploads", PhotoUploadViewSet)
urlpatterns = [
    re_path(r"^studies/?$", StudiesView.as_view(), name="photos-studies"),
    re_path(r"^pacs/echo/?$", PacsEchoView.as_view(), name="photos-echo"),
    re_path(r"^settings/info/?$", SettingsInfoView.as_view(), name="photos-settings-info"),
    re_path(r"^settings/?$", SettingsView.as_view(), name="photos-settings"),
    *router.urls,
]
