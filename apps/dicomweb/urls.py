"""/dicomweb/ (PS3.18): every route with and without a trailing slash."""
from django.urls import re_path

from apps.dicomweb import views

UID = r"(?P<{}>[0-9.]{{1,64}})"
S, SE, I = UID.format("study"), UID.format("series"), UID.format("sop")
F = r"(?P<frames>[0-9,]{1,200})"

urlpatterns = [
    re_path(r"^studies/?$", views.Studies.as_view(), name="dicomweb-studies"),
    re_path(r"^series/?$", views.StudySeries.as_view(), name="dicomweb-series"),
    re_path(r"^instances/?$", views.Instances.as_view(), name="dicomweb-instances"),
    re_path(rf"^studies/{S}/?$", views.Retrieve.as_view()),
    re_path(rf"^studies/{S}/metadata/?$", views.Metadata.as_view()),
    re_path(rf"^studies/{S}/rendered/?$", views.Rendered.as_view()),
    re_path(rf"^studies/{S}/thumbnail/?$", views.Thumbnail.as_view()),
    re_path(rf"^studies/{S}/series/?$", views.StudySeries.as_view()),
    re_path(rf"^studies/{S}/instances/?$", views.Instances.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/?$", views.Retrieve.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/metadata/?$", views.Metadata.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/rendered/?$", views.Rendered.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/thumbnail/?$", views.Thumbnail.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/?$", views.Instances.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/{I}/?$", views.Retrieve.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/{I}/metadata/?$", views.Metadata.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/{I}/rendered/?$", views.Rendered.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/{I}/thumbnail/?$", views.Thumbnail.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/{I}/frames/{F}/?$", views.Frames.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/{I}/frames/{F}/rendered/?$", views.Rendered.as_view()),
    re_path(rf"^studies/{S}/series/{SE}/instances/{I}/frames/{F}/thumbnail/?$", views.Thumbnail.as_view()),
    re_path(r"^", views.Unknown.as_view(), name="dicomweb-unknown"),  # last: every other path
]
