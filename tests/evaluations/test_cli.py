"""The CI gate command against a live server: its exit codes say what happened."""

import io
import json

import pytest

from apps.core import groups
from apps.core.services import api_key_create
from apps.evaluations import cli
from tests.evaluations.fixtures import bad_outputs, good_outputs
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key(db):
    user = UserFactory(username="ci-pipeline", groups=[groups.INTEGRATIONS])
    return api_key_create(user=user, name="ci")[1]


def _gate(live_server, key, suite, prompt, outputs_path, *extra):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        [
            "--url",
            live_server.url,
            "--api-key",
            key,
            "--suite",
            suite.slug,
            "--prompt",
            prompt.slug,
            "--version",
            "2",
            "--outputs",
            str(outputs_path),
            "--wait",
            "60",
            *extra,
        ],
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def _write(tmp_path, outputs):
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in outputs))
    return path


def test_exit_codes_pass_fail_refused_and_unreachable(
    live_server, key, suite, support_prompt, tmp_path
):
    code, out, _ = _gate(live_server, key, suite, support_prompt, _write(tmp_path, good_outputs()))
    assert code == cli.EXIT_PASS and "verdict=pass" in out

    code, out, _ = _gate(live_server, key, suite, support_prompt, _write(tmp_path, bad_outputs()))
    assert code == cli.EXIT_FAIL and "needs >= 0.500" in out

    outputs = _write(tmp_path, [{"id": "ghost", "output": "x"}])
    code, _, err = _gate(live_server, key, suite, support_prompt, outputs)
    assert code == cli.EXIT_REFUSED and "no case 'ghost'" in err
    assert suite.runs.count() == 2  # the refused call left no run behind

    code, _, err = _gate(
        live_server, "wrong.key", suite, support_prompt, _write(tmp_path, good_outputs())
    )
    assert code == cli.EXIT_REFUSED and "401" in err

    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        ["--url", "http://127.0.0.1:9", "--api-key", key, "--suite", suite.slug], out=out, err=err
    )
    assert code == cli.EXIT_UNREACHABLE and "cannot reach" in err.getvalue()


def test_generate_names_a_registry_endpoint_not_an_address(live_server, key, suite, support_prompt):
    from tests.evaluations.fixtures import ANSWERS
    from tests.evaluations.openai_stub import OpenAIStub, last_user_message
    from tests.factories import approved_endpoint

    def answer(body):
        return ANSWERS[last_user_message(body).rsplit(" ", 1)[-1]]

    with OpenAIStub(responder=answer) as stub:
        approved_endpoint(stub.base_url, slug="onprem-llm")
        out, err = io.StringIO(), io.StringIO()
        argv = ["--url", live_server.url, "--api-key", key, "--suite", suite.slug]
        argv += ["--prompt", support_prompt.slug, "--version", "2", "--wait", "60"]
        code = cli.main(
            [*argv, "--generate", "onprem-llm", "--model", "local-llm"], out=out, err=err
        )
        assert code == cli.EXIT_PASS, err.getvalue()
        assert len(stub.requests) == 24
        code = cli.main(
            [*argv, "--generate", f"{stub.base_url}", "--model", "local-llm"], out=out, err=err
        )
        assert code == cli.EXIT_REFUSED
        assert len(stub.requests) == 24
