from apps.sending.api.views import InboxViewSet, SendJobViewSet
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("sends", SendJobViewSet)
router.register("inboxes", InboxViewSet)
urlpatterns = router.urls
