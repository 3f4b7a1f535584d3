from django.apps import AppConfig


class RetrievalConfig(AppConfig):
    name = "apps.retrieval"
    label = "retrieval"
    verbose_name = "Retrieval from PACS"

    def ready(self):
        from apps.catalog import sources
        from apps.jobs.registry import register
        from apps.retrieval import catalogued, work
        from apps.retrieval.models import RetrievalItem

        register(RetrievalItem, work.retrieve)
        sources.register("retrieval", catalogued.claims)
