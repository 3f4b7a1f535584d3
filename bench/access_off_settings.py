"""The portal's settings with the API access layer taken out (DRF's own token authentication and
IsAuthenticated, no lockout check, no throttle): only the same-run reference of bench/access.py."""
from pacsportal.settings import *  # noqa: F403

REST_FRAMEWORK = {**REST_FRAMEWORK,  # noqa: F405
                  "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
                  "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
                  "DEFAULT_THROTTLE_CLASSES": []}
