"""Stored secrets (API tokens, DICOMweb passwords) in the admin: never shown back. Editors get an empty
password box (left empty, the stored secret stays); a user who may only view sees whether one is set."""
from django import forms
from django.contrib import admin

KEEP_HINT = "Never shown once stored. Leave empty to keep the current one."


class SecretFieldsAdminMixin:
    secret_fields: tuple[str, ...] = ()

    def keeps_stored_secret(self, obj, name: str, data: dict) -> bool:
        """Whether an empty box keeps obj's stored secret `name`; an admin says no when what the secret
        belongs to changed in `data` (a URL pointed elsewhere must not take the credential along)."""
        return True

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and db_field.name in self.secret_fields:
            field.widget = forms.PasswordInput(render_value=False)
            field.help_text = " ".join(t for t in (str(field.help_text or ""), KEEP_HINT) if t)
        return field

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        secrets = [name for name in self.secret_fields if name in form.base_fields]
        if not secrets:
            return form

        model_admin = self

        class KeepStoredSecrets(form):
            def clean(self):
                data = super().clean()
                for name in secrets:  # before the model's own checks, which may need the secret
                    if name in data and not data[name] and self.instance.pk \
                            and model_admin.keeps_stored_secret(self.instance, name, data):
                        data[name] = getattr(self.instance, name)
                return data

        return KeepStoredSecrets

    @admin.display(description="Stored secrets")
    def stored_secrets(self, obj):
        if obj is None:
            return "-"
        labels = {f.name: f.verbose_name for f in obj._meta.fields}
        return "; ".join(f"{labels.get(name, name)}: {'set (never shown)' if getattr(obj, name) else 'not set'}"
                         for name in self.secret_fields)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            return fieldsets
        # Only viewing: every field is printed read-only, the secrets too. One line says which are set.
        shown, placed = [], False
        for title, options in fieldsets:
            fields = []
            for entry in options.get("fields", ()):
                names = entry if isinstance(entry, (list, tuple)) else (entry,)
                kept = [n for n in names if n not in self.secret_fields]
                if len(kept) < len(names) and not placed:
                    kept.append("stored_secrets")
                    placed = True
                if kept:
                    fields.append(tuple(kept) if isinstance(entry, (list, tuple)) else kept[0])
            shown.append((title, {**options, "fields": fields}))
        return shown

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly if self.has_change_permission(request, obj) else readonly + ["stored_secrets"]
