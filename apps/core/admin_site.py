"""The admin as a technologist sees it: "PACS Portal", and the index ordered by the work people come to
do (retrieve, send, import, photos, delivery), then the configuration (servers, jobs' own settings), then
people and traces (users, groups, tokens, audit). The task queue's internals are for superusers only."""
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

# App labels in the order of the index; apps not named here follow, alphabetically.
WORK = ["retrieval", "sending", "imports", "photos", "delivery", "catalog"]
CONFIGURATION = ["servers", "projects", "jobs", "core"]
PEOPLE_AND_TRACES = ["auth", "authtoken", "notify", "audit", "auditlog"]
SUPERUSER_ONLY = {"django_q"}
ORDER = WORK + CONFIGURATION + PEOPLE_AND_TRACES


class PortalAdminSite(admin.AdminSite):
    site_header = "PACS Portal"
    site_title = "PACS Portal"
    index_title = "What do you want to do?"
    index_template = "admin/portal_index.html"  # the dashboard above the list of what to do

    def get_app_list(self, request, app_label=None):
        apps = [app for app in super().get_app_list(request, app_label)
                if request.user.is_superuser or app["app_label"] not in SUPERUSER_ONLY]
        rank = {label: n for n, label in enumerate(ORDER)}
        return sorted(apps, key=lambda app: (rank.get(app["app_label"], len(ORDER)), app["name"]))


class SuperuserOnlyAdmin:
    """Mixed into the task queue's own ModelAdmins: staff permissions alone do not open them."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    has_add_permission = has_change_permission = has_delete_permission = has_view_permission


def restrict_to_superusers(site: admin.AdminSite) -> None:
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label in SUPERUSER_ONLY and not isinstance(model_admin, SuperuserOnlyAdmin):
            site.unregister(model)
            site.register(model, type(f"SuperuserOnly{type(model_admin).__name__}",
                                      (SuperuserOnlyAdmin, type(model_admin)), {}))


class PortalAdminConfig(AdminConfig):
    """django.contrib.admin with this site (INSTALLED_APPS names it instead of django.contrib.admin)."""

    default_site = "apps.core.admin_site.PortalAdminSite"
