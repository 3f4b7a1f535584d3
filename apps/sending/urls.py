from pacsportal.api_router import ApiRouter

from apps.sending.api.views import InboxViewSet, SendJobViewSet

router = ApiRouter()
router.register("sends", SendJobViewSet)
router.register("inboxes", InboxViewSet)
urlpatterns = router.urls
