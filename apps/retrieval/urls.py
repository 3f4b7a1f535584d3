from pacsportal.api_router import ApiRouter

from apps.retrieval.api.views import RetrievalJobViewSet

router = ApiRouter()
router.register("retrievals", RetrievalJobViewSet)
urlpatterns = router.urls
