from rest_framework.routers import SimpleRouter

from .views import ModelEndpointViewSet

router = SimpleRouter()
router.register("registry/endpoints", ModelEndpointViewSet, basename="model-endpoint")

urlpatterns = router.urls
