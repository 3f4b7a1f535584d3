from django.urls import re_path

from apps.notify.api import my_notifications

urlpatterns = [
    re_path(r"^me/notifications/?$", my_notifications, name="my-notifications"),
]
