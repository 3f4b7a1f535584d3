from django.db.models import Count
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.jobs.api.serializers import JobItemSerializer, JobSerializer
from apps.projects.access import ProjectField, ProjectNameField
from apps.projects.masking import Mask
from apps.retrieval import extensions
from apps.retrieval.models import RetrievalItem, RetrievalJob


class RetrievalItemSerializer(JobItemSerializer):
    PatientID = serializers.CharField(source="patient_id")
    StudyDate = serializers.CharField(source="study_date")
    Modality = serializers.CharField(source="modality")
    Server = serializers.CharField(source="server_name")
    StudyInstanceUID = serializers.CharField(source="study_instance_uid")
    MaxStudies = serializers.IntegerField(source="max_studies", allow_null=True)
    AccessionNumber = serializers.CharField(source="accession_number")
    SeriesDescription = serializers.CharField(source="series_description")
    SeriesModality = serializers.CharField(source="series_modality")
    SeriesInstanceUID = serializers.CharField(source="series_instance_uid")
    found = serializers.SerializerMethodField(help_text="Studies a query row found.")

    class Meta(JobItemSerializer.Meta):
        model = RetrievalItem
        fields = JobItemSerializer.Meta.fields + [
            "line", "PatientID", "StudyDate", "Modality", "Server", "StudyInstanceUID", "expected", "instances",
            "bytes", "path", "AccessionNumber", "MaxStudies", "flag", "found", "SeriesDescription",
            "SeriesModality", "SeriesInstanceUID"]

    def get_found(self, item) -> int:
        return item.found_count if hasattr(item, "found_count") else item.found.count()

    def to_representation(self, item):
        shown = super().to_representation(item)
        mask = self.context.get("mask")  # a project's job: no original next to a pseudonym
        return mask.retrieval_row(shown, item.patient_id, item.study_date) if mask else shown


ITEMS_PAGE_SIZE, ITEMS_PAGE_SIZE_MAX = 100, 1000


class RetrievalJobListSerializer(JobSerializer):
    """A job in the list: counters, no items (a list of 100,000-row jobs must stay small)."""

    status = serializers.CharField(source="shown_status", read_only=True,
                                   help_text="The job's status, or 'preparing' while its rows are created.")
    project = ProjectNameField(read_only=True)
    row_errors = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        model = RetrievalJob
        fields = [f for f in JobSerializer.Meta.fields if f != "items"] + ["source_name", "timeout", "row_errors",
                                                                          "mode", "query_job", "project"]

    def get_fields(self):
        """The declared fields and what registered attachments show of a job (apps/retrieval/extensions.py)."""
        shown = {name: make() for a in extensions.attachments() for name, make in a.job_fields.items()}
        return {**super().get_fields(), **shown}

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_row_errors(self, job) -> list:
        if not job.project_id:
            return job.row_errors
        mask = Mask(job.project)
        return [mask.retrieval_row(e, "", "") for e in job.row_errors]


class RetrievalJobSerializer(RetrievalJobListSerializer):
    """A job with one page of its items, in line order (the request's ?page=, ?page_size=, ?status=)."""

    items = serializers.SerializerMethodField()
    items_page = serializers.SerializerMethodField()

    class Meta(RetrievalJobListSerializer.Meta):
        fields = RetrievalJobListSerializer.Meta.fields + ["items", "items_page"]

    def _page(self, job) -> tuple:
        if not hasattr(self, "_cached_page"):
            params = getattr(self.context.get("request"), "query_params", {})
            items = job.items.order_by("line", "pk").annotate(found_count=Count("found"))
            if params.get("status"):
                items = items.filter(status=params["status"])
            size = _whole(params.get("page_size"), ITEMS_PAGE_SIZE, ITEMS_PAGE_SIZE_MAX)
            count = items.count()
            pages = max(1, -(-count // size))
            page = min(_whole(params.get("page"), 1, pages), pages)
            self._cached_page = (list(items[(page - 1) * size:page * size]), page, size, count, pages)
        return self._cached_page

    @extend_schema_field(RetrievalItemSerializer(many=True))
    def get_items(self, job):
        context = {"mask": Mask(job.project)} if job.project_id else {}
        return RetrievalItemSerializer(self._page(job)[0], many=True, context=context).data

    @extend_schema_field(serializers.DictField())
    def get_items_page(self, job) -> dict:
        _, page, size, count, pages = self._page(job)
        return {"page": page, "page_size": size, "count": count, "pages": pages,
                "next": page + 1 if page < pages else None, "previous": page - 1 if page > 1 else None}


def _whole(text, default: int, most: int) -> int:
    """A positive page number or size from the query string; anything else is the default."""
    return min(int(text), most) if str(text or "").isdigit() and int(text) > 0 else default


class RetrievalRowSerializer(serializers.Serializer):
    PatientID = serializers.CharField(required=False, allow_blank=True, default="")
    StudyDate = serializers.CharField(required=False, allow_blank=True, default="")
    Modality = serializers.CharField(required=False, allow_blank=True, default="")
    Server = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="A server's name, 'A|B' (searched in order) or '*' (every server you may use).")
    StudyInstanceUID = serializers.CharField(required=False, allow_blank=True, default="")
    SeriesDescription = serializers.CharField(required=False, allow_blank=True, default="",
                                              help_text="Exact, or '~text': series whose description contains text.")
    SeriesModality = serializers.CharField(required=False, allow_blank=True, default="")
    SeriesInstanceUID = serializers.CharField(required=False, allow_blank=True, default="")
    AccessionNumber = serializers.CharField(required=False, allow_blank=True, default="")
    MaxStudies = serializers.CharField(required=False, allow_blank=True, default="",
                                       help_text="A query row finding more studies than this is flagged.")


class RetrievalRequestSerializer(serializers.Serializer):
    """Either multipart `file` (one or more case lists: one job each) or JSON `rows`."""

    file = serializers.FileField(required=False, help_text="A case-list CSV; repeat the field for several.")
    rows = RetrievalRowSerializer(many=True, required=False)
    timeout = serializers.IntegerField(required=False, min_value=1, max_value=86400, allow_null=True)
    server = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="Server for rows that name none (like the CLI's --server).")
    mode = serializers.ChoiceField(choices=RetrievalJob.Mode.choices, required=False, default="retrieve",
                                   help_text="'query': every row runs its C-FINDs and records what it found; "
                                             "nothing is moved (GET …/results).")
    project = ProjectField()

    def get_fields(self):
        """The declared fields and one per registered attachment (apps/retrieval/extensions.py)."""
        return {**super().get_fields(), **{a.name: a.request_field() for a in extensions.attachments()}}


class RetrieveFoundSerializer(serializers.Serializer):
    """POST {id}/retrieve on a query job: which found studies to retrieve (all when left out)."""

    studies = serializers.ListField(child=serializers.CharField(max_length=64), required=False, allow_null=True,
                                    allow_empty=False, max_length=100_000,
                                    help_text="StudyInstanceUIDs the query found; leave out for all of them.")
    timeout = serializers.IntegerField(required=False, min_value=1, max_value=86400, allow_null=True)
