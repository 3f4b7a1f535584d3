from apps.retrieval.api.views import RetrievalJobViewSet
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("retrievals", RetrievalJobViewSet)
urlpatterns = router.urls
