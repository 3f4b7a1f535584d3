"""Research projects: a de-identification profile (PS3.15 E.1-1 Basic, with options), a secret that keys
the project's UIDs and pseudonyms, and the map from each original PatientID to its pseudonym and date
shift. The transform itself is Django-free: apps/dicom/deidentify.py."""
from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import IntegrityError, models, transaction

from apps.dicom import deidentify
from apps.projects.pseudonymize import Pseudonymizer

NAME_RULE = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}\Z",
                           "A project name is 1 to 40 letters, digits, '-' or '_', starting with a letter or digit "
                           "(it starts every pseudonym).")
OPTION_CHOICES = [(o, o) for o in deidentify.OPTIONS]


def new_secret() -> str:
    return secrets.token_hex(32)


def validate_options(value) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("options is a list of option names.")
    unknown = sorted(set(value) - set(deidentify.OPTIONS))
    if unknown:
        raise ValidationError(f"Unknown option(s) {', '.join(unknown)}; the options are "
                              f"{', '.join(deidentify.OPTIONS)}.")
    if len(set(value)) != len(value):
        raise ValidationError("An option is named twice.")


class Project(models.Model):
    class Profile(models.TextChoices):
        BASIC = deidentify.PROFILE_BASIC, "PS3.15 E.1-1 Basic Application Level Confidentiality Profile"

    name = models.CharField(max_length=40, unique=True, validators=[NAME_RULE])
    description = models.TextField(blank=True)
    profile = models.CharField(max_length=20, choices=Profile.choices, default=Profile.BASIC)
    options = models.JSONField(default=list, blank=True, validators=[validate_options],
                               help_text="Any of: " + ", ".join(deidentify.OPTIONS))
    max_date_shift_days = models.PositiveIntegerField(
        default=30, validators=[MaxValueValidator(3650)],
        help_text="With retain-longitudinal-dates, each patient's dates move by a fixed number of days "
                  "between -N and N (never 0).")
    allow_burned_in = models.BooleanField(
        default=False, help_text="Pass on instances that may show text in their pixels (Burned In Annotation "
                                 "YES; secondary capture or ultrasound not saying NO). Off: they are held back.")
    # Keys the project's UIDs, pseudonyms and date shifts. Never shown: not in the API, the admin, logs or
    # the change log.
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("view_pseudonym_map", "Can view the pseudonym map (original PatientID, pseudonym, date shift)"),
            ("handle_identified_data", "May handle identified data (retrieve, send or deliver without a project)"),
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Project {self.name}>"

    def recipe(self) -> deidentify.Recipe:
        """The transform's view of this project (UIDs cached on it, so keep one per job or worker)."""
        return deidentify.Recipe(bytes.fromhex(self.secret), self.options, allow_burned_in=self.allow_burned_in)

    def deidentify_file(self, source):
        """De-identify one instance (bytes or a path) for this project: a `Deidentified` with the bytes,
        the new SOP Instance UID and the layout values. Jobs keep one `pseudonymizer()` instead."""
        if getattr(self, "_pseudonymizer", None) is None:
            self._pseudonymizer = self.pseudonymizer()
        return self._pseudonymizer.file(source)

    def pseudonymizer(self):
        return Pseudonymizer(self)

    def patient(self, patient_id: str) -> deidentify.Patient:
        """The patient's pseudonym and date shift, made on first sight. Two workers racing for a new
        patient compute the same keyed values; the unique constraints let one row in, the other reads it."""
        row = Pseudonym.objects.filter(project=self, patient_id=patient_id).first()
        if row is None:
            secret = bytes.fromhex(self.secret)
            for attempt in range(5):  # another patient's keyed hash taking this one: next variant
                keyed = patient_id if attempt == 0 else f"{patient_id}\0{attempt}"
                keys = deidentify.patient_keys(secret, self.name, keyed, self.max_date_shift_days)
                try:
                    with transaction.atomic():
                        row = Pseudonym.objects.create(project=self, patient_id=patient_id,
                                                       pseudonym=keys.pseudonym,
                                                       date_shift_days=keys.date_shift_days)
                    break
                except IntegrityError:
                    row = Pseudonym.objects.filter(project=self, patient_id=patient_id).first()
                    if row is not None:
                        break
            else:
                raise RuntimeError(f"project {self.name}: no free pseudonym after 5 attempts")
        return deidentify.Patient(row.pseudonym, row.date_shift_days)


class Pseudonym(models.Model):
    """One patient of one project: the original PatientID, its pseudonym and date shift. Shown only to
    holders of "view pseudonym map", every look audited."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="pseudonyms")
    patient_id = models.CharField(max_length=64)
    pseudonym = models.CharField(max_length=64)
    date_shift_days = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ()  # seen through the project's "view pseudonym map", nowhere else
        ordering = ["project", "pseudonym"]
        constraints = [
            models.UniqueConstraint(fields=["project", "patient_id"], name="one_pseudonym_per_patient"),
            models.UniqueConstraint(fields=["project", "pseudonym"], name="one_patient_per_pseudonym"),
        ]

    def __str__(self) -> str:
        return self.pseudonym
