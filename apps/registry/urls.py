from django.urls import path

from . import views

app_name = "registry"

urlpatterns = [
    path("", views.endpoint_list, name="endpoint_list"),
    path("<slug:slug>/", views.endpoint_detail, name="endpoint_detail"),
]
