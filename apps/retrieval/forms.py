from django import forms

from apps.jobs.forms import MultipleFileField, MultipleFileInput
from apps.projects.access import project_choice
from apps.servers.models import DicomServer


class ProjectChoice:
    """A `project` choice for the user (only projects for those who may not handle identified data)."""

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"] = project_choice(user)


class CaseListUploadForm(ProjectChoice, forms.Form):
    """The admin shows it with the registered attachments' fields after these (extensions.with_forms)."""

    field_order = ["files", "timeout", "default_server"]  # attachments' fields come last
    files = MultipleFileField(widget=MultipleFileInput(attrs={"multiple": True, "accept": ".csv,.txt,.xlsx,text/csv"}),
                              label="Case lists (CSV or Excel .xlsx)",
                              help_text="PatientID,StudyDate,Modality,Server — one job per file; of a workbook, "
                                        "the first sheet.")
    timeout = forms.IntegerField(required=False, min_value=1, max_value=86400, label="Download timeout (s)",
                                 help_text="Empty: each server's own download timeout.")
    default_server = forms.ModelChoiceField(DicomServer.objects.all(), required=False, to_field_name="name",
                                            help_text="Used for rows that leave Server empty.")


class ConfirmForm(ProjectChoice, forms.Form):
    """The preview's hidden fields, checked again: they come back from the browser."""

    timeout = forms.IntegerField(required=False, min_value=1, max_value=86400, label="Download timeout (s)")
    default_server = forms.CharField(required=False, max_length=32)


class SingleQueryForm(ProjectChoice, forms.Form):
    patient_id = forms.CharField(label="PatientID", max_length=64,
                                 help_text="Exact: no wildcards (* ? \\); a retrieval fetches only this patient.")
    study_date = forms.CharField(label="StudyDate", help_text="YYYY-MM-DD, or YYYY-MM-DD..YYYY-MM-DD")
    modality = forms.CharField(required=False, max_length=16, help_text="e.g. CT; empty for any")
    server = forms.ModelChoiceField(DicomServer.objects.all(), to_field_name="name")
    timeout = forms.IntegerField(required=False, min_value=1, max_value=86400, label="Download timeout (s)")
