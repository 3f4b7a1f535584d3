from apps.projects.api.views import ProjectViewSet
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("projects", ProjectViewSet)
urlpatterns = router.urls
