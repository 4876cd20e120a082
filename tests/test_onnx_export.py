"""`agad export`: one checked ONNX file per model directory that scores like the PyTorch model.

Parity bounds (issue 4): scores within 1e-4 relative, heat-maps within 1e-3, for all three
generators at 32 px and at 64 px, on random inputs and on Fashion-MNIST images, and for the
top-k and max-pool scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from agad_stream.cli.main import main
from agad_stream.errors import AgadError
from agad_stream.inference import load_backend
from agad_stream.model.artifact import load_scorer
from agad_stream.model.card import AnyScore, MemoryMethod
from agad_stream.model.generator import Architecture
from agad_stream.preprocess import to_model_input
from deploy.onnx_export import export_onnx
from tests.model_dirs import make_model_dir
from trainer.data import load_dataset

Exported = Callable[[Architecture, int, AnyScore], Path]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Model directories with model.onnx, each exported once per module (export takes seconds)."""
    cache: dict[tuple[str, int, str], Path] = {}

    def get(arch: Architecture, size: int, score: AnyScore = "l2") -> Path:
        key = (arch, size, score)
        if key not in cache:
            directory = make_model_dir(
                tmp_path_factory.mktemp(f"{arch}{size}{score}"), arch, size, score=score
            )
            export_onnx(directory)
            cache[key] = directory
        return cache[key]

    return get


@pytest.fixture(scope="module")
def fmnist_images() -> Callable[[int], np.ndarray]:
    """A few Fashion-MNIST test images (normal class 0 and other classes) at a size, as model input."""

    def get(size: int) -> np.ndarray:
        test = load_dataset("fmnist:0", size).test
        pick = np.concatenate([np.flatnonzero(test.labels == 0)[:3], np.flatnonzero(test.labels == 1)[:3]])
        return to_model_input(test.images[pick])

    return get


def torch_reference(model_dir: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scorer, _ = load_scorer(model_dir)
    with torch.inference_mode():
        scores, maps = scorer(torch.from_numpy(batch))
    return scores.numpy(), maps.numpy()


def assert_parity(model_dir: Path, batches: dict[str, np.ndarray]) -> None:
    """ONNX Runtime against PyTorch on each named batch (run as one batch: one model load each)."""
    joined = np.concatenate(list(batches.values()))
    ref_scores, ref_maps = torch_reference(model_dir, joined)
    scores, maps = load_backend(model_dir, "onnxruntime").predict(joined)
    assert scores.shape == ref_scores.shape and maps is not None and maps.shape == ref_maps.shape
    start = 0
    for name, batch in batches.items():
        part = slice(start, start + len(batch))
        start += len(batch)
        np.testing.assert_allclose(
            scores[part], ref_scores[part], rtol=1e-4, atol=0, err_msg=f"{name} scores"
        )
        np.testing.assert_allclose(maps[part], ref_maps[part], rtol=0, atol=1e-3, err_msg=f"{name} heat-maps")


def random_inputs(size: int, count: int = 3) -> np.ndarray:
    return np.random.default_rng(size).uniform(-1, 1, (count, 1, size, size)).astype(np.float32)


GENERATORS: list[Architecture] = ["naive", "unet", "unetpp"]


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("arch", GENERATORS)
def test_parity_on_random_inputs_and_fashion_mnist(
    exported: Exported, fmnist_images: Callable[[int], np.ndarray], arch: Architecture, size: int
) -> None:
    batches = {"random": random_inputs(size), "fashion-mnist": fmnist_images(size)}
    assert_parity(exported(arch, size, "l2"), batches)


@pytest.mark.parametrize(("arch", "score"), [("naive", "topk"), ("unetpp", "maxpool"), ("unet", "local_z")])
def test_parity_of_region_scores(
    exported: Exported, fmnist_images: Callable[[int], np.ndarray], arch: Architecture, score: AnyScore
) -> None:
    assert_parity(
        exported(arch, 32, score), {"random": random_inputs(32), "fashion-mnist": fmnist_images(32)}
    )


@pytest.mark.parametrize("score", ["knn_latent", "l2+knn_latent", "knn_contrast", "knn_or_local"])
def test_parity_of_latent_memory_scores(
    exported: Exported, fmnist_images: Callable[[int], np.ndarray], score: MemoryMethod
) -> None:
    assert_parity(
        exported("naive", 32, score), {"random": random_inputs(32), "fashion-mnist": fmnist_images(32)}
    )


def test_export_is_one_checked_file_with_the_contract(exported: Exported) -> None:
    model_dir = exported("naive", 32, "l2")
    path = model_dir / "model.onnx"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["scores", "heatmaps"]
    batch_dims = [v.type.tensor_type.shape.dim[0] for v in (*model.graph.input, *model.graph.output)]
    assert all(d.dim_param and not d.dim_value for d in batch_dims), "batch axis must be dynamic"
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.onnx", "weights.safetensors"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["agad.model_version"] == "test-naive-32-l2"


@pytest.mark.parametrize("batch", [1, 3, 40])
def test_dynamic_batch(exported: Exported, batch: int) -> None:
    inputs = np.random.default_rng(batch).uniform(-1, 1, (batch, 1, 32, 32)).astype(np.float32)
    scores, maps = load_backend(exported("naive", 32, "l2"), "onnxruntime").predict(inputs)
    assert scores.shape == (batch,) and maps is not None and maps.shape == (batch, 1, 32, 32)


def test_round_trip_export_load_score(tmp_path: Path, fmnist_images: Callable[[int], np.ndarray]) -> None:
    """The CLI exports, `auto` loads the result, and it scores as the model directory's PyTorch model."""
    model_dir = make_model_dir(tmp_path / "model", "unet", 32, score="maxpool")
    assert main(["export", "--model", str(model_dir), "--json"]) == 0
    backend = load_backend(model_dir)  # auto: ONNX Runtime on this machine
    images = fmnist_images(32)
    scores, maps = backend.predict(images)
    ref_scores, ref_maps = torch_reference(model_dir, images)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4)
    assert maps is not None
    np.testing.assert_allclose(maps, ref_maps, atol=1e-3)
    assert backend.card.model_version == "test-unet-32-maxpool"


def test_export_cli_reports_parity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = make_model_dir(tmp_path / "model", "naive", 32, channels=3)
    assert main(["export", "--model", str(model_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["onnx"] == str(model_dir / "model.onnx") and report["opset"] == 18
    assert report["parity"]["ok"] is True
    assert report["parity"]["score_max_rel_diff"] <= 1e-4


def test_export_refuses_an_opset_it_cannot_write(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    with pytest.raises(AgadError, match=r"--opset 17.*use --opset 18"):
        export_onnx(model_dir, opset=17)
    assert not (model_dir / "model.onnx").exists()


def test_export_of_a_missing_model_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export", "--model", str(tmp_path / "nope")])
    assert exited.value.code == 2
    assert "argument --model: " in (err := capsys.readouterr().err) and "is not a model directory" in err
