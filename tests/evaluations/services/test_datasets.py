"""Datasets: streamed uploads validated row by row, immutable versions, export."""

import io
import json
import tracemalloc

import pytest
from django.http import Http404

from apps.core.errors import ValidationFailed
from apps.evaluations import services
from apps.evaluations.models import Case, DatasetVersion
from tests.evaluations.fixtures import case_rows, jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture
def empty(support_prompt, owner):
    return services.dataset_create(
        actor=owner, name="Support cases", charter=support_prompt.charter, prompt=support_prompt
    )


def _upload(owner, dataset, data: bytes, name="cases.jsonl"):
    return services.dataset_version_upload(
        actor=owner, dataset=dataset, stream=io.BytesIO(data), filename=name
    )


def test_jsonl_upload_stores_cases_with_segments_and_hash(owner, empty):
    version = services.dataset_version_upload(
        actor=owner, dataset=empty, stream=jsonl(case_rows(6)), filename="cases.jsonl"
    )
    assert (version.number, version.case_count) == (1, 6)
    assert version.segment_keys == ["language", "topic", "user_role"]
    assert len(version.sha256) == 64
    case = version.cases.get(external_id="c4")
    assert case.segments == {"language": "de", "user_role": "partner", "topic": "password"}
    assert case.contexts and case.variables["message"] == "Question 3 about password"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            "{not json",
            "line 2: Not valid JSON: Expecting property name enclosed in double quotes at column 2.",
        ),
        ('{"variables": {"context": "a", "message": "b"}}', "line 2: 'id' is required."),
        (
            '{"id": "c1", "variables": {"context": "a", "message": "b"}}',
            "line 2: Duplicate id 'c1' (first on line 1).",
        ),
        (
            '{"id": "x", "variables": {"context": "a"}}',
            "line 2: Missing required variable(s): message.",
        ),
        (
            '{"id": "x", "variables": {"context": "a", "message": "b", "tone": "c"}}',
            "line 2: Variable(s) not declared by the prompt: tone.",
        ),
        (
            '{"id": "x", "variables": {"context": "a", "message": "b"}, "contexts": [1]}',
            "line 2: 'contexts' must be a list of text passages.",
        ),
        (
            '{"id": "x", "variables": {"context": "a", "message": "b"}, "segments": {"k": [1]}}',
            "line 2: Segment 'k' must be a text or number value.",
        ),
        (
            '{"id": "x", "variables": {"context": "a", "message": "b"}, "colour": "red"}',
            "line 2: Unknown field(s): colour.",
        ),
        ('["a", "list"]', "line 2: A row must be a JSON object."),
    ],
)
def test_each_kind_of_bad_row_is_reported_with_its_line_and_nothing_is_kept(
    owner, empty, line, reason
):
    good = json.dumps(case_rows(1)[0])
    with pytest.raises(ValidationFailed) as refused:
        _upload(owner, empty, f"{good}\n{line}\n".encode())
    assert refused.value.errors["file"] == [reason]
    assert not DatasetVersion.objects.filter(dataset=empty).exists()
    assert not Case.objects.exists()


def test_every_bad_row_is_listed_not_just_the_first(owner, empty):
    rows = [json.dumps(r) for r in case_rows(5)]
    rows[1] = "{"
    rows[3] = '{"id": "c9"}'
    with pytest.raises(ValidationFailed) as refused:
        _upload(owner, empty, ("\n".join(rows) + "\n").encode())
    assert [e.split(":")[0] for e in refused.value.errors["file"]] == ["line 2", "line 4"]
    assert "2 row(s)" in refused.value.message


def test_invalid_utf8_is_reported_per_line(owner, empty):
    good = json.dumps(case_rows(1)[0]).encode()
    with pytest.raises(ValidationFailed) as refused:
        _upload(owner, empty, good + b"\n\xff\xfe{}\n")
    assert refused.value.errors["file"] == ["line 2: The line is not valid UTF-8."]


def test_csv_upload_reads_variables_segments_and_contexts(owner, empty):
    data = (
        b"id,var.context,var.message,expected,contexts,language,seg.channel,tags\n"
        b'c1,Returns within 30 days,Can I return?,Yes within 30 days,"[""Returns within 30 days""]",en,chat,"a,b"\n'
        b"c2,Ship in 3 days,When?,Three days,Ship in 3 days || Express next day,de,mail,\n"
    )
    version = _upload(owner, empty, data, name="cases.csv")
    one, two = version.cases.order_by("position")
    assert one.variables == {"context": "Returns within 30 days", "message": "Can I return?"}
    assert one.segments == {"channel": "chat", "language": "en"} and one.tags == ["a", "b"]
    assert two.contexts == ["Ship in 3 days", "Express next day"]


def test_csv_without_an_id_column_is_refused(owner, empty):
    with pytest.raises(ValidationFailed) as refused:
        _upload(owner, empty, b"name,expected\nx,y\n", name="cases.csv")
    assert refused.value.errors["file"] == ["line 1: The header must name an 'id' column."]


def test_unknown_format_and_empty_files_are_refused(owner, empty):
    with pytest.raises(ValidationFailed) as refused:
        _upload(owner, empty, b"{}", name="cases.xlsx")
    assert refused.value.errors == {"file": ["Upload a .jsonl or .csv file."]}
    with pytest.raises(ValidationFailed):
        _upload(owner, empty, b"\n\n")


def test_upload_memory_does_not_grow_with_the_file(owner, support_prompt):
    """The file is streamed: four times the rows does not take four times the memory."""
    row = case_rows(1)[0]
    row["variables"]["context"] = "x" * 400

    def peak_for(rows: int) -> int:
        dataset = services.dataset_create(
            actor=owner, name=f"Big {rows}", charter=support_prompt.charter, prompt=support_prompt
        )
        data = "".join(json.dumps({**row, "id": f"c{i}"}) + "\n" for i in range(rows)).encode()
        stream = io.BytesIO(data)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        version = services.dataset_version_upload(
            actor=owner, dataset=dataset, stream=stream, filename="big.jsonl"
        )
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        assert version.case_count == rows
        return peak

    small, large = peak_for(2000), peak_for(8000)
    assert large < small * 1.6, f"peak {small} bytes for 2,000 rows, {large} for 8,000"


def test_editing_writes_a_new_version_and_runs_keep_theirs(owner, dataset, suite, support_prompt):
    run = services.run_start(
        actor=owner, suite=suite, prompt_version=support_prompt.versions.get(number=2)
    )
    before = dataset.latest_version
    changed = dict(case_rows(1)[0], expected="A better reference.")
    version = services.dataset_version_derive(
        actor=owner,
        dataset=dataset,
        upserts=[changed, dict(case_rows(1)[0], id="new-1")],
        removals=["c2"],
        notes="Fix c1; add one; drop c2",
    )
    assert (version.number, version.parent, version.case_count) == (2, before, 24)
    assert version.cases.get(external_id="c1").expected == "A better reference."
    assert not version.cases.filter(external_id="c2").exists()
    assert before.cases.get(external_id="c1").expected != "A better reference."
    run.refresh_from_db()
    assert run.dataset_version == before


def test_derive_refuses_unknown_removals_and_bad_cases(owner, dataset):
    with pytest.raises(ValidationFailed) as refused:
        services.dataset_version_derive(
            actor=owner, dataset=dataset, upserts=[{"id": "z"}], removals=["ghost"]
        )
    assert refused.value.errors["cases"] == [
        "case 1: Missing required variable(s): context, message.",
        "case 'ghost': no such case to remove.",
    ]
    assert dataset.versions.count() == 1


def test_export_round_trips_through_upload(owner, dataset, support_prompt):
    exported = b"".join(services.dataset_version_export(dataset.latest_version))
    copy = services.dataset_create(
        actor=owner, name="Copy", charter=support_prompt.charter, prompt=support_prompt
    )
    version = _upload(owner, copy, exported)
    assert version.case_count == 24
    assert version.sha256 == __import__("hashlib").sha256(exported).hexdigest()
    first = json.loads(exported.splitlines()[0])
    assert first["id"] == "c1" and first["segments"]["language"] == "en"


def test_people_outside_the_charter_cannot_see_or_upload(outsider, engineer, dataset):
    for person in (outsider, engineer):
        with pytest.raises(Http404):
            _upload(person, dataset, b"{}\n")


def test_reserved_and_duplicate_slugs_are_refused(owner, dataset, support_prompt):
    for slug, message in (("new", "'new' is reserved"), ("support-cases", "already exists")):
        with pytest.raises(ValidationFailed) as refused:
            services.dataset_create(
                actor=owner, name="X", slug=slug, charter=support_prompt.charter
            )
        assert message in refused.value.errors["slug"][0]
