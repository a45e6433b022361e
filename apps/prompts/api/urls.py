from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import (
    ApplicationViewSet,
    PromptViewSet,
    RenderView,
    ResolveView,
    VersionViewSet,
    WaiveView,
)

router = SimpleRouter()
router.register("prompts", PromptViewSet, basename="prompt")
router.register("applications", ApplicationViewSet, basename="application")

version = "prompts/<slug:slug>/versions/<int:number>/"
urlpatterns = [
    path("prompts/<slug:slug>/resolve", ResolveView.as_view(), name="prompt-resolve"),
    path("prompts/<slug:slug>/render", RenderView.as_view(), name="prompt-render"),
    path(
        version,
        VersionViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="prompt-version",
    ),
    *[
        path(
            f"{version}{name}/",
            VersionViewSet.as_view({method: name}),
            name=f"prompt-version-{name}",
        )
        for name, method in (
            ("submit", "post"),
            ("approve", "post"),
            ("reject", "post"),
            ("promote", "post"),
            ("label", "post"),
            ("findings", "get"),
        )
    ],
    path("findings/<int:pk>/waive/", WaiveView.as_view(), name="finding-waive"),
    *router.urls,
]
