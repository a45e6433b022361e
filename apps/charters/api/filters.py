"""Filters of the charter API."""

import django_filters
from django.db.models import Q

from apps.charters.choices import CharterStatus, DataSensitivity, MetricLayer, MetricRole, RiskTier
from apps.charters.models import Charter, Metric
from apps.charters.selectors import charter_overdue_q


class CharterFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=CharterStatus.choices)
    risk_tier = django_filters.MultipleChoiceFilter(choices=RiskTier.choices)
    data_sensitivity = django_filters.MultipleChoiceFilter(choices=DataSensitivity.choices)
    owner = django_filters.CharFilter(field_name="business_owner__username")
    review_overdue = django_filters.BooleanFilter(method="filter_overdue")
    q = django_filters.CharFilter(method="filter_q", help_text="Search title, slug and problem.")
    ordering = django_filters.OrderingFilter(
        fields=("title", "updated_at", "review_date", "status", "risk_tier")
    )

    class Meta:
        model = Charter
        fields = ["status", "risk_tier", "data_sensitivity", "owner", "review_overdue", "q"]

    def filter_overdue(self, queryset, name, value):
        return (
            queryset.filter(charter_overdue_q()) if value else queryset.exclude(charter_overdue_q())
        )

    def filter_q(self, queryset, name, value):
        return queryset.filter(
            Q(title__icontains=value) | Q(slug__icontains=value) | Q(problem__icontains=value)
        )


class MetricFilter(django_filters.FilterSet):
    charter = django_filters.CharFilter(field_name="charter__slug")
    layer = django_filters.MultipleChoiceFilter(choices=MetricLayer.choices)
    role = django_filters.ChoiceFilter(choices=MetricRole.choices)

    class Meta:
        model = Metric
        fields = ["charter", "layer", "role"]
