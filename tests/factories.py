"""Factories shared by every app's tests: users in their groups, charters, metrics."""

import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from guardian.shortcuts import assign_perm

from apps.charters.choices import (
    CharterStatus,
    DependencyKind,
    MetricDirection,
    MetricLayer,
    MetricRole,
)
from apps.charters.models import Charter, Dependency, Metric
from apps.core import groups

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            for name in extracted:
                self.groups.add(Group.objects.get_or_create(name=name)[0])
        if create:
            self.save()


def business_owner(username="olivia", **kw):
    return UserFactory(username=username, groups=[groups.BUSINESS_OWNERS], **kw)


def compliance_officer(username="carl", **kw):
    return UserFactory(username=username, groups=[groups.COMPLIANCE], **kw)


def platform_engineer(username="pat", **kw):
    return UserFactory(username=username, groups=[groups.PLATFORM], **kw)


def outsider(username="oscar", **kw):
    return UserFactory(username=username, groups=[groups.BUSINESS_OWNERS], **kw)


class CharterFactory(factory.django.DjangoModelFactory):
    """A complete draft charter: it can be submitted as is (metrics and dependency included)."""

    class Meta:
        model = Charter
        skip_postgeneration_save = True

    title = factory.Sequence(lambda n: f"Support reply drafting {n}")
    slug = factory.Sequence(lambda n: f"support-reply-drafting-{n}")
    problem = "Agents spend 40% of their time writing routine replies."
    process = "The model drafts a reply in the helpdesk; the agent edits and sends it."
    proof = "Handle time falls 20% with CSAT unchanged over an 8-week pilot."
    business_owner = factory.SubFactory(UserFactory)
    created_by = factory.SelfAttribute("business_owner")
    target_users = "Tier-1 support agents (EN, DE, FR)"
    intended_use = "Draft replies for human review; never sent automatically."
    review_date = factory.LazyFunction(lambda: timezone.localdate() + dt.timedelta(days=90))
    retirement_condition = "Retire if handle time has not improved after two quarters."
    status = CharterStatus.DRAFT

    @factory.post_generation
    def complete(self, create, extracted, **kwargs):
        """Grant the owner their access and add the metrics and dependency a submit needs."""
        if not create:
            return
        for codename in ("view_charter", "change_charter", "delete_charter"):
            assign_perm(codename, self.business_owner, self)
        if extracted is False:
            return
        MetricFactory(
            charter=self,
            name="Average handle time",
            role=MetricRole.PRIMARY,
            layer=MetricLayer.BUSINESS_OUTCOME,
            direction=MetricDirection.DECREASE,
            unit="minutes",
            baseline_value=Decimal("12"),
            target_value=Decimal("9.5"),
        )
        MetricFactory(charter=self, name="Draft acceptance rate", layer=MetricLayer.OUTPUT_QUALITY)
        MetricFactory(
            charter=self,
            name="Time to first draft",
            layer=MetricLayer.WORKFLOW_EFFICIENCY,
            direction=MetricDirection.DECREASE,
            baseline_value=Decimal("60"),
            target_value=Decimal("5"),
            unit="seconds",
        )
        DependencyFactory(charter=self)


class MetricFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Metric

    charter = factory.SubFactory(CharterFactory, complete=False)
    name = factory.Sequence(lambda n: f"Metric {n}")
    layer = MetricLayer.OUTPUT_QUALITY
    role = MetricRole.SUPPORTING
    unit = "%"
    direction = MetricDirection.INCREASE
    baseline_value = Decimal("40")
    target_value = Decimal("70")
    allowed_segment_keys = factory.LazyFunction(lambda: ["language"])


class DependencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dependency

    charter = factory.SubFactory(CharterFactory, complete=False)
    kind = DependencyKind.SYSTEM
    name = factory.Sequence(lambda n: f"Zendesk {n}")
    notes = "Reads tickets, writes draft replies."


def approved_endpoint(base_url, *, slug="local-llm", models=("local-llm",), **fields):
    """An approved registry endpoint for a test server on the loopback (allowed as private).

    Tests build it directly: approval itself is tested through the approvals workflow."""
    from apps.registry.models import ModelEndpoint

    values = {
        "name": slug.replace("-", " ").title(),
        "base_url": base_url,
        "model_names": list(models),
        "vendor": "internal",
        "data_location": "on_premises",
        "status": "approved",
        "allow_private": True,
        "allow_private_reason": "test model server on the loopback",
        "max_retries": 0,
        "timeout_s": 5,
        **fields,
    }
    endpoint, _ = ModelEndpoint.objects.update_or_create(slug=slug, defaults=values)
    return endpoint
