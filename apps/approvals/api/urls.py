from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import (
    ApprovalRequestViewSet,
    CharterDecisionRequestView,
    EvidencePackView,
    RaciItemView,
    RaciView,
    TimelineView,
)

router = SimpleRouter()
router.register("approvals/requests", ApprovalRequestViewSet, basename="approval-request")

urlpatterns = [
    path("charters/<slug:slug>/raci/", RaciView.as_view(), name="charter-raci"),
    path("charters/<slug:slug>/raci/<int:pk>/", RaciItemView.as_view(), name="charter-raci-item"),
    path("charters/<slug:slug>/evidence/", EvidencePackView.as_view(), name="charter-evidence"),
    path(
        "charters/<slug:slug>/request/<str:name>/",
        CharterDecisionRequestView.as_view(),
        name="charter-decision-request",
    ),
    path("audit/", TimelineView.as_view(), name="audit-timeline"),
    *router.urls,
]
