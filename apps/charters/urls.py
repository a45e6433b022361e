from django.urls import path

from . import views

app_name = "charters"
urlpatterns = [
    path("", views.charter_list, name="list"),
    path("new/", views.charter_create, name="create"),
    path("<slug:slug>/", views.charter_detail, name="detail"),
    path("<slug:slug>/edit/", views.charter_edit, name="edit"),
    path("<slug:slug>/transition/<str:name>/", views.charter_transition, name="transition"),
    path("<slug:slug>/share/", views.charter_share, name="share"),
    path("<slug:slug>/unshare/", views.charter_unshare, name="unshare"),
]
