"""The migration that moves gateway routes onto the model registry
(apps/gateway/migrations/0003_route_endpoint_from_registry.py).

Routes named a URL and a credential variable of their own; generated runs recorded the URL
they called. Each distinct address in use becomes one *proposed* registry endpoint (nothing
calls it until compliance approves it), the route points at it, and the run's record names
the endpoint instead of the credential variable.

The test migrates the database back to before the move, writes rows through the models of
that moment, migrates forward and reads them through today's models. It leaves the database
migrated to the latest state, whatever happens (the tests after it need it).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.evaluations.models import Run
from apps.gateway.models import Route
from apps.registry.models import ModelEndpoint
from tests import factories
from tests.prompts.factories import PromptFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("gateway", "0002_historicalroute_sample_rate_route_sample_rate_and_more")
MOVE = ("gateway", "0003_route_endpoint_from_registry")

LLM = "http://llm.internal:8000/v1"
LLM_OTHER_PORT = "http://llm.internal:9000/v1"  # same host, another server
ONLY_RUNS = "https://models.example.com/v1"  # named by a run, by no route


def _executor() -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    return executor


@pytest.fixture
def old_apps():
    """The models as they were before the move (the database migrated back to then); the
    database is migrated to the latest state again afterwards, pass or fail."""
    executor = _executor()
    if MOVE not in executor.loader.applied_migrations:
        pytest.skip("the test database was not built by migrations")
    try:
        state = executor.migrate([BEFORE])
        yield state.apps
    finally:
        latest = _executor()
        latest.migrate(latest.loader.graph.leaf_nodes())


def _migrate_to_latest() -> None:
    executor = _executor()
    executor.migrate(executor.loader.graph.leaf_nodes())


def _suite(apps, owner, charter):
    """A suite over a one-version dataset, through the models of the migrated-back state."""
    Dataset = apps.get_model("evaluations", "Dataset")
    DatasetVersion = apps.get_model("evaluations", "DatasetVersion")
    Suite = apps.get_model("evaluations", "Suite")
    dataset = Dataset.objects.create(
        slug="migration-cases", name="Migration cases", charter_id=charter.pk, owner_id=owner.pk
    )
    version = DatasetVersion.objects.create(dataset=dataset, number=1, created_by_id=owner.pk)
    return Suite.objects.create(
        slug="migration-quality",
        name="Migration quality",
        charter_id=charter.pk,
        dataset_version=version,
        scorers=[{"scorer": "token_f1"}],
        owner_id=owner.pk,
    )


def test_each_address_in_use_becomes_one_proposed_endpoint(old_apps):
    OldRoute = old_apps.get_model("gateway", "Route")
    OldRun = old_apps.get_model("evaluations", "Run")
    assert {f.name for f in OldRoute._meta.fields} >= {"base_url", "api_key_env", "timeout_s"}

    owner = factories.business_owner("olivia")
    charter = factories.CharterFactory(business_owner=owner, slug="migration")
    chat, summary = (
        PromptFactory(charter=charter, owner=owner, slug=slug) for slug in ("chat", "summary")
    )
    route = OldRoute.objects.create(
        prompt_id=chat.pk,
        base_url=LLM,
        model="chat-large",
        api_key_env="LLM_KEY",
        timeout_s=12,
        max_retries=1,
        price_per_1k_input=Decimal("0.5"),
        price_per_1k_output=Decimal("1.5"),
    )
    other_route = OldRoute.objects.create(
        prompt_id=summary.pk, base_url=LLM_OTHER_PORT + "/", api_key_env="OTHER_KEY"
    )
    suite = _suite(old_apps, owner, charter)

    def run(output_source, endpoint):
        return OldRun.objects.create(
            suite=suite,
            dataset_version_id=suite.dataset_version_id,
            output_source=output_source,
            endpoint=endpoint,
            created_by_id=owner.pk,
        ).pk

    # The same address as the route (with a trailing slash), and one no route names.
    same = run("generated", {"base_url": LLM + "/", "model": "m", "api_key_env": "LLM_KEY"})
    elsewhere = run("generated", {"base_url": ONLY_RUNS, "model": "m2", "api_key_env": "X_KEY"})
    posted = run("posted", {})

    _migrate_to_latest()

    migrated = {e.base_url: e for e in ModelEndpoint.objects.all()}
    assert set(migrated) == {LLM, LLM_OTHER_PORT, ONLY_RUNS}
    for endpoint in migrated.values():
        assert endpoint.status == "proposed"  # nothing calls it until compliance approves
        assert endpoint.vendor == "unknown (migrated)"
        assert endpoint.data_location == "vendor_global"
        assert endpoint.training_use == "unknown"
    llm, llm_other, only_runs = migrated[LLM], migrated[LLM_OTHER_PORT], migrated[ONLY_RUNS]
    # Slugs from the host; a second server on the same host gets the next free one.
    assert llm.slug == "llm-internal" and llm_other.slug == f"{llm.slug}-2"
    assert only_runs.slug == "models-example-com"
    # The route's credential variable, timeouts and prices are carried to its endpoint.
    assert llm.credential == "LLM_KEY"
    assert (llm.timeout_s, llm.max_retries) == (12, 1)
    assert (llm.price_per_1k_input, llm.price_per_1k_output) == (Decimal("0.5"), Decimal("1.5"))
    assert llm.model_names == ["chat-large", "m"]  # the route's model and the run's
    assert llm_other.credential == "OTHER_KEY" and llm_other.model_names == []
    # A run's credential variable is not carried: only routes declared one.
    assert only_runs.credential == "" and only_runs.model_names == ["m2"]
    assert (only_runs.price_per_1k_input, only_runs.timeout_s) == (0, 30)

    assert Route.objects.get(pk=route.pk).endpoint == llm
    assert Route.objects.get(pk=route.pk).model == "chat-large"
    assert Route.objects.get(pk=other_route.pk).endpoint == llm_other

    record = Run.objects.get(pk=same).endpoint
    assert record["endpoint"] == llm.slug and "api_key_env" not in record
    assert record["model"] == "m" and record["base_url"] == LLM + "/"
    assert (record["name"], record["vendor"]) == (llm.name, "unknown (migrated)")
    record = Run.objects.get(pk=elsewhere).endpoint
    assert record["endpoint"] == only_runs.slug and "api_key_env" not in record
    assert Run.objects.get(pk=posted).endpoint == {}
