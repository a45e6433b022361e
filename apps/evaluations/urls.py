from django.urls import path

from . import views

app_name = "evaluations"
urlpatterns = [
    path("", views.index, name="index"),
    path("datasets/", views.dataset_list, name="dataset_list"),
    path("datasets/new/", views.dataset_create, name="dataset_create"),
    path("datasets/<slug:slug>/", views.dataset_detail, name="dataset_detail"),
    path("datasets/<slug:slug>/v<int:number>/", views.dataset_version, name="dataset_version"),
    path("datasets/<slug:slug>/v<int:number>/export/", views.dataset_export, name="dataset_export"),
    path("models/", views.artifact_list, name="artifact_list"),
    path("models/<slug:slug>/", views.artifact_detail, name="artifact_detail"),
    path("suites/new/", views.suite_create, name="suite_create"),
    path("suites/<slug:slug>/", views.suite_detail, name="suite_detail"),
    path("suites/<slug:slug>/edit/", views.suite_edit, name="suite_edit"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
]
