"""`agad train` then `agad evaluate --json` on a tiny folder data set, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from agad_stream.cli.main import main
from agad_stream.model.artifact import load_scorer
from agad_stream.model.card import ALL_SCORES
from agad_stream.model.score import AnomalyScorer
from trainer.data import Split, load_dataset
from trainer.data.masks import defect_masks
from trainer.evaluate import score_split, scores_and_heatmaps, stuck_pixels
from trainer.localisation import aupro, pixel_auroc
from trainer.metrics import MIN_ANOMALIES, auroc


def _write_folder(root: Path) -> None:
    """Gradient images as 'good' parts; the same with a dark scratch as 'scratch' defects, whose
    test images have their masks in ground_truth/, as MVTec AD keeps them."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40]

    def image(defect: bool) -> tuple[np.ndarray, np.ndarray]:
        angle = rng.uniform(0, np.pi)
        pixels = 128 + 60 * np.cos(angle) * (xx - 20) / 20 + 60 * np.sin(angle) * (yy - 20) / 20
        mask = np.zeros((40, 40), np.uint8)
        if defect:
            row = int(rng.integers(8, 30))
            pixels[row : row + 3, 5:35] = 10
            mask[row : row + 3, 5:35] = 255
        return pixels.clip(0, 255).astype(np.uint8), mask

    (root / "ground_truth" / "scratch").mkdir(parents=True)
    for folder, count, defect in [
        ("train/good", 48, False),
        ("test/good", 12, False),
        ("test/scratch", 12, True),
        ("train/scratch", 6, True),
    ]:
        (root / folder).mkdir(parents=True)
        for i in range(count):
            pixels, mask = image(defect)
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), pixels)
            if folder == "test/scratch":
                cv2.imwrite(str(root / "ground_truth" / "scratch" / f"{i:03d}_mask.png"), mask)


def test_train_then_evaluate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "parts"
    _write_folder(data)
    model = tmp_path / "model"
    model.mkdir()
    stale = [model / "model.onnx", model / "gpu.engine", model / "gpu.engine.json"]  # of an earlier model
    for path in stale:
        path.write_bytes(b"made from the weights this training replaces")
    status = main(
        [
            "train",
            "--data",
            f"folder:{data}",
            "--out",
            str(model),
            "--image-size",
            "32",
            "--epochs",
            "2",
            "--set",
            "batch_size=16",
            "--set",
            "turned_anomalies=0",
            "--set",
            "stretched_anomalies=0",
            "--gamma",
            "0",
            "--no-progress",
            "--model-version",
            "v-test",
        ]
    )
    assert status == 0
    assert (model / "weights.safetensors").is_file()
    assert not any(path.exists() for path in stale)
    card = json.loads((model / "model.json").read_text())
    assert card["model_version"] == "v-test"
    assert card["input"] == {
        "image_size": 32,
        "channels": 1,
        "colour": "gray",
        "normalisation": card["input"]["normalisation"],
    }
    assert card["threshold"]["method"] == "normal_quantile"  # gamma 0: validation holds normals only
    assert card["training"]["turn_choice"] is None  # no turned anomalies: no turn measured
    # Without turned anomalies score=auto stands on l2 and, with no labelled anomalies, compares
    # scores on damaged validation normals (with them it keeps knn_or_local: test_agad_training).
    assert card["variant"]["score"] == "auto"
    choice = card["training"]["score_choice"]
    assert choice["method"] == card["score"]["method"]
    assert choice["evidence"] == "synthetically damaged copies of validation normals"
    assert set(choice["val_auroc"]) == set(ALL_SCORES) - {"knn_contrast"}
    history = card["training"]["history"]
    assert card["training"]["selection"] == "val_normal_score"
    assert card["training"]["best_epoch"] == 1 + min(range(2), key=lambda e: history[e]["val_normal_score"])
    assert card["data"]["spec"] == f"folder:{data}"
    assert len(card["training"]["history"]) == 2
    assert all(len(pixel) == 2 for pixel in card["training"]["stuck_pixels"])
    capsys.readouterr()

    assert main(["evaluate", "--model", str(model), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = {
        "auroc",
        "average_precision",
        "f1",
        "precision",
        "recall",
        "accuracy",
        "tp",
        "fp",
        "tn",
        "fn",
        "n_normal",
        "n_anomalous",
        "threshold",
        "groups",
        "plots",
        "model_version",
        "score",
    }
    assert expected <= set(report)
    assert (report["n_normal"], report["n_anomalous"]) == (12, 12)
    assert report["score"] == card["score"]["method"]
    assert report["tp"] + report["fp"] + report["tn"] + report["fn"] == 24
    assert {Path(plot).name for plot in report["plots"]} == {"roc.png", "scores.png", "heatmaps.png"}
    for plot in report["plots"]:
        assert Path(plot).stat().st_size > 1000

    # The AUROC comes from the model's real scores on those images, whatever its value.
    scorer, _ = load_scorer(model)
    dataset = load_dataset(f"folder:{data}", 32)
    with torch.no_grad():
        scores = score_split(scorer, dataset.test)
    assert report["auroc"] == pytest.approx(auroc(dataset.test.labels, scores))
    assert report["groups"]["scratch"]["n"] == 12

    # The pixel figures come from the real heat-maps against the masks in ground_truth/.
    masks = defect_masks(data, dataset.test, 32)
    assert masks is not None and masks[dataset.test.labels == 0].sum() == 0
    assert masks[dataset.test.labels == 1].sum(axis=(1, 2)).min() > 0
    _, heatmaps = scores_and_heatmaps(scorer, dataset.test)
    assert heatmaps.shape == (24, 32, 32)
    where = report["localisation"]
    assert where["masks"] == 12 and where["aupro_max_fpr"] == 0.3
    assert where["pixel_auroc"] == pytest.approx(pixel_auroc(masks, heatmaps))
    assert where["aupro"] == pytest.approx(aupro(masks, heatmaps))


def test_supervised_training_calibrates_on_labelled_validation(tmp_path: Path) -> None:
    data = tmp_path / "parts"
    _write_folder(data)
    model = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--data",
                f"folder:{data}",
                "--out",
                str(model),
                "--gamma",
                "0.1",
                "--epochs",
                "1",
                "--set",
                "batch_size=16",
                "--set",
                "turned_anomalies=2",
                "--set",
                "stretched_anomalies=2",
                "--set",
                "anomalies_per_batch=4",
                "--set",
                "score=knn_contrast",
                "--threshold-rule",
                "balanced",
                "--no-progress",
            ]
        )
        == 0
    )
    card = json.loads((model / "model.json").read_text())
    assert card["threshold"]["method"] == "balanced"
    # A handful of labelled defects in validation: too few to choose the epoch on their AUROC.
    assert 0 < card["data"]["splits"]["val"]["anomalous"] < MIN_ANOMALIES
    assert card["training"]["selection"] == "val_normal_score"
    # turns=auto (the default's) says which turns it fed and why, measured on the good parts.
    turn_choice = card["training"]["turn_choice"]
    assert turn_choice["turns"] in ("quarter", "half", "any", None) and turn_choice["reason"]
    # The labelled defects' codes travel with the model and score what was saved.
    scorer, loaded = load_scorer(model)
    assert loaded.score.method == "knn_contrast"
    assert scorer.memory is not None and scorer.defect_memory is not None
    assert len(scorer.defect_memory) == card["data"]["splits"]["train"]["anomalous"]


def test_contrast_score_without_labelled_defects_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "parts"
    _write_folder(data)
    for defect in (data / "train" / "scratch").iterdir():
        defect.unlink()
    status = main(
        ["train", "--data", f"folder:{data}", "--out", str(tmp_path / "m"), "--set", "score=knn_contrast"]
    )
    assert status == 2
    assert "add labelled defects (--gamma" in capsys.readouterr().err
    assert not (tmp_path / "m" / "checkpoint.pt").exists()


def test_bad_variant_override_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", "folder:/nowhere", "--out", str(tmp_path / "m"), "--set", "colour=blue"])
    assert exited.value.code == 2
    assert "argument --set: 'colour=blue'" in capsys.readouterr().err


class _WhiteAt(torch.nn.Module):
    """A generator that gives its input back, except at ``pixels``, where it always outputs white."""

    def __init__(self, pixels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pixels = pixels
        self.unused = torch.nn.Parameter(torch.zeros(()))  # the scorer reads the dtype off a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        for row, column in self.pixels:
            out[:, :, row, column] = 1.0
        return out


def test_stuck_pixels_are_those_missed_on_nearly_every_normal_image() -> None:
    images = np.full((24, 8, 8, 1), 20, np.uint8)
    images[:10, 5, 5] = 255  # (5, 5) is white on 10 of the 20 normals: missed on only half of them
    images[20:, 2, 3] = 255  # the anomalies are white at (2, 3), but only normals count
    labels = np.array([0] * 20 + [1] * 4)
    split = Split(images, labels, np.array(["good"] * 20 + ["bad"] * 4), [str(i) for i in range(24)])

    assert stuck_pixels(AnomalyScorer(_WhiteAt([(2, 3), (5, 5), (7, 0)])), split) == [(2, 3), (7, 0)]
    assert stuck_pixels(AnomalyScorer(_WhiteAt([])), split) == []


def test_labelled_defects_in_the_folder_are_used_unless_gamma_says_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "parts"
    _write_folder(data)  # six labelled defects under train/scratch/
    common = ["--data", f"folder:{data}", "--epochs", "1", "--set", "batch_size=16", "--no-progress"]
    assert main(["train", *common, "--out", str(tmp_path / "all")]) == 0
    out = capsys.readouterr().out
    card = json.loads((tmp_path / "all" / "model.json").read_text())
    splits = card["data"]["splits"]
    assert splits["train"]["anomalous"] + splits["val"]["anomalous"] == 6
    assert (
        f"labelled defects: {splits['train']['anomalous']} trained, {splits['val']['anomalous']} validated"
        in out
    )
    assert main(["train", *common, "--out", str(tmp_path / "none"), "--gamma", "0"]) == 0
    assert "labelled defects: 0 trained, 0 validated" in capsys.readouterr().out


def test_calibrate_writes_a_version_with_another_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agad_stream.inference import load_backend

    data = tmp_path / "parts"
    _write_folder(data)
    model = tmp_path / "m"
    common = [
        "--data",
        f"folder:{data}",
        "--epochs",
        "1",
        "--set",
        "batch_size=16",
        "--gamma",
        "0",
        "--no-progress",
    ]
    assert main(["train", *common, "--out", str(model), "--model-version", "m1"]) == 0
    card = json.loads((model / "model.json").read_text())
    low, high = card["threshold"]["val_fpr_interval"]
    assert low <= card["threshold"]["val_fpr"] <= high and 0 <= card["threshold"]["synthetic_recall"] <= 1
    capsys.readouterr()

    assert (
        main(["calibrate", "--model", str(model), "--target-fpr", "0.25", "--model-version", "m1-loose"]) == 0
    )
    loose = json.loads((tmp_path / "m1-loose" / "model.json").read_text())
    assert loose["parent_version"] == "m1" and loose["threshold"]["method"] == "normal_quantile"
    assert (
        loose["threshold"]["target_fpr"] == 0.25 and loose["threshold"]["value"] < card["threshold"]["value"]
    )
    assert 0.1 <= loose["threshold"]["val_fpr"] <= 0.4
    assert load_backend(tmp_path / "m1-loose", "onnxruntime").card.model_version == "m1-loose"
    capsys.readouterr()
    strict = tmp_path / "strict"
    assert (
        main(["calibrate", "--model", str(model), "--threshold", "1e9", "--out", str(strict), "--json"]) == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["threshold"]["val_fpr"] == 0.0 and shown["metrics"]["test"]["recall"] == 0.0
    assert main(["evaluate", "--model", str(strict), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["expected"]["val_fpr"] == 0.0 and report["fpr"] == 0.0
