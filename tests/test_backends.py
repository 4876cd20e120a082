"""The scorer interface: torch and ONNX Runtime backends, load_backend, and `agad bench`."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from agad_stream.cli.main import main
from agad_stream.errors import AgadError
from agad_stream.inference import Backend, load_backend
from agad_stream.inference.bench import Timing, preprocessing_share, synthetic_frame, time_preprocess
from agad_stream.preprocess import decode_image
from deploy.onnx_export import export_onnx
from tests.model_dirs import make_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_model_dir(tmp_path_factory.mktemp("model") / "naive32", "naive", 32, score="topk")
    export_onnx(directory)
    return directory


def batch(count: int, size: int = 32, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, channels, size, size)).astype(np.float32)


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_backend_interface(model_dir: Path, kind: str) -> None:
    backend = load_backend(model_dir, kind, device="cpu")
    assert isinstance(backend, Backend)
    assert backend.name == kind and backend.card.model_version == "test-naive-32-topk"
    assert backend.details["device"] == "cpu"
    scores, maps = backend.predict(batch(4))
    assert scores.dtype == np.float32 and scores.shape == (4,)
    assert maps is not None and maps.dtype == np.float32 and maps.shape == (4, 1, 32, 32)
    only_scores, none = backend.predict(batch(4), heatmaps=False)
    assert none is None
    np.testing.assert_array_equal(only_scores, scores)


def test_torch_backend_is_the_reference_in_channels_last(model_dir: Path) -> None:
    backend = load_backend(model_dir, "torch", device="cpu")
    scorer = backend.scorer  # type: ignore[attr-defined]
    conv = next(m for m in scorer.generator.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = scorer(torch.from_numpy(batch(3)))[0].numpy()
    np.testing.assert_allclose(backend.predict(batch(3))[0], expected, rtol=1e-6)


def test_onnxruntime_thread_count(model_dir: Path) -> None:
    backend = load_backend(model_dir, "onnxruntime", threads=1)
    assert backend.session.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]
    assert backend.details["threads"] == "1" and backend.details["provider"] == "CPUExecutionProvider"


def test_onnxruntime_lanes_score_concurrent_calls_as_one_call_would(model_dir: Path) -> None:
    single = load_backend(model_dir, "onnxruntime", threads=1)
    lanes = load_backend(model_dir, "onnxruntime", lanes=2)
    assert single.lanes == 1 and lanes.lanes == 2 and lanes.details["lanes"] == "2"
    session = lanes.session  # type: ignore[attr-defined]
    cores = os.cpu_count() or 1
    assert session.get_session_options().intra_op_num_threads == max(1, cores // 2)  # cores shared out
    batches = [batch(8, seed=seed) for seed in range(6)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lanes.predict, batches))
    for images, (scores, maps) in zip(batches, together, strict=True):
        expected_scores, expected_maps = single.predict(images)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
        assert maps is not None and expected_maps is not None
        np.testing.assert_allclose(maps, expected_maps, rtol=1e-5, atol=1e-6)


def test_lanes_are_refused_off_the_cpu(model_dir: Path) -> None:
    with pytest.raises(AgadError, match="lanes 2: use 1, or more on the CPU"):
        load_backend(model_dir, "onnxruntime", device="cuda", lanes=2)
    with pytest.raises(AgadError, match="backend torch has no option lanes"):
        load_backend(model_dir, "torch", lanes=2)


def test_auto_on_a_cpu_machine_is_onnxruntime(model_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; auto's choice there is tested in test_tensorrt_paths")
    backend = load_backend(model_dir, "auto", threads=1, half=True)  # options for other backends are dropped
    assert backend.name == "onnxruntime" and backend.details["device"] == "cpu"


def test_missing_onnx_file_says_how_to_export(tmp_path: Path) -> None:
    directory = make_model_dir(tmp_path / "model")
    for kind in ("onnxruntime", "auto"):
        with pytest.raises(AgadError, match=r"no model\.onnx; run `agad export --model .*model`"):
            load_backend(directory, kind)


def test_bad_backend_requests(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(AgadError, match="unknown backend 'tflite'"):
        load_backend(model_dir, "tflite")
    with pytest.raises(AgadError, match="backend onnxruntime has no option half"):
        load_backend(model_dir, "onnxruntime", half=True)
    with pytest.raises(AgadError, match="does not exist"):
        load_backend(tmp_path / "missing", "torch")
    if not torch.cuda.is_available():
        with pytest.raises(AgadError, match="torch sees no CUDA GPU"):
            load_backend(model_dir, "torch", device="cuda")
    with pytest.raises(AgadError, match="half precision needs a CUDA device"):
        load_backend(model_dir, "torch", device="cpu", half=True)
    with pytest.raises(AgadError, match="threads must be at least 1"):
        load_backend(model_dir, "onnxruntime", threads=0)


@pytest.mark.parametrize("kind", ["torch", "onnxruntime"])
def test_predict_rejects_what_the_model_does_not_take(model_dir: Path, kind: str) -> None:
    backend = load_backend(model_dir, kind)
    with pytest.raises(ValueError, match=r"takes float32 \(N, 1, 32, 32\).*got shape \(2, 3, 32, 32\)"):
        backend.predict(batch(2, channels=3))
    with pytest.raises(ValueError, match="got dtype float64"):
        backend.predict(batch(2).astype(np.float64))
    with pytest.raises(ValueError, match=r"got shape \(32, 32\)"):
        backend.predict(batch(1)[0, 0])


def test_timing_statistics() -> None:
    timing = Timing("onnxruntime", batch=8)
    timing.add_round([0.010, 0.010, 0.020, 0.040])  # 32 images in 80 ms
    timing.add_round([0.010] * 4)  # 32 images in 40 ms
    timing.add_round([0.010, 0.010, 0.010, 0.050])  # 32 images in 80 ms
    assert timing.images_per_second == pytest.approx(400.0)  # median of 400, 800, 400
    assert timing.p50_ms == pytest.approx(10.0)  # over all 12 calls
    assert timing.p99_ms == pytest.approx(48.9)  # linear interpolation between 40 and 50
    assert timing.ms_per_image == pytest.approx(2.5)
    assert preprocessing_share(1.0, 3.0) == pytest.approx(0.25)


def test_preprocessing_measurement_decodes_a_real_jpeg() -> None:
    frame = synthetic_frame(160, 120, 3)
    assert frame[:2] == b"\xff\xd8"
    assert decode_image(frame, "image/jpeg").shape == (120, 160, 3)
    seconds = time_preprocess(frame, image_size=64, channels=1, iterations=3, warmup=1)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)


def test_bench_json(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--model", str(model_dir), "--backends", "torch,onnxruntime", "--batch", "1,4"]
    args += ["--iterations", "2", "--warmup", "1", "--rounds", "2", "--threads", "1", "--json"]
    args += ["--frame-size", "96x64", "--preprocess-iterations", "2"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    results = {(r["backend"], r["batch"]): r for r in report["results"]}
    assert set(results) == {("torch", 1), ("torch", 4), ("onnxruntime", 1), ("onnxruntime", 4)}
    for entry in results.values():
        assert entry["images_per_second"] > 0 and 0 < entry["latency_p50_ms"] <= entry["latency_p99_ms"]
        assert entry["samples"] == 4 and len(entry["rounds_images_per_second"]) == 2
        assert 0 < entry["preprocess_share"] < 1
    assert set(report["preprocessing"]["ms_per_frame"]) == {"32", "256"}
    assert report["machine"]["cpus"] >= 1 and report["settings"]["threads"] == 1


def test_bench_text_and_bad_flags(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--model", str(model_dir), "--backends", "onnxruntime", "--batch", "2"]
    args += ["--iterations", "1", "--rounds", "1", "--frame-size", "64x64", "--preprocess-iterations", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "onnxruntime" in out and "preprocessing per frame" in out
    for flag, value, message in [
        ("--backends", "tensorflow", "choose from auto"),
        ("--frame-size", "big", "WIDTHxHEIGHT"),
    ]:
        with pytest.raises(SystemExit):
            main(["bench", "--model", str(model_dir), flag, value])
        assert f"argument {flag}: {value!r}: " in (err := capsys.readouterr().err) and message in err
