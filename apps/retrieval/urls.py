from rest_framework.routers import SimpleRouter

from apps.retrieval.api.views import RetrievalJobViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("retrievals", RetrievalJobViewSet)
urlpatterns = router.urls
