"""Files derived from a model directory (model.onnx, engines) are refused once they are stale.

`agad train --out DIR` into a directory that already held a model rewrites weights and card; a
graph or engine made from the old ones must never be served under the new card.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agad_stream.errors import AgadError
from agad_stream.inference import load_backend
from agad_stream.inference.engine import engine_path, write_metadata
from agad_stream.inference.gpu import GpuInfo
from agad_stream.inference.selection import survey
from agad_stream.model.card import load_card
from agad_stream.model.provenance import engine_staleness, file_sha256, remove_derived
from deploy.onnx_export import export_onnx
from tests.model_dirs import make_model_dir
from tests.test_tensorrt_paths import metadata


def test_graph_of_another_version_is_refused(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path, seed=0, version="v1")
    export_onnx(model)
    assert load_backend(model, "onnxruntime").card.model_version == "v1"
    make_model_dir(tmp_path, seed=1, version="v2")  # retrained in place; model.onnx left behind
    with pytest.raises(AgadError, match=r"exported from model version 'v1'.*'v2'.*agad export --model"):
        load_backend(model, "onnxruntime")
    with pytest.raises(AgadError, match="stale"):
        load_backend(model, "auto")


def test_graph_of_other_weights_under_the_same_version_is_refused(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path, seed=0, version="v1")
    export_onnx(model)
    make_model_dir(tmp_path, seed=1, version="v1")
    with pytest.raises(AgadError, match=r"other weights.*agad export --model"):
        load_backend(model, "onnxruntime")
    export_onnx(model)  # the fix the message names
    assert load_backend(model, "onnxruntime").card.model_version == "v1"


def test_stale_engine_is_named_and_passed_over(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path, version="v2")
    export_onnx(model)
    graph = file_sha256(model / "model.onnx")
    card = load_card(model)
    assert engine_staleness(model / "x.engine", "v2", graph, card, model) is None
    assert "model version 'v1'" in (engine_staleness(model / "x.engine", "v1", graph, card, model) or "")
    assert "another model.onnx" in (engine_staleness(model / "x.engine", "v2", "0" * 64, card, model) or "")

    old = engine_path(model, GpuInfo("NVIDIA H200", (9, 0)))
    old.write_bytes(b"an engine of the previous training")
    write_metadata(old, metadata(model_version="v1", onnx_sha256=graph))
    machine, skipped = survey(model)
    assert not machine.engines
    assert any("model version 'v1'" in note and "agad build-engine" in note for note in skipped)


def test_remove_derived_leaves_weights_and_card(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path)
    export_onnx(model)
    (model / "gpu.engine").write_bytes(b"x")
    (model / "gpu.engine.json").write_text("{}")
    removed = remove_derived(model)
    assert sorted(p.name for p in removed) == ["gpu.engine", "gpu.engine.json", "model.onnx"]
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "weights.safetensors"]
