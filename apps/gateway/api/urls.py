from django.urls import path

from .views import ExecuteView

urlpatterns = [path("prompts/<slug:slug>/execute", ExecuteView.as_view(), name="prompt-execute")]
