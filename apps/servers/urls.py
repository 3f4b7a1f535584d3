from pacsportal.api_router import ApiRouter

from apps.servers.api.views import DicomServerViewSet

router = ApiRouter()
router.register("servers", DicomServerViewSet)
urlpatterns = router.urls
