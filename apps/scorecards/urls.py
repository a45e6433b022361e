from django.urls import path

from . import views

app_name = "scorecards"
urlpatterns = [
    path("", views.portfolio, name="portfolio"),
    path("<slug:slug>/", views.scorecard, name="scorecard"),
]
