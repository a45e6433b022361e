"""Web forms of the evaluations pages. They shape input; the services decide."""

from __future__ import annotations

import json

from django import forms

from apps.core import jsonlimits

from .choices import Aggregate, ArtifactTask, Comparator, OutputSource

SCORERS_EXAMPLE = json.dumps(
    [
        {"scorer": "semantic_similarity", "params": {"pass_at": 0.75}},
        {"scorer": "grounded_coverage", "params": {}},
        {"scorer": "token_f1", "params": {}},
    ],
    indent=2,
)


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=80, required=False, help_text="Left empty: made from the name."
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    charter = forms.ModelChoiceField(queryset=None, required=True)
    prompt = forms.ModelChoiceField(
        queryset=None, required=False, help_text="Cases are checked against its variables."
    )

    def __init__(self, *args, charters, prompts, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["charter"].queryset = charters
        self.fields["prompt"].queryset = prompts


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="JSONL (one case per line) or CSV (id, var.<name>, expected, contexts, seg.<key> …)."
    )
    notes = forms.CharField(max_length=500, required=False)


class ArtifactForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=80, required=False)
    task = forms.ChoiceField(choices=ArtifactTask.choices)
    model_file = forms.FileField(label="ONNX file")
    tokenizer_file = forms.FileField(label="tokenizer.json", required=False)
    labels = forms.CharField(
        required=False, help_text="Classifiers: labels in output order, comma-separated."
    )
    max_seq_length = forms.IntegerField(initial=256, min_value=8, max_value=8192)
    pooling = forms.ChoiceField(choices=[("mean", "mean"), ("cls", "cls")])
    source = forms.CharField(max_length=300, required=False, help_text="Where it came from.")
    license = forms.CharField(max_length=100, required=False)
    charter = forms.ModelChoiceField(
        queryset=None, required=False, help_text="Empty: shared library."
    )

    def __init__(self, *args, charters, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["charter"].queryset = charters


class SuiteForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=80, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    charter = forms.ModelChoiceField(queryset=None)
    prompt = forms.ModelChoiceField(queryset=None, required=False)
    dataset_version = forms.ModelChoiceField(queryset=None)
    scorers = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "class": "mono"}),
        initial=SCORERS_EXAMPLE,
        help_text="A JSON list of {scorer, params, artifact}.",
    )
    regression_tolerance = forms.FloatField(initial=0.05, min_value=0, max_value=1)
    min_segment_cases = forms.IntegerField(initial=20, min_value=0)

    def __init__(self, *args, charters, prompts, versions, editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["charter"].queryset = charters
        self.fields["prompt"].queryset = prompts
        self.fields["dataset_version"].queryset = versions
        self.fields["dataset_version"].label_from_instance = lambda v: (
            f"{v.dataset.name} v{v.number} ({v.case_count} cases)"
        )
        if editing:
            del self.fields["slug"]
            del self.fields["charter"]

    def clean_scorers(self):
        try:
            return jsonlimits.loads(self.cleaned_data["scorers"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from None
        except jsonlimits.TooDeep as exc:
            raise forms.ValidationError(str(exc)) from None


class ThresholdForm(forms.Form):
    metric = forms.ChoiceField(choices=())
    aggregate = forms.ChoiceField(choices=Aggregate.choices)
    comparator = forms.ChoiceField(choices=Comparator.choices)
    value = forms.FloatField()
    blocking = forms.BooleanField(required=False, initial=True)
    min_cases = forms.IntegerField(initial=0, min_value=0)
    segment_key = forms.CharField(required=False, max_length=64)
    rationale = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, metrics, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["metric"].choices = [(m, m) for m in metrics]


class RunForm(forms.Form):
    prompt_version = forms.ModelChoiceField(queryset=None, required=False)
    model_under_test = forms.ModelChoiceField(queryset=None, required=False)
    output_source = forms.ChoiceField(choices=OutputSource.choices)
    outputs_file = forms.FileField(
        required=False, help_text="Posted outputs: JSONL of {id, output}; scoring starts at once."
    )
    endpoint = forms.ModelChoiceField(
        queryset=None,
        required=False,
        to_field_name="slug",
        help_text="Generated: an approved endpoint of the model registry.",
    )
    model = forms.CharField(
        required=False, max_length=200, help_text="Generated: a model the endpoint serves."
    )
    input_variable = forms.CharField(required=False, max_length=100)
    note = forms.CharField(required=False, max_length=300)

    def __init__(self, *args, versions, models, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["prompt_version"].queryset = versions
        self.fields["prompt_version"].label_from_instance = lambda v: (
            f"{v.prompt.slug} v{v.number} ({v.get_status_display().lower()})"
        )
        self.fields["model_under_test"].queryset = models
        from apps.registry.selectors import endpoints_approved

        self.fields["endpoint"].queryset = endpoints_approved()
        self.fields["endpoint"].label_from_instance = lambda e: (
            f"{e.name} — {', '.join(e.model_names) or 'default model'}"
            f" ({e.get_data_location_display().lower()})"
        )
