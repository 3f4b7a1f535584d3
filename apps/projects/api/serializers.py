from django.core.exceptions import ValidationError
from rest_framework import serializers

from apps.projects.models import Project, validate_options


class ProjectSerializer(serializers.ModelSerializer):
    """A project as the API shows it: never its secret, never its map (that is /pseudonyms, for the few)."""

    options = serializers.ListField(child=serializers.CharField(), required=False,
                                    help_text=Project._meta.get_field("options").help_text)

    class Meta:
        model = Project
        fields = ["name", "description", "profile", "options", "max_date_shift_days", "allow_burned_in",
                  "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_name(self, value: str) -> str:
        clash = Project.objects.filter(name__iexact=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
            if value != self.instance.name and self.instance.pseudonyms.exists():
                raise serializers.ValidationError(
                    "This project has pseudonyms, which start with its name; it cannot be renamed.")
        if clash.exists():
            raise serializers.ValidationError(
                f"Project '{clash.first().name}' already exists; names are compared without regard to case.")
        return value

    def validate_options(self, value):
        try:
            validate_options(value)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value


class PseudonymRowSerializer(serializers.Serializer):
    PatientID = serializers.CharField(source="patient_id")
    pseudonym = serializers.CharField()
    date_shift_days = serializers.IntegerField()
