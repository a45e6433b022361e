"""Filters of the prompt API."""

import django_filters
from django.db import connection
from django.db.models import Q

from apps.charters.choices import RiskTier
from apps.prompts.choices import PromptStatus, TaskType
from apps.prompts.models import Prompt


class PromptFilter(django_filters.FilterSet):
    charter = django_filters.CharFilter(field_name="charter__slug")
    task_type = django_filters.MultipleChoiceFilter(choices=TaskType.choices)
    risk_level = django_filters.MultipleChoiceFilter(choices=RiskTier.choices)
    status = django_filters.MultipleChoiceFilter(choices=PromptStatus.choices)
    model_family = django_filters.CharFilter()
    business_function = django_filters.CharFilter()
    owner = django_filters.CharFilter(field_name="owner__username")
    tag = django_filters.CharFilter(method="filter_tag")
    q = django_filters.CharFilter(method="filter_q")

    class Meta:
        model = Prompt
        fields = [
            "charter",
            "task_type",
            "risk_level",
            "status",
            "model_family",
            "business_function",
            "owner",
            "tag",
            "q",
        ]

    def filter_tag(self, queryset, name, value):
        if connection.features.supports_json_field_contains:
            return queryset.filter(tags__contains=[value])
        return queryset.filter(tags__icontains=f'"{value}"')

    def filter_q(self, queryset, name, value):
        return queryset.filter(
            Q(name__icontains=value) | Q(description__icontains=value) | Q(slug__icontains=value)
        )
