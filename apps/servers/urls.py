from apps.servers.api.views import DicomServerViewSet
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("servers", DicomServerViewSet)
urlpatterns = router.urls
