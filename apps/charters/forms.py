"""Plain web forms for charters; their cleaned data goes to the services, never to `save()`."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.forms import BaseFormSet, formset_factory

from .choices import (
    Criticality,
    DataSensitivity,
    DependencyKind,
    MetricDirection,
    MetricLayer,
    MetricRole,
    RiskTier,
)
from .models import Charter, Metric

# A required select starts on this so that an untouched extra row stays "unchanged" and is ignored.
CHOOSE = [("", "Choose…")]
ACCESS_CHOICES = [("view", "Can view"), ("change", "Can view and edit")]


def _help(model, field: str) -> str:
    return str(model._meta.get_field(field).help_text)


def _text(rows: int = 3) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows})


def _decimal(label: str, help_text: str = "") -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=False,
        max_digits=18,
        decimal_places=4,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"step": "any"}),
    )


class OwnerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        full = obj.get_full_name()
        return f"{full} ({obj.username})" if full else obj.username


class CharterForm(forms.Form):
    """A charter's sections; completeness is checked when it is submitted, not while drafting."""

    title = forms.CharField(max_length=200)
    business_owner = OwnerChoiceField(
        queryset=get_user_model().objects.none(),
        help_text="Accountable for the outcome; gets edit access to the charter.",
    )
    risk_tier = forms.ChoiceField(choices=RiskTier.choices, initial=RiskTier.MEDIUM)
    data_sensitivity = forms.ChoiceField(
        choices=DataSensitivity.choices, initial=DataSensitivity.INTERNAL
    )
    review_date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="When the charter is looked at again; must be in the future to submit.",
    )
    problem = forms.CharField(required=False, widget=_text(4), help_text=_help(Charter, "problem"))
    process = forms.CharField(required=False, widget=_text(4), help_text=_help(Charter, "process"))
    proof = forms.CharField(required=False, widget=_text(4), help_text=_help(Charter, "proof"))
    target_users = forms.CharField(
        required=False, widget=_text(2), help_text=_help(Charter, "target_users")
    )
    intended_use = forms.CharField(
        required=False,
        widget=_text(3),
        help_text="What the output may be used for, and what it must never be used for.",
    )
    retirement_condition = forms.CharField(
        required=False,
        widget=_text(2),
        help_text="The observable condition under which this initiative is switched off.",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["business_owner"].queryset = (
            get_user_model()
            .objects.filter(is_active=True)
            .order_by("first_name", "last_name", "username")
        )


class MetricForm(forms.Form):
    """One metric row of the charter form."""

    id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    name = forms.CharField(max_length=120)
    layer = forms.ChoiceField(choices=CHOOSE + MetricLayer.choices)
    role = forms.ChoiceField(
        choices=MetricRole.choices,
        initial=MetricRole.SUPPORTING,
        help_text="One primary business-outcome metric, at least two supporting ones.",
    )
    direction = forms.ChoiceField(choices=CHOOSE + MetricDirection.choices)
    unit = forms.CharField(max_length=32, required=False, help_text=_help(Metric, "unit"))
    baseline_value = _decimal("Baseline")
    target_value = _decimal("Target")
    guardrail_value = _decimal("Guardrail", _help(Metric, "guardrail_value"))
    allowed_segment_keys = forms.CharField(
        label="Segment keys",
        required=False,
        help_text="Comma-separated, e.g. language, geography, user_role.",
    )
    description = forms.CharField(required=False, widget=_text(2))

    def clean_allowed_segment_keys(self) -> list[str]:
        keys: list[str] = []
        for part in self.cleaned_data["allowed_segment_keys"].split(","):
            key = part.strip()
            if key and key not in keys:
                keys.append(key)
        return keys


class DependencyForm(forms.Form):
    """One entry of the dependency map."""

    id = forms.IntegerField(required=False, widget=forms.HiddenInput)
    kind = forms.ChoiceField(choices=CHOOSE + DependencyKind.choices)
    name = forms.CharField(max_length=200)
    criticality = forms.ChoiceField(choices=Criticality.choices, initial=Criticality.MEDIUM)
    notes = forms.CharField(required=False)
    endpoint = forms.ModelChoiceField(
        queryset=None,
        required=False,
        to_field_name="slug",
        label="Registry entry",
        help_text="For a model or vendor: the approved endpoint it runs on.",
    )

    def __init__(self, *args, **kwargs):
        from apps.registry.choices import EndpointStatus
        from apps.registry.models import ModelEndpoint

        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = ModelEndpoint.objects.exclude(
            status=EndpointStatus.RETIRED
        )


class RowFormSet(BaseFormSet):
    """Rows with a "remove" checkbox; untouched extra rows are ignored."""

    deletion_label = "Remove"

    def add_fields(self, form, index) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = self.deletion_label

    def rows(self) -> list[tuple[forms.Form, dict]]:
        """(form, cleaned data) for each row that is filled in and not removed; call after is_valid."""
        kept = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE"):
                continue
            row = {key: value for key, value in data.items() if key not in ("id", "DELETE")}
            if data.get("id"):
                row["id"] = data["id"]
            kept.append((form, row))
        return kept


class MetricRowFormSet(RowFormSet):
    deletion_label = "Remove this metric"


class DependencyRowFormSet(RowFormSet):
    deletion_label = "Remove this dependency"


MetricFormSet = formset_factory(MetricForm, formset=MetricRowFormSet, extra=1, can_delete=True)
DependencyFormSet = formset_factory(
    DependencyForm, formset=DependencyRowFormSet, extra=1, can_delete=True
)


class ShareForm(forms.Form):
    """Give someone access to a charter by username."""

    username = forms.CharField(max_length=150)
    access = forms.ChoiceField(choices=ACCESS_CHOICES, initial="view")


class UnshareForm(forms.Form):
    username = forms.CharField(max_length=150)
