"""The sweeper deletes what interrupted model uploads left in storage, and nothing else."""

import io
import os
import time

import pytest

from apps.evaluations import services
from apps.evaluations.services.artifacts import MODELS_DIR, storage_sweep
from apps.evaluations.tasks import evaluation_sweep

HOUR = 3600


def _age(folder, seconds):
    """Make a folder and everything in it look unchanged for `seconds`."""
    then = time.time() - seconds
    for entry in [folder, *folder.rglob("*")]:
        os.utime(entry, (then, then))


def _leftover(root, name, seconds):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"\x08\x07partial")
    _age(folder, seconds)
    return folder


@pytest.fixture
def models(media):
    root = media / MODELS_DIR
    root.mkdir()
    return root


@pytest.mark.django_db
def test_abandoned_upload_folders_are_removed_and_live_ones_kept(
    models, owner, charter, tiny_classifier, minilm_tokenizer
):
    artifact = services.artifact_upload(
        actor=owner,
        name="Intent classifier",
        task="sequence_classification",
        model_file=io.BytesIO(tiny_classifier(3).SerializeToString()),
        tokenizer_file=io.BytesIO(minilm_tokenizer.read_bytes()),
        charter=charter,
        labels=["billing", "shipping", "other"],
        max_seq_length=64,
    )
    kept = models.parent / artifact.storage_dir
    _age(kept, 2 * HOUR)  # old, but an artifact names it
    cut_short = _leftover(models / ".incoming", "a" * 32, 2 * HOUR)
    in_progress = _leftover(models / ".incoming", "b" * 32, 60)
    orphan = _leftover(models, f"{'c' * 32}-none", 2 * HOUR)
    fresh_orphan = _leftover(models, f"{'d' * 32}-none", 60)  # its row may not be committed yet
    default_pack = _leftover(models, "default", 2 * HOUR)

    assert storage_sweep() == {"incoming": 1, "orphaned": 1}

    assert not cut_short.exists() and not orphan.exists()
    assert in_progress.exists() and fresh_orphan.exists() and default_pack.exists()
    assert (kept / "model.onnx").exists()
    # Once they too go unchanged long enough, the scheduled sweep takes them.
    assert storage_sweep(now=time.time() + 2 * HOUR) == {"incoming": 1, "orphaned": 1}
    assert kept.exists() and default_pack.exists()


@pytest.mark.django_db
def test_the_scheduled_sweep_reports_storage_with_runs(models):
    _leftover(models / ".incoming", "e" * 32, 2 * HOUR)

    counts = evaluation_sweep()

    assert counts == {"requeued": 0, "failed": 0, "finalize": 0, "incoming": 1, "orphaned": 0}
