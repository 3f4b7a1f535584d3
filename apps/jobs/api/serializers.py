"""Base serializers every app's job API subclasses:

    class RetrievalItemSerializer(JobItemSerializer):
        class Meta(JobItemSerializer.Meta):
            model = RetrievalItem
            fields = JobItemSerializer.Meta.fields + ["line", "PatientID", ...]

    class RetrievalJobSerializer(JobSerializer):
        items = RetrievalItemSerializer(many=True, read_only=True)
        class Meta(JobSerializer.Meta):
            model = RetrievalJob
"""
from rest_framework import serializers


class JobItemSerializer(serializers.ModelSerializer):
    class Meta:
        fields = ["id", "status", "error", "waiting", "attempts", "result", "started_at", "finished_at"]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.DictField(read_only=True, help_text="Item counters: total, pending, running, "
                                     "succeeded, failed, timed_out, canceled, and the app's own.")
    waiting = serializers.CharField(source="waiting_reason", read_only=True,
                                    help_text="Why pending items are held back (a pause, a server's window); "
                                              "empty when nothing is.")

    class Meta:
        fields = ["id", "status", "urgent", "notify", "paused", "waiting", "description", "created_at", "started_at",
                  "completed_at", "progress", "items"]
        read_only_fields = ["id", "status", "urgent", "notify", "paused", "waiting", "created_at", "started_at",
                            "completed_at", "progress", "items"]
