"""Training from code, no command line: the retraining loop's way in. The result loads in the scorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agad_stream.inference import load_backend
from agad_stream.model.card import load_card
from agad_stream.preprocess import to_model_input
from deploy.onnx_export import export_onnx
from tests.test_train_evaluate_cli import _write_folder
from trainer.agad.variant import preset
from trainer.api import TrainConfig, train
from trainer.data import load_dataset


def test_train_through_the_api_and_serve_the_result(tmp_path: Path) -> None:
    _write_folder(tmp_path / "parts")
    dataset = load_dataset(f"folder:{tmp_path / 'parts'}", 32, gamma=0.05)
    config = TrainConfig(
        preset("default", batch_size=16), epochs=2, model_version="api-v1", parent_version="api-v0"
    )
    trained = train(config, dataset, tmp_path / "model", progress=False)
    card = load_card(tmp_path / "model")
    assert card == trained.card
    assert (card.model_version, card.parent_version) == ("api-v1", "api-v0")
    assert card.training["epochs"] == 2 and len(card.training["history"]) == 2
    assert card.threshold.n_anomalous == dataset.val.n_anomalous
    assert card.variant["stretched_anomalies"] == 0  # a few good images: as trained, not as preset
    assert not (tmp_path / "model" / "checkpoint.pt").exists()

    export_onnx(tmp_path / "model")
    backend = load_backend(tmp_path / "model", "onnxruntime")
    served, _ = backend.predict(to_model_input(dataset.test.images), heatmaps=False)
    with torch.inference_mode():
        expected = trained.scorer(torch.from_numpy(to_model_input(dataset.test.images)))[0].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)


def test_fine_tuning_starts_from_the_parent_weights(tmp_path: Path) -> None:
    _write_folder(tmp_path / "parts")
    dataset = load_dataset(f"folder:{tmp_path / 'parts'}", 32)
    variant = preset("default", batch_size=16)
    parent = train(TrainConfig(variant, epochs=3), dataset, tmp_path / "p", progress=False)
    scratch = train(TrainConfig(variant, epochs=1), dataset, tmp_path / "s", progress=False)
    child = train(
        TrainConfig(variant, epochs=1, model_version="c", parent_version="p", init=tmp_path / "p"),
        dataset,
        tmp_path / "c",
        progress=False,
    )
    first = [t.card.training["history"][0]["con"] for t in (scratch, child)]
    assert first[1] < first[0]  # it went on from what the parent had learned
    assert parent.card.training["history"][-1]["con"] > 0
    assert child.card.training["init"] == str(tmp_path / "p")
