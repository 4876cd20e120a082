"""TensorRT: everything that runs without a GPU, with real objects; the rest marked ``gpu``.

Without a GPU: engine metadata, compatibility refusal, optimisation profiles and batch
splitting, INT8 calibration batching, the choice ``auto`` makes (a pure function fed a
described machine), and the messages of `agad build-engine` and `deploy/gpu_check` when TensorRT
or the GPU is missing. With an NVIDIA GPU and TensorRT: building, loading and parity.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from agad_stream.cli.main import main
from agad_stream.errors import AgadError
from agad_stream.inference import load_backend
from agad_stream.inference.engine import (
    EngineMetadata,
    EngineRecord,
    check_compatible,
    engine_path,
    find_engines,
    incompatibility,
    metadata_path,
    plan_chunks,
    profile_ranges,
    read_metadata,
    select_profile,
    tensorrt_available,
    write_metadata,
)
from agad_stream.inference.gpu import GpuInfo, gpu_slug, parse_nvidia_smi
from agad_stream.inference.selection import Machine, choose_backend, survey
from agad_stream.preprocess import to_model_input
from deploy.calibration import calibration_batch_size, calibration_batches, pick_calibration_images
from deploy.tensorrt_engine import default_timing_cache
from tests.model_dirs import make_model_dir

H200 = GpuInfo("NVIDIA H200", (9, 0))
L4 = GpuInfo("NVIDIA L4", (8, 9))
TRT = "10.9.0.34"
CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _has_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


needs_gpu_and_tensorrt = pytest.mark.skipif(
    not (tensorrt_available() and _has_gpu()), reason="needs an NVIDIA GPU and TensorRT"
)
needs_gpu = pytest.mark.skipif(not _has_gpu(), reason="needs an NVIDIA GPU")


def metadata(gpu: GpuInfo = H200, version: str = TRT, **changes: object) -> EngineMetadata:
    fields: dict[str, object] = {
        "tensorrt_version": version,
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "precision": "fp16",
        "profiles": profile_ranges([1, 8, 32]),
        "image_size": 32,
        "channels": 1,
        "onnx_sha256": "0" * 64,
        "model_version": "v1",
    }
    return EngineMetadata.model_validate({**fields, **changes})


def engine_file(directory: Path, gpu: GpuInfo = H200, version: str = TRT) -> EngineRecord:
    """An engine file (opaque bytes: nothing here deserializes it) with real metadata."""
    path = engine_path(directory, gpu)
    path.write_bytes(b"not a real engine")
    meta = metadata(gpu, version)
    write_metadata(path, meta)
    return EngineRecord(path, meta)


# --- GPU identity -------------------------------------------------------------------------------


def test_gpu_slug_names_the_model_and_capability() -> None:
    assert gpu_slug(H200) == "nvidia-h200-sm90"
    assert gpu_slug(GpuInfo("NVIDIA GeForce RTX 4090", (8, 9))) == "nvidia-geforce-rtx-4090-sm89"
    assert engine_path(Path("m"), L4) == Path("m/nvidia-l4-sm89.engine")
    assert metadata_path(Path("m/nvidia-l4-sm89.engine")) == Path("m/nvidia-l4-sm89.engine.json")


def test_parse_nvidia_smi() -> None:
    assert parse_nvidia_smi("NVIDIA H200, 9.0\nNVIDIA H200, 9.0\n") == H200
    assert parse_nvidia_smi("Tesla T4, 7.5") == GpuInfo("Tesla T4", (7, 5))
    assert parse_nvidia_smi("") is None
    assert parse_nvidia_smi("No devices were found") is None


# --- metadata -----------------------------------------------------------------------------------


def test_metadata_round_trip(tmp_path: Path) -> None:
    record = engine_file(tmp_path)
    assert read_metadata(record.path) == record.metadata
    assert record.metadata.batch_range == (1, 32) and record.metadata.gpu == H200
    assert metadata_path(record.path).name == "nvidia-h200-sm90.engine.json"


def test_metadata_missing_or_broken_says_rebuild(tmp_path: Path) -> None:
    engine = tmp_path / "nvidia-h200-sm90.engine"
    engine.write_bytes(b"x")
    with pytest.raises(AgadError, match=r"has no metadata file .*agad build-engine"):
        read_metadata(engine)
    metadata_path(engine).write_text('{"tensorrt_version": "10"}')
    with pytest.raises(AgadError, match=r"not valid engine metadata.*agad build-engine"):
        read_metadata(engine)


def test_metadata_rejects_bad_profiles() -> None:
    with pytest.raises(ValueError, match="overlap"):
        metadata(profiles=[(1, 4, 8), (8, 16, 16)])
    with pytest.raises(ValueError, match="min <= opt <= max"):
        metadata(profiles=[(4, 2, 8)])
    with pytest.raises(ValueError, match="at least one"):
        metadata(profiles=[])


def test_find_engines_lists_readable_ones_and_notes_the_rest(tmp_path: Path) -> None:
    good = engine_file(tmp_path, L4)
    (tmp_path / "orphan.engine").write_bytes(b"x")
    records, skipped = find_engines(tmp_path)
    assert records == [good]
    assert len(skipped) == 1 and "orphan.engine has no metadata" in skipped[0]


# --- compatibility ------------------------------------------------------------------------------


def test_compatible_engine() -> None:
    assert incompatibility(metadata(), H200, TRT) is None


@pytest.mark.parametrize(
    ("gpu", "version", "reason"),
    [
        (L4, TRT, r"built for NVIDIA H200 \(compute capability 9.0\), but this machine has NVIDIA L4"),
        (GpuInfo("NVIDIA H200", (9, 1)), TRT, "but this machine has NVIDIA H200 .compute capability 9.1"),
        (H200, "10.13.0.35", "built with TensorRT 10.9.0.34, but TensorRT 10.13.0.35 is installed"),
        (H200, None, r"TensorRT is not installed; .*pip install 'agad-stream\[tensorrt\]'"),
        (None, TRT, "no NVIDIA GPU is visible"),
    ],
)
def test_incompatible_engine_is_refused(
    tmp_path: Path, gpu: GpuInfo | None, version: str | None, reason: str
) -> None:
    record = engine_file(tmp_path)
    problem = incompatibility(record.metadata, gpu, version)
    assert problem is not None
    assert re.search(reason, problem), problem
    with pytest.raises(
        AgadError, match=f"cannot load TensorRT engine {record.path}.*agad build-engine --model"
    ):
        check_compatible(record, gpu, version)


# --- profiles -----------------------------------------------------------------------------------


def test_profile_ranges_cover_every_batch_up_to_the_largest() -> None:
    assert profile_ranges([32, 1, 8]) == [(1, 1, 1), (2, 8, 8), (9, 32, 32)]
    assert profile_ranges([16]) == [(1, 16, 16)]
    assert profile_ranges([1, 1, 4]) == [(1, 1, 1), (2, 4, 4)]
    with pytest.raises(AgadError, match="positive"):
        profile_ranges([0, 8])


def test_select_profile_picks_the_covering_range() -> None:
    profiles = profile_ranges([1, 8, 32])
    assert [select_profile(profiles, b) for b in (1, 2, 8, 9, 31, 32)] == [0, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="no optimisation profile covers batch 33"):
        select_profile(profiles, 33)


def test_plan_chunks_splits_batches_beyond_the_engine() -> None:
    profiles = profile_ranges([1, 8, 32])
    assert plan_chunks(5, profiles) == [(0, 5, 1)]
    assert plan_chunks(70, profiles) == [(0, 32, 2), (32, 64, 2), (64, 70, 1)]
    assert plan_chunks(33, profiles) == [(0, 32, 2), (32, 33, 0)]
    assert plan_chunks(0, profiles) == []


# --- INT8 calibration batching ------------------------------------------------------------------


def test_calibration_uses_normal_images_spread_over_the_split() -> None:
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1).repeat(8, 1).repeat(8, 2)
    labels = np.array([0, 1] * 10)
    picked = pick_calibration_images(images, labels, limit=4)
    assert [int(i[0, 0, 0]) for i in picked] == [0, 6, 12, 18]  # normals only, first to last
    assert len(pick_calibration_images(images, labels, limit=100)) == 10
    with pytest.raises(AgadError, match="no normal images"):
        pick_calibration_images(images, np.ones(20), limit=4)


def test_calibration_batches_have_one_fixed_shape() -> None:
    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    size = calibration_batch_size(len(images), 4)
    batches = list(calibration_batches(images, size))
    assert [b.shape for b in batches] == [(4, 3, 16, 16)] * 2  # the last 2 images do not fill a batch
    np.testing.assert_array_equal(batches[1], to_model_input(images[4:8]))
    assert calibration_batch_size(3, 32) == 3  # fewer images than a batch: one smaller batch
    assert [b.shape[0] for b in calibration_batches(images[:3], 3)] == [3]
    with pytest.raises(AgadError, match="at least one image"):
        calibration_batch_size(0, 32)


# --- auto ---------------------------------------------------------------------------------------


def test_auto_prefers_an_engine_built_for_this_gpu(tmp_path: Path) -> None:
    other, ours = engine_file(tmp_path, L4), engine_file(tmp_path, H200)
    choice = choose_backend(Machine(WITH_CUDA, H200, TRT, [other, ours]))
    assert choice.kind == "tensorrt" and choice.options == {"engine": ours.path}
    assert any("nvidia-l4-sm89.engine skipped: built for NVIDIA L4" in r for r in choice.reasons)


def test_auto_falls_back_to_onnxruntime_cuda(tmp_path: Path) -> None:
    wrong_version = engine_file(tmp_path, H200, version="8.6.1")
    choice = choose_backend(Machine(WITH_CUDA, H200, TRT, [wrong_version]))
    assert choice.kind == "onnxruntime" and choice.options == {"device": "cuda"}
    assert "TensorRT 8.6.1" in choice.reasons[0]
    # An engine for this GPU but no TensorRT installed: ONNX Runtime on the GPU.
    no_trt = choose_backend(Machine(WITH_CUDA, H200, None, [engine_file(tmp_path, H200)]))
    assert no_trt.kind == "onnxruntime" and no_trt.options == {"device": "cuda"}
    assert choose_backend(Machine(WITH_CUDA, H200, TRT)).options == {"device": "cuda"}


def test_auto_falls_back_to_onnxruntime_cpu(tmp_path: Path) -> None:
    without_gpu = choose_backend(Machine(WITH_CUDA, None, None, [engine_file(tmp_path, H200)]))
    assert (without_gpu.kind, without_gpu.options) == ("onnxruntime", {"device": "cpu"})
    assert "no NVIDIA GPU visible" in without_gpu.reasons
    cpu_build = choose_backend(Machine(CPU_ONLY, H200, TRT))
    assert (cpu_build.kind, cpu_build.options) == ("onnxruntime", {"device": "cpu"})
    assert "ONNX Runtime has no CUDAExecutionProvider" in cpu_build.reasons


@pytest.mark.skipif(
    tensorrt_available() or "CUDAExecutionProvider" in onnxruntime.get_available_providers(),
    reason="needs a machine where TensorRT and ONNX Runtime's CUDA provider are both missing",
)
def test_auto_gives_way_when_a_choice_fails_to_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Described as an H200 host with an engine, this machine fails TensorRT, then ORT CUDA; ORT CPU runs."""
    from deploy.onnx_export import export_onnx

    model_dir = make_model_dir(tmp_path / "model")
    export_onnx(model_dir)
    engine_file(model_dir, H200)
    described = Machine(WITH_CUDA, H200, TRT, find_engines(model_dir)[0])
    with caplog.at_level("WARNING", logger="agad_stream.inference"):
        backend = load_backend(model_dir, machine=described, threads=1)
    assert backend.name == "onnxruntime" and backend.details["device"] == "cpu"
    failed = [r.getMessage() for r in caplog.records if "trying the next choice" in r.getMessage()]
    assert len(failed) == 2 and "tensorrt" in failed[0] and "'cuda'" in failed[1]


@pytest.mark.skipif(_has_gpu(), reason="checks what this machine offers when it has no GPU")
def test_survey_of_this_machine(tmp_path: Path) -> None:
    make_model_dir(tmp_path, version="v1")
    record = engine_file(tmp_path, H200)
    machine, skipped = survey(tmp_path)
    assert machine.gpu is None and machine.tensorrt_version is None and not skipped
    assert list(machine.engines) == [record]
    assert "CPUExecutionProvider" in machine.providers
    assert choose_backend(machine).options == {"device": "cpu"}


# --- messages when TensorRT or the GPU is missing -----------------------------------------------


@pytest.mark.skipif(tensorrt_available() and _has_gpu(), reason="TensorRT and a GPU are present")
def test_build_engine_says_what_to_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    assert main(["build-engine", "--model", str(model_dir), "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert "agad build-engine: error:" in err
    assert "pip install 'agad-stream[tensorrt]'" in err and "NVIDIA GPU" in err
    assert not list(model_dir.glob("*.engine")) and not (model_dir / "model.onnx").exists()


@pytest.mark.skipif(tensorrt_available() and _has_gpu(), reason="TensorRT and a GPU are present")
def test_tensorrt_backend_refuses_without_tensorrt_or_gpu(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    with pytest.raises(AgadError, match=r"pip install 'agad-stream\[tensorrt\]'"):
        load_backend(model_dir, "tensorrt")


@pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU")
def test_gpu_check_exits_non_zero_without_a_gpu() -> None:
    script = Path(__file__).parents[1] / "deploy" / "gpu_check"
    assert os.access(script, os.X_OK)
    result = subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no NVIDIA GPU visible" in result.stderr


def test_timing_cache_lives_in_the_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGAD_CACHE_DIR", str(tmp_path))
    assert (
        default_timing_cache(H200, TRT) == tmp_path / "tensorrt" / f"nvidia-h200-sm90-trt{TRT}.timing-cache"
    )


# --- on a GPU -----------------------------------------------------------------------------------


@pytest.fixture
def exported_model(tmp_path: Path) -> Path:
    from deploy.onnx_export import export_onnx

    model_dir = make_model_dir(tmp_path / "model", "unet", 32, score="topk")
    export_onnx(model_dir)
    return model_dir


@pytest.mark.gpu
@needs_gpu_and_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_build_load_and_parity(exported_model: Path, precision: str) -> None:
    from deploy.parity import compare, random_batch
    from deploy.tensorrt_engine import BuildOptions, build_engine

    record = build_engine(exported_model, BuildOptions(precision=precision, batch_sizes=[1, 4]))  # type: ignore[arg-type]
    assert read_metadata(record.path).precision == precision
    engine = load_backend(exported_model, "tensorrt")
    assert engine.name == "tensorrt"
    auto = load_backend(exported_model)
    assert auto.name == "tensorrt"
    reference = load_backend(exported_model, "onnxruntime")
    for size in (1, 3, 4, 9):  # 9 runs as 4 + 4 + 1 on the engine's profiles
        parity = compare(reference, engine, random_batch(size, 1, 32, seed=size), precision)
        assert parity.ok, parity
    scores, maps = engine.predict(random_batch(2, 1, 32), heatmaps=False)
    assert scores.shape == (2,) and maps is None


@pytest.mark.gpu
@needs_gpu_and_tensorrt
def test_engine_for_another_gpu_is_refused_on_load(exported_model: Path) -> None:
    from deploy.tensorrt_engine import BuildOptions, build_engine

    record = build_engine(exported_model, BuildOptions(precision="fp16", batch_sizes=[2]))
    tampered = record.metadata.model_copy(update={"gpu_name": "NVIDIA Other", "compute_capability": (1, 0)})
    write_metadata(record.path, tampered)
    with pytest.raises(AgadError, match="built for NVIDIA Other"):
        load_backend(exported_model, "tensorrt", engine=record.path)


@pytest.mark.gpu
@needs_gpu_and_tensorrt
def test_int8_engine_calibrates_on_normal_images(exported_model: Path) -> None:
    from deploy.parity import compare
    from deploy.tensorrt_engine import BuildOptions, build_engine
    from trainer.data import load_dataset

    train = load_dataset("fmnist:0", 32).train
    images = pick_calibration_images(train.images, train.labels, limit=64)
    options = BuildOptions(precision="int8", batch_sizes=[8], calibration_images=images, calibration_batch=16)
    build_engine(exported_model, options)
    assert list(exported_model.glob("int8-calibration-*.cache"))
    engine = load_backend(exported_model, "tensorrt")
    parity = compare(load_backend(exported_model, "onnxruntime"), engine, to_model_input(images[:8]), "int8")
    assert parity.ok, parity


@pytest.mark.gpu
@needs_gpu
def test_torch_cuda_half_precision(exported_model: Path) -> None:
    from deploy.parity import compare, random_batch

    half = load_backend(exported_model, "torch", device="cuda")
    assert half.details["precision"].startswith("fp16")
    parity = compare(load_backend(exported_model, "onnxruntime"), half, random_batch(4, 1, 32), "fp16")
    assert parity.ok, parity
