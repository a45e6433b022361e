"""Hostile uploads through the real entry points: the web forms, the API and the import command.

Every hostile file is refused with a reason its uploader can act on, nothing of it is kept (no
dataset version or artifact row unless it records the refusal, no file in storage or in the
upload temporary folder), and memory and disk stay bounded while it is refused: bodies are
streamed into the request from a file on disk, so what the measurements show is the server's
own reading and writing. Bounds are behaviour (bytes, not seconds).
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import html
import io
import itertools
import json
import os
import re
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.core.management import CommandError, call_command
from django.test import Client
from onnx import TensorProto
from rest_framework.test import APIClient

from apps.evaluations import services
from apps.evaluations.models import Case, DatasetVersion, ModelArtifact
from apps.evaluations.tasks import artifact_validate_task
from tests.evaluations.test_artifact_validation import bag_of_words

pytestmark = pytest.mark.django_db

API = "/api/v1/evaluations"
BOUNDARY = "hostile-upload-boundary"
MiB = 1024 * 1024
LIMIT = 1 * MiB
BIG = 32 * MiB  # a hostile upload, 32 times the limit under test
MEMORY_BOUND = 8 * MiB  # Python allocations while one upload is read and refused
BOMB_RSS_BOUND = 64 * MiB  # resident memory growth while a 256 MiB bomb is refused
RSS_BOUND = 256 * MiB  # resident memory growth while one model is validated (ONNX Runtime)


# --- measuring ---------------------------------------------------------------------------


class MeasuredTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler, recording the largest temporary file it ever held."""

    peak = 0

    def receive_data_chunk(self, raw_data, start):
        super().receive_data_chunk(raw_data, start)
        self.file.flush()
        size = os.fstat(self.file.fileno()).st_size
        MeasuredTemporaryFileUploadHandler.peak = max(MeasuredTemporaryFileUploadHandler.peak, size)


def _io() -> dict[str, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {"read": int(fields["rchar"]), "written": int(fields["wchar"])}


def _peak_rss() -> int:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024


@contextlib.contextmanager
def measured():
    """Python allocation peak, resident-memory peak and bytes read/written by this process."""
    found: dict[str, int] = {}
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak-RSS counter here
    rss, before = _peak_rss(), _io()
    tracemalloc.start()
    try:
        yield found
    finally:
        found["python_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        after = _io()
        found["rss_growth"] = _peak_rss() - rss
        found["read"] = after["read"] - before["read"]
        found["written"] = after["written"] - before["written"]


def files_under(*roots: Path) -> list[str]:
    """Every file (or link) left under `roots`; empty folders do not count."""
    return sorted(
        str(path)
        for root in roots
        if root.exists()
        for path in root.rglob("*")
        if not path.is_dir()
    )


# --- posting streamed multipart bodies ------------------------------------------------------


def repeat(piece: bytes, size: int):
    """`size` bytes of `piece` repeated, as chunks (never the whole in memory)."""
    block = piece * (MiB // len(piece))
    while size > 0:
        yield block[:size]
        size -= len(block)


def multipart(path: Path, fields: dict, files: dict) -> Path:
    """Write a multipart/form-data body to `path`; files are {field: (filename, bytes|chunks)}."""
    with open(path, "wb") as out:
        for name, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                out.write(
                    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                    f"{item}\r\n".encode()
                )
        for name, (filename, content) in files.items():
            out.write(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            )
            for chunk in [content] if isinstance(content, bytes) else content:
                out.write(chunk)
            out.write(b"\r\n")
        out.write(f"--{BOUNDARY}--\r\n".encode())
    return path


def post(client, url: str, body: Path, **extra):
    """POST a body from disk, streamed into the request the way a WSGI server hands it over."""
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    with open(body, "rb") as stream:
        environ = {
            "wsgi.input": stream,
            "CONTENT_LENGTH": str(body.stat().st_size),
            "CONTENT_TYPE": content_type,
        }
        return client.generic("POST", url, b"", content_type=content_type, **environ, **extra)


def page_text(response) -> str:
    return html.unescape(response.content.decode())


# --- builders -----------------------------------------------------------------------------


def zip_bomb(size: int) -> bytes:
    """A small zip holding `size` bytes of zeros (written through zlib, never held whole)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("cases.jsonl", "w", force_zip64=True) as member,
    ):
        for chunk in repeat(b"\0", size):
            member.write(chunk)
    return out.getvalue()


def gzip_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as packed:
        for chunk in repeat(b"\0", size):
            packed.write(chunk)
    return out.getvalue()


def external_weights(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """Move the word table into an external-data file named `location`."""
    table = model.graph.initializer[0]
    table.ClearField("raw_data")
    table.ClearField("float_data")
    table.data_location = TensorProto.EXTERNAL
    table.external_data.add(key="location", value=location)
    return model


def huge_declared_shapes() -> onnx.ModelProto:
    """Inputs and output declared [1e9, 1e9]: 4 EB of float if anything believed them."""
    model = bag_of_words()
    for value in [*model.graph.input, model.graph.output[0]]:
        for dim in value.type.tensor_type.shape.dim:
            dim.dim_value = 1_000_000_000
    return model


def huge_initializer() -> onnx.ModelProto:
    """A word table that claims [1e9, 1e9] floats but holds 8 bytes."""
    model = bag_of_words()
    table = model.graph.initializer[0]
    table.raw_data = np.zeros(2, np.float32).tobytes()
    del table.dims[:]
    table.dims.extend([1_000_000_000, 1_000_000_000])
    return model


def optimum_folder(tmp_path: Path, model, tokenizer: Path) -> Path:
    """An Optimum-style export folder around `model` (bytes or chunks)."""
    folder = tmp_path / "export"
    folder.mkdir()
    with open(folder / "model.onnx", "wb") as out:
        for chunk in [model] if isinstance(model, bytes) else model:
            out.write(chunk)
    (folder / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    config = {"architectures": ["BertModel"], "model_type": "bert", "max_position_embeddings": 512}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def upload_tmp(settings, tmp_path):
    """The upload temporary folder, with Django's handlers measuring the largest temp file."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    settings.FILE_UPLOAD_HANDLERS = [
        "django.core.files.uploadhandler.MemoryFileUploadHandler",
        f"{__name__}.MeasuredTemporaryFileUploadHandler",
    ]
    MeasuredTemporaryFileUploadHandler.peak = 0
    return folder


@pytest.fixture
def bodies(tmp_path):
    """Where request bodies are prepared: outside storage and the upload temporary folder."""
    folder = tmp_path / "bodies"
    folder.mkdir()
    return folder


@pytest.fixture
def hostile(owner, charter):
    """An empty dataset under Olivia's charter (no prompt: a row needs only its id)."""
    return services.dataset_create(actor=owner, name="Hostile files", charter=charter)


@pytest.fixture
def web(client, owner, engineer):
    """The browser, signed in as Olivia ("owner", datasets) or Pat ("engineer", models)."""
    people = {"owner": owner, "engineer": engineer}

    def signed_in(who: str) -> Client:
        client.force_login(people[who])
        return client

    return signed_in


@pytest.fixture
def api(owner, engineer):
    """An API client authenticated as Olivia ("owner") or Pat ("engineer")."""
    people = {"owner": owner, "engineer": engineer}

    def signed_in(who: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(people[who])
        return client

    return signed_in


def nothing_kept(media: Path, upload_tmp: Path, dataset=None) -> None:
    """No file in storage or the upload temporary folder; no version or case of `dataset`."""
    assert files_under(media, upload_tmp) == []
    if dataset is not None:
        assert not DatasetVersion.objects.filter(dataset=dataset).exists()
        assert not Case.objects.filter(dataset_version__dataset=dataset).exists()


def jsonl_rows(count: int) -> bytes:
    return "".join(
        json.dumps({"id": f"c{i}", "expected": "yes"}) + "\n" for i in range(count)
    ).encode()


# --- size limits --------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["web", "api"])
def test_an_oversized_dataset_is_refused_at_the_limit_without_filling_disk_or_memory(
    entry, web, api, hostile, media, upload_tmp, bodies, settings
):
    settings.EVALUATIONS_MAX_DATASET_BYTES = LIMIT
    row = json.dumps({"id": "c", "expected": "x" * 200}).encode() + b"\n"
    body = multipart(bodies / "big", {"notes": "huge"}, {"file": ("big.jsonl", repeat(row, BIG))})
    client, url = (
        (web("owner"), hostile.get_absolute_url())
        if entry == "web"
        else (api("owner"), f"{API}/datasets/{hostile.slug}/versions/")
    )
    client.get(url)  # the page the uploader fills in, rendered once
    with measured() as used:
        response = post(client, url, body)
    if entry == "web":
        assert response.status_code == 200
        assert "Files over 1,048,576 bytes are refused." in page_text(response)
        assert "This field is required." not in page_text(response)
    else:
        assert response.status_code == 400
        assert response.json()["errors"] == {"file": ["Files over 1,048,576 bytes are refused."]}
    assert 0 < MeasuredTemporaryFileUploadHandler.peak <= LIMIT  # the temp file stopped there
    assert used["written"] < 2 * LIMIT, used  # 32 MiB posted
    assert used["python_peak"] < MEMORY_BOUND, used
    nothing_kept(media, upload_tmp, hostile)


@pytest.mark.parametrize("entry", ["web", "api"])
def test_an_oversized_model_is_refused_at_the_limit_without_filling_disk_or_memory(
    entry, web, api, media, upload_tmp, bodies, settings, minilm_tokenizer
):
    settings.EVALUATIONS_MAX_ARTIFACT_BYTES = LIMIT
    model = bag_of_words().SerializeToString()
    fields = {"name": "Huge", "task": "sentence_embedding", "max_seq_length": 64, "pooling": "mean"}
    files = {
        "model_file": ("model.onnx", itertools.chain([model], repeat(b"\0", BIG))),
        "tokenizer_file": ("tokenizer.json", minilm_tokenizer.read_bytes()),
    }
    body = multipart(bodies / "big", fields, files)
    client, url = (
        (web("engineer"), "/evaluations/models/")
        if entry == "web"
        else (api("engineer"), f"{API}/artifacts/")
    )
    client.get(url)
    with measured() as used:
        response = post(client, url, body)
    if entry == "web":
        assert response.status_code == 200
        assert "Files over 1,048,576 bytes are refused." in page_text(response)
    else:
        assert response.status_code == 400
        assert response.json()["errors"] == {
            "model_file": ["Files over 1,048,576 bytes are refused."]
        }
    assert 0 < MeasuredTemporaryFileUploadHandler.peak <= LIMIT
    assert used["written"] < 2 * LIMIT + 2 * MiB, used  # the tokenizer (0.7 MiB) is kept a while
    assert used["python_peak"] < MEMORY_BOUND, used
    assert not ModelArtifact.objects.exists()
    nothing_kept(media, upload_tmp)


def test_the_import_command_stops_reading_an_oversized_model_at_the_limit(
    engineer, media, tmp_path, settings, minilm_tokenizer
):
    settings.EVALUATIONS_MAX_ARTIFACT_BYTES = LIMIT
    model = bag_of_words().SerializeToString()
    folder = optimum_folder(
        tmp_path, itertools.chain([model], repeat(b"\0", BIG)), minilm_tokenizer
    )
    with measured() as used, pytest.raises(CommandError) as refused:
        call_command("evaluations_import_model", str(folder), "--user", "pat")
    assert "The model file is larger than 1,048,576 bytes; nothing was kept." in str(refused.value)
    assert used["read"] < 4 * LIMIT, used  # 33 MiB in the folder
    assert used["written"] < 2 * LIMIT, used
    assert not ModelArtifact.objects.exists()
    assert files_under(media) == []


def test_the_upload_views_still_demand_the_csrf_token(owner, hostile, media, upload_tmp, bodies):
    """The size limit needs the views exempt from CsrfViewMiddleware; they check it themselves."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    body = multipart(bodies / "rows", {}, {"file": ("rows.jsonl", jsonl_rows(3))})
    assert post(browser, hostile.get_absolute_url(), body).status_code == 403
    assert not DatasetVersion.objects.filter(dataset=hostile).exists()
    browser.get(hostile.get_absolute_url())
    token = browser.cookies["csrftoken"].value
    accepted = post(browser, hostile.get_absolute_url(), body, HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 302
    assert hostile.versions.get().case_count == 3


def admin_form(dataset) -> dict:
    return {
        "name": dataset.name,
        "description": "",
        "prompt": "",
        "upload_notes": "",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }


def test_an_oversized_dataset_is_refused_in_the_admin_at_the_limit(
    client, owner, hostile, media, upload_tmp, bodies, settings
):
    settings.EVALUATIONS_MAX_DATASET_BYTES = LIMIT
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    client.force_login(owner)
    url = f"/admin/evaluations/dataset/{hostile.pk}/change/"
    client.get(url)
    fields = {**admin_form(hostile), "name": "Renamed with the upload"}
    body = multipart(bodies / "big", fields, {"upload": ("big.jsonl", repeat(GOOD, BIG))})
    with measured() as used:
        response = post(client, url, body)
    assert response.status_code == 302 and response["Location"] == url
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == [
        "The upload is too large; nothing was kept.",
        "upload: Files over 1,048,576 bytes are refused.",
    ]
    assert 0 < MeasuredTemporaryFileUploadHandler.peak <= LIMIT
    assert used["python_peak"] < MEMORY_BOUND, used
    hostile.refresh_from_db()
    assert hostile.name == "Hostile files"  # the whole save was refused, not just the file
    nothing_kept(media, upload_tmp, hostile)


def test_the_admin_upload_form_still_demands_the_csrf_token(
    owner, hostile, media, upload_tmp, bodies
):
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    url = f"/admin/evaluations/dataset/{hostile.pk}/change/"
    body = multipart(bodies / "rows", admin_form(hostile), {"upload": ("r.jsonl", jsonl_rows(2))})
    assert post(browser, url, body).status_code == 403
    browser.get(url)
    token = browser.cookies["csrftoken"].value
    assert post(browser, url, body, HTTP_X_CSRFTOKEN=token).status_code == 302
    assert hostile.versions.get().case_count == 2


# --- zip bombs and compressed bodies --------------------------------------------------------


def test_a_zip_bomb_is_refused_unexpanded_as_a_model_and_as_a_dataset(
    api, hostile, media, upload_tmp, bodies, minilm_tokenizer
):
    bomb = zip_bomb(256 * MiB)
    assert len(bomb) < MiB  # 256 MiB of zeros inside
    fields = {"name": "Bomb", "task": "sentence_embedding"}
    as_model = multipart(
        bodies / "model",
        fields,
        {
            "model_file": ("model.onnx", bomb),
            "tokenizer_file": ("tokenizer.json", minilm_tokenizer.read_bytes()),
        },
    )
    with measured() as used:
        model = post(api("engineer"), f"{API}/artifacts/", as_model)
        datasets = [
            post(
                api("owner"),
                f"{API}/datasets/{hostile.slug}/versions/",
                multipart(bodies / name, {}, {"file": (name, bomb)}),
            )
            for name in ("cases.jsonl", "cases.csv", "cases.zip")
        ]
    assert model.status_code == 400
    assert model.json()["errors"]["model_file"][0].startswith("The file is a zip archive, not an")
    assert [r.status_code for r in datasets] == [400, 400, 400]
    assert [r.json()["errors"]["file"] for r in datasets] == [
        [
            "line 1: The file is a zip archive: upload the JSONL or CSV file inside it, "
            "not the archive."
        ],
        [
            "line 1: The file is a zip archive: upload the JSONL or CSV file inside it, "
            "not the archive."
        ],
        ["Upload a .jsonl or .csv file."],
    ]
    assert used["python_peak"] < MEMORY_BOUND, used  # expanding it would take 256 MiB
    assert used["rss_growth"] < BOMB_RSS_BOUND, used
    assert not ModelArtifact.objects.exists()
    nothing_kept(media, upload_tmp, hostile)


def test_a_gzip_encoded_request_body_is_never_inflated(api, hostile, media, upload_tmp):
    """No entry point takes archives or compressed bodies: the bytes stay the bytes sent."""
    bomb = gzip_bomb(256 * MiB)
    with measured() as used:
        response = api("owner").generic(
            "POST",
            f"{API}/datasets/",
            bomb,
            content_type="application/json",
            HTTP_CONTENT_ENCODING="gzip",
        )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert used["python_peak"] < MEMORY_BOUND, used
    nothing_kept(media, upload_tmp, hostile)


# --- files that are not ONNX ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"This is a README, not a model.\n" * 40,
            "The file is text, not an ONNX model (a binary protobuf file). Export the model to ONNX.",
        ),
        (
            np.random.default_rng(7).bytes(4096),
            "The file is not an ONNX model: an ONNX file opens with its IR version (protobuf "
            "field 1), and this one does not.",
        ),
    ],
    ids=["text", "random-bytes"],
)
def test_a_file_named_onnx_that_is_not_onnx_is_refused_on_upload(
    content, reason, api, media, upload_tmp, bodies, minilm_tokenizer
):
    body = multipart(
        bodies / "model",
        {"name": "Impostor", "task": "sentence_embedding"},
        {
            "model_file": ("model.onnx", content),
            "tokenizer_file": ("tokenizer.json", minilm_tokenizer.read_bytes()),
        },
    )
    response = post(api("engineer"), f"{API}/artifacts/", body)
    assert response.status_code == 400
    assert response.json()["errors"] == {"model_file": [reason]}
    assert not ModelArtifact.objects.exists()
    nothing_kept(media, upload_tmp)


def test_a_truncated_model_is_refused_by_the_worker_and_its_files_deleted(
    web, media, upload_tmp, bodies, minilm_tokenizer, django_capture_on_commit_callbacks
):
    whole = bag_of_words().SerializeToString()
    body = multipart(
        bodies / "model",
        {
            "name": "Cut short",
            "task": "sentence_embedding",
            "max_seq_length": 64,
            "pooling": "mean",
        },
        {
            "model_file": ("model.onnx", whole[: len(whole) // 2]),
            "tokenizer_file": ("tokenizer.json", minilm_tokenizer.read_bytes()),
        },
    )
    browser = web("engineer")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(browser, "/evaluations/models/", body)
    artifact = ModelArtifact.objects.get()
    assert response.status_code == 302 and response["Location"] == artifact.get_absolute_url()
    assert artifact.status == "invalid"
    (problem,) = artifact.validation["problems"]
    assert problem.startswith("The file is not an ONNX model: it does not parse as one")
    assert "does not parse as one" in page_text(browser.get(artifact.get_absolute_url()))
    assert not artifact.path.exists()  # the row records the refusal; the bytes are gone
    nothing_kept(media, upload_tmp)


# --- shapes that would allocate the world -----------------------------------------------------


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (
            huge_declared_shapes,
            "Input input_ids has fixed dimensions [1000000000, 1000000000]; the runner feeds "
            "batches of any size and length, so export it with dynamic axes [batch, sequence].",
        ),
        (huge_initializer, "declares a size of 4000000000000000000 bytes"),
    ],
    ids=["declared-inputs-and-output", "initializer-dims"],
)
def test_a_model_claiming_huge_shapes_is_refused_without_allocating_them(
    build,
    reason,
    api,
    media,
    upload_tmp,
    bodies,
    minilm_tokenizer,
    django_capture_on_commit_callbacks,
):
    body = multipart(
        bodies / "model",
        {"name": "Giant", "task": "sentence_embedding", "max_seq_length": 64},
        {
            "model_file": ("model.onnx", build().SerializeToString()),
            "tokenizer_file": ("tokenizer.json", minilm_tokenizer.read_bytes()),
        },
    )
    client = api("engineer")
    with measured() as used, django_capture_on_commit_callbacks(execute=True):
        response = post(client, f"{API}/artifacts/", body)
    assert response.status_code == 201, response.json()
    shown = client.get(f"{API}/artifacts/{response.json()['slug']}/").json()
    assert shown["status"] == "invalid"
    assert any(reason in p for p in shown["validation"]["problems"]), shown["validation"]
    assert used["rss_growth"] < RSS_BOUND, used
    nothing_kept(media, upload_tmp)


# --- external data --------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd"])
def test_external_data_outside_the_storage_folder_is_refused_unread(
    location, api, media, upload_tmp, bodies, minilm_tokenizer, django_capture_on_commit_callbacks
):
    model = external_weights(bag_of_words(), location)
    body = multipart(
        bodies / "model",
        {"name": "Escape", "task": "sentence_embedding"},
        {
            "model_file": ("model.onnx", model.SerializeToString()),
            "tokenizer_file": ("tokenizer.json", minilm_tokenizer.read_bytes()),
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api("engineer"), f"{API}/artifacts/", body)
    artifact = ModelArtifact.objects.get(slug=response.json()["slug"])
    assert artifact.status == "invalid"
    assert artifact.validation["problems"] == [
        f"Weight 'table' points at external data {location!r} outside the model's folder; only "
        "files next to the model are allowed."
    ]
    assert artifact.validation["providers"] == []  # ONNX Runtime never opened it
    nothing_kept(media, upload_tmp)


@pytest.mark.parametrize("link", ["weights.bin", "shared/weights.bin"], ids=["file", "folder"])
def test_external_data_through_a_link_out_of_the_storage_folder_is_refused_unread(
    link, api, media, tmp_path, bodies, minilm_tokenizer
):
    """A link planted in the artifact's folder (a shared volume, a careless operator)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "weights.bin"
    secret.write_bytes(np.zeros((30522, 8), np.float32).tobytes())
    model = external_weights(bag_of_words(), link)
    body = multipart(
        bodies / "model",
        {"name": "Linked", "task": "sentence_embedding"},
        {
            "model_file": ("model.onnx", model.SerializeToString()),
            "tokenizer_file": ("tokenizer.json", minilm_tokenizer.read_bytes()),
        },
    )
    response = post(api("engineer"), f"{API}/artifacts/", body)  # validation not yet run
    artifact = ModelArtifact.objects.get(slug=response.json()["slug"])
    if "/" in link:
        (artifact.path / "shared").symlink_to(outside, target_is_directory=True)
    else:
        (artifact.path / link).symlink_to(secret)
    assert artifact_validate_task.delay(artifact.pk).get() == "invalid"
    artifact.refresh_from_db()
    assert artifact.validation["problems"] == [
        f"Weight 'table' points at external data {link!r}, a link to a file outside the "
        "model's folder; only files next to the model are allowed."
    ]
    assert artifact.validation["providers"] == []
    assert not artifact.path.exists()  # the folder and the link in it are deleted ...
    assert secret.stat().st_size == 30522 * 8 * 4  # ... not what the link pointed at


# --- hostile JSONL ----------------------------------------------------------------------------


GOOD = json.dumps({"id": "ok", "expected": "fine"}).encode() + b"\n"


@pytest.mark.parametrize(
    ("content", "errors"),
    [
        (GOOD + b'{"id": "n1", "expected": "a\x00b"}\n', ["line 2: The line holds NUL bytes"]),
        (
            GOOD + b'{"id": "n2", "expected": "a\\u0000b"}\n',
            ["line 2: 'expected' holds a NUL character (\\u0000), which cannot be stored."],
        ),
        (
            GOOD + b'{"id": "s1", "variables": {"x": "\\ud800"}}\n',
            ["line 2: 'variables' holds an unpaired surrogate, which is not valid Unicode."],
        ),
        (
            GOOD + b"[" * 100_000 + b"]" * 100_000 + b"\n",
            ["line 2: Not valid JSON: it is nested too deeply."],
        ),
        (
            GOOD + b"42\n" + b'"text"\n' + b"null\n",
            [f"line {n}: A row must be a JSON object." for n in (2, 3, 4)],
        ),
        (
            GOOD
            + b'{"id": "f1", "variables": {"x": NaN}}\n{"id": "f2", "expected": 1e999}\n'
            + b'{"id": 1'
            + b"0" * 5000
            + b"}\n",
            [
                "line 2: Not valid JSON: NaN is not a JSON number.",
                "line 3: Not valid JSON: 1e999 is too large for a number.",
                "line 4: Not valid JSON: a number has more than 100 digits.",
            ],
        ),
        ("id\u00e9\n".encode("latin-1") + GOOD, ["line 1: The line is not valid UTF-8."]),
        (codecs.BOM_UTF16_LE + GOOD.decode().encode("utf-16-le"), ["line 1: The file is UTF-16"]),
        (
            GOOD + b"\x1f\x8b" + b"\0" * 10,
            ["line 2: The line holds NUL bytes"],  # gzip past line 1: binary, not text
        ),
    ],
    ids=[
        "nul-bytes",
        "nul-escape",
        "lone-surrogate",
        "recursion-bomb",
        "non-object-lines",
        "nan-infinity-huge-int",
        "latin-1",
        "utf-16",
        "binary-after-text",
    ],
)
def test_hostile_jsonl_lines_are_refused_by_line_and_nothing_is_kept(
    content, errors, api, hostile, media, upload_tmp, bodies
):
    body = multipart(bodies / "rows", {}, {"file": ("cases.jsonl", content)})
    response = post(api("owner"), f"{API}/datasets/{hostile.slug}/versions/", body)
    assert response.status_code == 400, response.content
    found = response.json()["errors"]["file"]
    assert len(found) == len(errors), found
    assert all(f.startswith(e) for f, e in zip(found, errors, strict=True)), found
    nothing_kept(media, upload_tmp, hostile)


def test_a_utf8_byte_order_mark_is_read_past(api, hostile):
    body = io.BytesIO(codecs.BOM_UTF8 + jsonl_rows(2))
    body.name = "excel.jsonl"
    response = api("owner").post(
        f"{API}/datasets/{hostile.slug}/versions/", {"file": body}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    assert list(hostile.versions.get().cases.values_list("external_id", flat=True)) == ["c0", "c1"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_50_mb_single_line_is_refused_with_bounded_memory(
    fmt, web, hostile, media, upload_tmp, bodies
):
    if fmt == "csv":
        head, tail = b"id,expected\nc1,ok\nc2,", b"\nc3,ok\n"
    else:
        head, tail = GOOD + b'{"id": "c2", "expected": "', b'"}\n' + GOOD
    content = itertools.chain([head], repeat(b"x", 50 * MiB), [tail])
    body = multipart(bodies / "line", {}, {"file": (f"one-line.{fmt}", content)})
    browser = web("owner")
    browser.get(hostile.get_absolute_url())
    with measured() as used:
        response = post(browser, hostile.get_absolute_url(), body)
    assert response.status_code == 200
    line = 3 if fmt == "csv" else 2
    assert f"line {line}: The line is longer than 1000000 bytes." in page_text(response)
    assert used["python_peak"] < MEMORY_BOUND, used
    nothing_kept(media, upload_tmp, hostile)


def test_hostile_output_lines_posted_to_a_run_are_refused_by_line(
    api, owner, suite, support_prompt
):
    """Posted outputs are JSONL too: the same lines are refused the same way."""
    run = services.run_start(
        actor=owner, suite=suite, prompt_version=support_prompt.versions.get(number=2)
    )
    body = (
        b'{"id": "c1", "output": "fine"}\n'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"\n"
        + b'{"id": "c2", "output": "a\\u0000b"}\n'
        + b'{"id": "c3", "output": "\\udfff"}\n'
        + b'{"id": "c4", "output": NaN}\n'
    )
    response = api("owner").generic(
        "POST", f"{API}/runs/{run.pk}/outputs.jsonl", body, content_type="application/x-ndjson"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["outputs"] == [
        "line 2: not JSON (it is nested too deeply)",
        "line 3: 'output' holds a NUL character (\\u0000), which cannot be stored.",
        "line 4: 'output' holds an unpaired surrogate, which is not valid Unicode.",
        "line 5: not JSON (NaN is not a JSON number)",
    ]
    assert not run.outputs.exists()


# --- hostile CSV ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("id,expected\nc1,caf\u00e9\n".encode("latin-1"), "line 2: The line is not valid UTF-8."),
        (
            "id,expected\nc1,caf\u00e9\n".encode("utf-16-le"),
            "line 1: The line holds NUL bytes: the file is UTF-16 or binary, not UTF-8 text.",
        ),
        (
            "id,expected\nc1,caf\u00e9\n".encode("utf-16"),
            "line 1: The file is UTF-16 text: save it as UTF-8.",
        ),
        (b"id,expected\nc1,a,surplus\n", "line 2: The row has more cells than the header."),
        (b"id,expected,tags\nc1,a\n", "line 2: The row has fewer cells than the header."),
        (
            b'id,expected\nc1,"' + b"x" * 200_000 + b'"\n',
            "line 2: The row cannot be read: field larger than field limit (131072).",
        ),
        (
            b'id,expected\nc1,"never closed\n' + b"more\n" * 40_000,
            "line 2: The row cannot be read: field larger than field limit (131072).",
        ),
    ],
    ids=[
        "latin-1",
        "utf-16-no-bom",
        "utf-16-bom",
        "too-many-cells",
        "too-few-cells",
        "huge-field",
        "open-quote",
    ],
)
def test_hostile_csv_is_refused_with_the_line_and_nothing_is_kept(
    content, error, web, hostile, media, upload_tmp, bodies
):
    body = multipart(bodies / "rows", {}, {"file": ("cases.csv", content)})
    response = post(web("owner"), hostile.get_absolute_url(), body)
    assert response.status_code == 200
    assert error in page_text(response)
    nothing_kept(media, upload_tmp, hostile)


def test_formula_like_csv_cells_are_data_kept_verbatim_and_exported_as_such(api, hostile):
    """Evaluation cases may well be about spreadsheets: nothing is evaluated, nothing mangled."""
    cells = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2", "@SUM(A1:A9)"]
    rows = "".join(
        f'c{i},"{cell.replace(chr(34), chr(34) * 2)}",{cell[:2]}x\n' for i, cell in enumerate(cells)
    )
    body = io.BytesIO(("id,expected,var.input\n" + rows).encode())
    body.name = "formulas.csv"
    client = api("owner")
    response = client.post(
        f"{API}/datasets/{hostile.slug}/versions/", {"file": body}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    stored = hostile.versions.get().cases.order_by("position")
    assert [c.expected for c in stored] == cells
    assert [c.variables["input"] for c in stored] == [f"{c[:2]}x" for c in cells]
    exported = client.get(f"{API}/datasets/{hostile.slug}/versions/1/export/")
    lines = b"".join(exported.streaming_content).decode().splitlines()
    assert [json.loads(line)["expected"] for line in lines] == cells


# --- the import command -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda: zip_bomb(64 * MiB), "The model file is a zip archive, not an ONNX model"),
        (lambda: b"#!/bin/sh\nrm -rf /\n", "The model file is text, not an ONNX model"),
    ],
    ids=["zip-bomb", "script"],
)
def test_the_import_command_refuses_non_onnx_and_keeps_nothing(
    model, message, engineer, media, tmp_path, minilm_tokenizer
):
    folder = optimum_folder(tmp_path, model(), minilm_tokenizer)
    with pytest.raises(CommandError) as refused:
        call_command("evaluations_import_model", str(folder), "--user", "pat")
    assert message in str(refused.value)
    assert not ModelArtifact.objects.exists()
    assert files_under(media) == []


def test_the_import_command_exits_with_the_workers_reason_and_deletes_the_files(
    engineer, media, tmp_path, minilm_tokenizer
):
    model = external_weights(bag_of_words(), "../../etc/passwd")
    folder = optimum_folder(tmp_path, model.SerializeToString(), minilm_tokenizer)
    with pytest.raises(CommandError) as refused:
        call_command("evaluations_import_model", str(folder), "--user", "pat")
    assert "is invalid: Weight 'table' points at external data '../../etc/passwd'" in str(
        refused.value
    )
    assert ModelArtifact.objects.get().status == "invalid"  # the record of the refusal
    assert files_under(media) == []
