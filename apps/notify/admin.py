from django.contrib import admin

from apps.notify.models import AlertThrottle, MailPreference


@admin.register(MailPreference)
class MailPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "job_ended"]
    list_filter = ["job_ended"]
    search_fields = ["user__username"]
    autocomplete_fields = ["user"]


@admin.register(AlertThrottle)
class AlertThrottleAdmin(admin.ModelAdmin):
    """When each operator alert was last mailed; kept by apps/notify/operators.py, read-only here."""
    list_display = ["cause", "sent_at", "held_back", "last_subject"]
    readonly_fields = ["cause", "sent_at", "held_back", "last_subject"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
