from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import ArtifactViewSet, DatasetViewSet, OutputsJsonlView, RunViewSet, SuiteViewSet

router = SimpleRouter()
router.register("evaluations/datasets", DatasetViewSet, basename="evaluation-dataset")
router.register("evaluations/artifacts", ArtifactViewSet, basename="evaluation-artifact")
router.register("evaluations/suites", SuiteViewSet, basename="evaluation-suite")
router.register("evaluations/runs", RunViewSet, basename="evaluation-run")

urlpatterns = [
    path(
        "evaluations/runs/<int:pk>/outputs.jsonl",
        OutputsJsonlView.as_view(),
        name="evaluation-run-outputs-jsonl",
    ),
    *router.urls,
]
