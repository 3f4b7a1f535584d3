from django.contrib import admin

from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail is evidence: readable by staff, changeable by nobody (not even superusers)."""

    list_display = ["at", "actor_name", "action", "target", "client_address"]
    list_filter = ["actor", "action", "at"]
    date_hierarchy = "at"
    search_fields = ["actor_name", "action", "target"]
    readonly_fields = ["at", "actor", "actor_name", "action", "target", "details", "client_address"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
