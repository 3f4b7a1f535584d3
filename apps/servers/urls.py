from rest_framework.routers import SimpleRouter

from apps.servers.api.views import DicomServerViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("servers", DicomServerViewSet)
urlpatterns = router.urls
