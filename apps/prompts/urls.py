from django.urls import path

from . import views

app_name = "prompts"
urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("new/", views.prompt_create, name="create"),
    path("<slug:slug>/", views.prompt_detail, name="detail"),
    path("<slug:slug>/edit/", views.prompt_edit, name="edit"),
    path("<slug:slug>/diff/", views.diff, name="diff"),
    path("<slug:slug>/versions/new/", views.version_form, name="version_create"),
    path("<slug:slug>/versions/<int:number>/", views.version_detail, name="version_detail"),
    path("<slug:slug>/versions/<int:number>/edit/", views.version_form, name="version_edit"),
    path(
        "<slug:slug>/versions/<int:number>/<str:action>/",
        views.version_action,
        name="version_action",
    ),
    path("<slug:slug>/<str:action>/", views.prompt_action, name="prompt_action"),
]
