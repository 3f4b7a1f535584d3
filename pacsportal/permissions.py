"""The API's permission rule: Django's model permissions, the very ones the admin's groups grant.

`ModelPermissions` is the default for every DRF view (settings.REST_FRAMEWORK):
- list / retrieve (and any GET): `<app>.view_<model>`; create: `add`; update: `change`; destroy: `delete`;
- a view may name the permissions of an action in `action_permissions = {"echo": ["servers.view_dicomserver"]}`
  (or compute them in `get_action_permissions()`), which is how custom perms such as "start retrieval" and
  "query server" are required;
- a custom action that changes something (POST, PUT, PATCH, DELETE) and names no permission is refused, and so is
  any view without a queryset that does not set its own `permission_classes`: a new route never opens by default.

Views that serve no model (metrics, job progress, schema) set `permission_classes` themselves.
"""
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from rest_framework import exceptions, permissions

STANDARD_ACTIONS = {"list", "retrieve", "create", "update", "partial_update", "destroy", "metadata"}
VIEW = ["%(app_label)s.view_%(model_name)s"]


class ModelPermissions(permissions.DjangoModelPermissions):
    perms_map = {**permissions.DjangoModelPermissions.perms_map, "GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW}

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = self.required_permissions(request, view)
        return needed is not None and user.has_perms(needed)

    def required_permissions(self, request, view) -> list[str] | None:
        """The permissions this request needs; None when no rule covers it (refused)."""
        action = getattr(view, "action", None)
        declared = view.get_action_permissions() if hasattr(view, "get_action_permissions") else \
            getattr(view, "action_permissions", {})
        if action in declared:
            return list(declared[action])
        if action and action not in STANDARD_ACTIONS and request.method not in permissions.SAFE_METHODS:
            return None
        try:
            model = self._queryset(view).model
        except (AssertionError, AttributeError):
            return None
        return self.get_required_permissions(request.method, model)


def model_permission(model, verb: str) -> str:
    """'app_label.<verb>_<model_name>', e.g. model_permission(RetrievalJob, "change")."""
    return f"{model._meta.app_label}.{verb}_{model._meta.model_name}"


def api_exception_handler(exc, context):
    """DRF's handler, except that Django's PermissionDenied keeps its message (e.g. which server refuses
    which user) instead of DRF's generic "You do not have permission to perform this action"."""
    from rest_framework.views import exception_handler  # imported late: it loads the default permission classes

    if isinstance(exc, DjangoPermissionDenied) and exc.args:
        exc = exceptions.PermissionDenied(str(exc))
    return exception_handler(exc, context)
