from apps.servers.api.echo_jobs import EchoJobViewSet
from apps.servers.api.views import DicomServerViewSet
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("servers", DicomServerViewSet)
router.register("echo-jobs", EchoJobViewSet)
urlpatterns = router.urls
