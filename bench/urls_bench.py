"""The product's URLs plus /bench/trivial, the baseline a benchmark compares against."""

from django.http import JsonResponse
from django.urls import path

from aifactory.urls import urlpatterns as product


def trivial(request):
    """The cheapest Django view: no database, no authentication, a tiny JSON body."""
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/trivial", trivial), *product]
