from rest_framework.routers import SimpleRouter

from .views import CharterViewSet, MetricViewSet

router = SimpleRouter()
router.register("charters", CharterViewSet, basename="charter")
router.register("metrics", MetricViewSet, basename="metric")

urlpatterns = router.urls
