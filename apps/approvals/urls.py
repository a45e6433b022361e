from django.urls import path

from . import views

app_name = "approvals"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("<int:pk>/", views.request_detail, name="request_detail"),
    path("<int:pk>/withdraw/", views.request_withdraw, name="request_withdraw"),
    path("raci/<slug:slug>/", views.raci_matrix, name="raci"),
    path("charter/<slug:slug>/request/", views.charter_request, name="charter_request"),
    path("audit/", views.timeline, name="timeline"),
    path("evidence/<slug:slug>.<str:fmt>", views.evidence_pack, name="evidence"),
]
