"""Who may handle identified data, and the `project` field every job intake takes (retrievals,
deliveries, sends, inboxes): a project's name, refused with its name when unknown; without one, the
account needs "may handle identified data"."""
from __future__ import annotations

from django import forms
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from apps.projects.models import NAME_RULE, Project

IDENTIFIED = "projects.handle_identified_data"
NEEDS_PROJECT = ("This account may not handle identified data (it needs the 'projects.handle_identified_data' "
                 "permission): name a research project ('project') so the images are de-identified.")
PROJECT_HELP = "A research project's name: the images are de-identified for it (PS3.15 E.1-1, its options)."


def may_handle_identified(user) -> bool:
    return bool(user and user.is_active and user.has_perm(IDENTIFIED))


def refusal(user, project) -> str | None:
    """Why this user may not start this work, or None: without a project, the data stays identified."""
    if project is None and not may_handle_identified(user):
        return NEEDS_PROJECT
    return None


def require_project(user, project) -> None:
    """Raise a 403 naming the rule unless the user may handle identified data or names a project."""
    problem = refusal(user, project)
    if problem:
        raise PermissionDenied(problem)


def project_named(name) -> Project | None:
    """The project of that name, None for an empty name; raises ValueError naming an unknown one."""
    if name in (None, ""):
        return None
    if not isinstance(name, str):
        raise ValueError("Give the project's name (a text).")
    name = name.strip()
    found = Project.objects.filter(name=name).first() if NAME_RULE.regex.match(name) else None
    if found is None:
        raise ValueError(f"Unknown project {name[:40]!r}; see /api/projects/ for the projects.")
    return found


@extend_schema_field(OpenApiTypes.STR)  # a project's name
class ProjectField(serializers.Field):
    """`project` on a job request: a name in, the Project out (None when empty); a 400 naming an unknown one."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("default", None)
        kwargs.setdefault("help_text", PROJECT_HELP)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return project_named(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value.name if isinstance(value, Project) else value


class ProjectNameField(serializers.SlugRelatedField):
    """A job's or inbox's project as its name (read and write)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "name")
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("help_text", PROJECT_HELP)
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Project.objects.all())
        super().__init__(**kwargs)
        self.error_messages["does_not_exist"] = "Unknown project '{value}'; see /api/projects/ for the projects."


def project_choice(user, *, label: str = "Research project") -> forms.ModelChoiceField:
    """The admin forms' project choice: optional for those who may handle identified data, required (only
    projects offered) for everyone else."""
    identified = may_handle_identified(user)
    return forms.ModelChoiceField(
        Project.objects.all(), required=not identified, to_field_name="name", label=label,
        empty_label="— none: identified data —" if identified else None,
        help_text=PROJECT_HELP + ("" if identified else " Your account may not handle identified data: "
                                                         "choose a project."))
