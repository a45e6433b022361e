"""Forms for prompt authors; they shape input, the services decide."""

import json

from django import forms
from django.forms import formset_factory

from apps.charters.choices import RiskTier
from apps.core import jsonlimits

from .choices import ChangeKind, MessageRole, TaskType, TemplateKind


class CommaListField(forms.CharField):
    """'a, b , c' ↔ ['a', 'b', 'c']."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value):
        return [item.strip() for item in (value or "").split(",") if item.strip()]


class PromptForm(forms.Form):
    charter = forms.ModelChoiceField(queryset=None, empty_label="Choose…")
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=80,
        required=False,
        help_text="Stable identifier integrations use; derived from the name if empty.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    business_function = forms.CharField(max_length=100, required=False)
    task_type = forms.ChoiceField(choices=TaskType.choices)
    risk_level = forms.ChoiceField(choices=RiskTier.choices, initial=RiskTier.MEDIUM)
    model_family = forms.CharField(max_length=100, required=False)
    policy_tags = CommaListField(
        required=False, help_text="Comma-separated, e.g. confidential, human-in-the-loop"
    )
    tags = CommaListField(required=False)
    review_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    retirement_condition = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    listed_in_catalog = forms.BooleanField(
        required=False, label="Publish in the catalog (everyone signed in may read and fork it)"
    )

    def __init__(self, *args, charters=None, editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["charter"].queryset = charters
        if editing:
            for name in ("charter", "slug"):
                self.fields[name].disabled = True
                self.fields[name].required = False


class VersionForm(forms.Form):
    template_kind = forms.ChoiceField(choices=TemplateKind.choices, widget=forms.RadioSelect)
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        required=False,
        strip=False,
        label="Text template",
    )
    model_config = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        required=False,
        label="Model configuration (JSON)",
        help_text='e.g. {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 400}',
    )
    release_notes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="What changed and why (required).",
    )
    change_kind = forms.ChoiceField(choices=ChangeKind.choices, initial=ChangeKind.MINOR)

    def clean_model_config(self):
        raw = (self.cleaned_data.get("model_config") or "").strip()
        if not raw:
            return {}
        try:
            value = jsonlimits.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from None
        except jsonlimits.TooDeep as exc:
            raise forms.ValidationError(str(exc)) from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The model configuration is a JSON object ({…}).")
        return value


class MessageForm(forms.Form):
    role = forms.ChoiceField(choices=MessageRole.choices)
    content = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}), required=False, strip=False
    )


class VariableForm(forms.Form):
    name = forms.CharField(max_length=64, required=False)
    description = forms.CharField(max_length=300, required=False)
    required = forms.BooleanField(required=False, initial=True)
    example = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="Used by the preview."
    )


MessageFormSet = formset_factory(MessageForm, extra=0, can_delete=True)
VariableFormSet = formset_factory(VariableForm, extra=0, can_delete=True)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=5000
    )


class DeprecateForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=5000)
    sunset_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    successor = forms.SlugField(
        required=False, help_text="Slug of the prompt that replaces this one."
    )


class ForkForm(forms.Form):
    charter = forms.ModelChoiceField(queryset=None, empty_label="Choose…")
    name = forms.CharField(max_length=200)

    def __init__(self, *args, charters=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["charter"].queryset = charters
