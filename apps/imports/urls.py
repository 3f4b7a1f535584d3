from apps.imports.api.views import ImageViewSet, ImportJobViewSet, PatientViewSet
from pacsportal.api_router import ApiRouter

router = ApiRouter()
router.register("imports", ImportJobViewSet)
router.register("patients", PatientViewSet, basename="imported-patient")
router.register("images", ImageViewSet, basename="imported-image")
urlpatterns = router.urls
