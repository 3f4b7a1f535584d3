"""Form pieces every app's admin pages share."""
from django import forms


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A multiple file input hands over a list; FileField alone takes one file and calls a list
    "No file was submitted" (Django's documented pattern for several files in one field)."""

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) and data else [data]  # [] still fails 'required'
        return [super(MultipleFileField, self).clean(one, initial) for one in files]
