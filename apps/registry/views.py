"""The registry's web pages: a read-only list and detail for everyone signed in."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from apps.approvals.choices import RequestKind
from apps.approvals.services import visible_requests

from . import permissions, selectors, services
from .choices import DataLocation, EndpointStatus


@login_required
def endpoint_list(request):
    """Every registered endpoint, filterable by status and data location."""
    endpoints = selectors.endpoint_list_visible(request.user)
    status = request.GET.get("status", "")
    location = request.GET.get("data_location", "")
    if status in EndpointStatus.values:
        endpoints = endpoints.filter(status=status)
    if location in DataLocation.values:
        endpoints = endpoints.filter(data_location=location)
    return render(
        request,
        "registry/list.html",
        {
            "endpoints": endpoints,
            "statuses": EndpointStatus.choices,
            "locations": DataLocation.choices,
            "status": status,
            "location": location,
            "can_propose": permissions.can(request.user, permissions.PROPOSE),
            "tier_locations": services.tier_locations(),
        },
    )


@login_required
def endpoint_detail(request, slug: str):
    """One endpoint: its data boundary, who uses it, and the decisions about it."""
    endpoint = selectors.endpoint_by_slug(slug)
    if (
        endpoint is None
        or not selectors.endpoint_list_visible(request.user).filter(pk=endpoint.pk).exists()
    ):
        raise Http404
    from apps.charters.selectors import charter_list_visible

    charters = charter_list_visible(request.user).filter(dependencies__endpoint=endpoint).distinct()
    return render(
        request,
        "registry/detail.html",
        {
            "endpoint": endpoint,
            "charters": charters,
            "requests": visible_requests(request.user)
            .filter(kind=RequestKind.ENDPOINT, endpoint=endpoint)
            .select_related("requested_by")[:20],
            "history": endpoint.history.select_related("history_user").order_by("-history_date")[
                :20
            ],
            "can_operate": permissions.can(request.user, permissions.OPERATE),
        },
    )
