from django.urls import re_path

from apps.delivery.api.uploads import UploadCollection, UploadResource
from apps.delivery.api.views import DeliveryJobViewSet, DeliveryTargetViewSet
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("delivery-targets", DeliveryTargetViewSet)
router.register("deliveries", DeliveryJobViewSet)
urlpatterns = [
    re_path(r"^uploads/?$", UploadCollection.as_view(), name="upload-collection"),
    re_path(r"^uploads/(?P<pk>[^/.]+)/?$", UploadResource.as_view(), name="upload-resource"),
    *router.urls,
]
