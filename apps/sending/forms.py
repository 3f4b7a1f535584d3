from django import forms

from apps.jobs.forms import MultipleFileField, MultipleFileInput
from apps.projects.access import project_choice
from apps.sending.models import SendJob
from apps.servers.models import DicomServer


class SendForm(forms.Form):
    servers = forms.ModelMultipleChoiceField(DicomServer.objects.all(), to_field_name="name",
                                             widget=forms.CheckboxSelectMultiple, help_text="Every file goes to each.")
    path = forms.CharField(required=False, max_length=500, label="File or folder on the server",
                           help_text="Inside IMPORT_ROOTS; folders are sent with everything below them.")
    files = MultipleFileField(required=False, widget=MultipleFileInput(attrs={"multiple": True}), label="Or upload files")
    method = forms.ChoiceField(choices=SendJob.Method.choices, initial=SendJob.Method.C_STORE)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"] = project_choice(user)

    def clean_files(self):
        return [upload for upload in self.cleaned_data.get("files") or [] if upload]

    def clean(self):
        data = super().clean()
        if bool((data.get("path") or "").strip()) == bool(data.get("files")):
            raise forms.ValidationError("Give a path on the server or upload files (one of the two).")
        return data
