"""Online quality: sampled executions are scored on the workers with the suite's scorers."""

from types import SimpleNamespace

import pytest

from apps.evaluations import services as evaluation_services
from apps.gateway.models import OnlineScore, Route
from apps.gateway.services import prompt_execute
from apps.scorecards.selectors import scorecard
from tests.evaluations.openai_stub import OpenAIStub
from tests.factories import approved_endpoint

pytestmark = pytest.mark.django_db


def test_sampled_executions_are_scored_against_their_context(
    owner, support_prompt, dataset, default_encoder, django_capture_on_commit_callbacks
):
    evaluation_services.suite_create(
        actor=owner,
        charter=support_prompt.charter,
        fields={
            "name": "Online grounding",
            "prompt": support_prompt,
            "dataset_version": dataset.latest_version,
            "scorers": [
                {"scorer": "grounded_coverage"},
                {"scorer": "length", "params": {"max_words": 40}},
            ],
        },
    )
    answer = "You can return items within 30 days of delivery if you have the receipt."
    with OpenAIStub(responder=lambda body: answer) as stub:
        Route.objects.create(
            prompt=support_prompt, endpoint=approved_endpoint(stub.base_url), sample_rate=1.0
        )
        with django_capture_on_commit_callbacks(execute=True):
            result = prompt_execute(
                actor=owner,
                key=SimpleNamespace(application_id=None),
                slug=support_prompt.slug,
                variables={
                    "context": "Returns are accepted within 30 days of delivery with the receipt.",
                    "message": "Can I return my shoes?",
                },
            )
    assert result.output == answer
    sample = OnlineScore.objects.get()
    assert sample.suite_slug and sample.metrics["grounded_coverage"] == 1.0
    assert sample.metrics["length_ok"] == 1.0
    quality = scorecard(support_prompt.charter)["gateway"]["online_quality"]
    assert quality["grounded_coverage"] == {"mean": 1.0, "count": 1}


def test_unsampled_executions_store_no_output(owner, support_prompt):
    with OpenAIStub(responder=lambda body: "fine") as stub:
        Route.objects.create(
            prompt=support_prompt, endpoint=approved_endpoint(stub.base_url), sample_rate=0.0
        )
        prompt_execute(
            actor=owner,
            key=SimpleNamespace(application_id=None),
            slug=support_prompt.slug,
            variables={"context": "x", "message": "y"},
        )
    assert not OnlineScore.objects.exists()
