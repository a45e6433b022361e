"""Operator commands: install the default pack, import an Optimum export folder."""

import json
import shutil

import pytest
from django.core.management import CommandError, call_command

from apps.evaluations.models import ModelArtifact
from apps.evaluations.services.artifacts import MODELS_DIR

pytestmark = pytest.mark.django_db


def test_default_pack_command_registers_the_encoder_once(media, default_pack_build, capsys):
    shutil.copytree(default_pack_build / MODELS_DIR, media / MODELS_DIR, dirs_exist_ok=True)
    call_command("evaluations_default_pack")
    call_command("evaluations_default_pack")
    artifact = ModelArtifact.objects.get()
    assert (artifact.slug, artifact.status, artifact.is_default) == (
        "all-minilm-l6-v2",
        "valid",
        True,
    )
    assert "all-minilm-l6-v2: valid" in capsys.readouterr().out
    assert artifact.history.count() == 1


def _optimum_folder(tmp_path, model, tokenizer, labels):
    folder = tmp_path / "intent-export"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    shutil.copy(tokenizer, folder / "tokenizer.json")
    config = {
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "max_position_embeddings": 512,
        "hidden_size": 32,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_import_command_reads_an_optimum_folder_and_validates_it(
    engineer, media, tmp_path, tiny_classifier, minilm_tokenizer, capsys
):
    folder = _optimum_folder(
        tmp_path, tiny_classifier(3), minilm_tokenizer, ["billing", "tech", "other"]
    )
    call_command(
        "evaluations_import_model", str(folder), "--user", "pat", "--license", "Apache-2.0"
    )
    artifact = ModelArtifact.objects.get()
    assert artifact.task == "sequence_classification" and artifact.status == "valid"
    assert artifact.labels == ["billing", "tech", "other"] and artifact.license == "Apache-2.0"
    assert "valid (Sequence classification" in capsys.readouterr().out


def test_import_command_exits_with_the_reason(
    engineer, media, tmp_path, tiny_classifier, minilm_tokenizer
):
    folder = _optimum_folder(tmp_path, tiny_classifier(2), minilm_tokenizer, ["a", "b", "c"])
    with pytest.raises(CommandError, match="invalid"):
        call_command("evaluations_import_model", str(folder), "--user", "pat")
    (folder / "model.onnx").unlink()
    with pytest.raises(CommandError, match="no model.onnx"):
        call_command("evaluations_import_model", str(folder), "--user", "pat")
    with pytest.raises(CommandError, match="No active user"):
        call_command("evaluations_import_model", str(folder), "--user", "nobody")
