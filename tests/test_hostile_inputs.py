"""Hostile model directories and settings are refused with a message; nothing in them is run."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agad_stream.errors import AgadError
from agad_stream.inference import load_backend
from agad_stream.model.artifact import load_scorer
from agad_stream.model.registry import current_version
from deploy.onnx_export import export_onnx
from tests.model_dirs import make_model_dir

Agad = Callable[..., subprocess.CompletedProcess[str]]
RAN = Path("/tmp/agad-hostile-pickle-ran")


class _Boom:
    """Unpickling this would create a file: the proof that a pickle was run."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (RAN.touch, ())  # type: ignore[return-value]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = make_model_dir(tmp_path / "good")
    export_onnx(directory)
    return directory


def test_a_pickle_where_the_weights_belong_is_refused_unrun(model: Path) -> None:
    RAN.unlink(missing_ok=True)
    (model / "weights.safetensors").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(AgadError, match=r"is not a safetensors file.*nothing in it was run"):
        load_scorer(model)
    with pytest.raises(AgadError):
        load_backend(model, "torch")
    assert not RAN.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": {"image_size": 100_000, "channels": 1, "colour": "gray"}}, "image_size"),
        ({"input": {"image_size": 32, "channels": 7, "colour": "gray"}}, "channels"),
        ({"generator": "transformer"}, "generator"),
        ({"score": {"method": "l2", "memory_k": 10**9}}, "memory_k"),
        ({"threshold": "high"}, "threshold"),
    ],
)
def test_a_model_card_out_of_bounds_is_refused(model: Path, change: dict[str, object], message: str) -> None:
    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**card, **change}))
    for kind in ("onnxruntime", "torch"):
        with pytest.raises(AgadError, match=rf"(?s)not a valid model card.*{message}"):
            load_backend(model, kind)


def test_a_card_that_is_not_json_is_refused(model: Path) -> None:
    (model / "model.json").write_bytes(b"\x80\x04\x95 not json")
    with pytest.raises(AgadError, match="not a valid model card"):
        load_backend(model, "onnxruntime")


def test_the_graph_of_another_model_is_refused(model: Path, tmp_path: Path) -> None:
    other = make_model_dir(tmp_path / "other", seed=3, version="someone-else")
    export_onnx(other)
    shutil.copy2(other / "model.onnx", model / "model.onnx")
    with pytest.raises(AgadError, match="exported from model version 'someone-else'"):
        load_backend(model, "onnxruntime")


def test_a_registry_pointer_cannot_leave_the_registry(tmp_path: Path, model: Path) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    for pointer in ("../good", "/etc", "..", ""):
        (registry / "current").write_text(pointer)
        with pytest.raises(AgadError, match=r"must hold the name of a version directory|does not exist"):
            current_version(registry)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGAD_REDIS__URL", "file:///etc/passwd"),
        ("AGAD_REDIS__URL", "redis://x/0; rm -rf /"),
        ("AGAD_KAFKA__BOOTSTRAP_SERVERS", "$(touch /tmp/pwned):9092"),
        ("AGAD_KAFKA__BOOTSTRAP_SERVERS", "localhost"),
        ("AGAD_SCORER__MAX_BATCH", "100000000"),
        ("AGAD_SCORER__BACKEND", "tensorrt;rm"),
        ("AGAD_REVIEW__PORT", "-1"),
    ],
)
def test_hostile_settings_are_refused_by_every_command(
    agad: Agad, model: Path, variable: str, value: str
) -> None:
    for command in (("config", "show"), ("serve", "--model", str(model)), ("review", "list")):
        result = agad(*command, env={variable: value})
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert variable in result.stderr and "Traceback" not in result.stderr
    assert not Path("/tmp/pwned").exists()


def test_hostile_services_settings_are_refused(agad: Agad) -> None:
    for command in (("config", "show"), ("services", "status")):
        result = agad(*command, env={"AGAD_SERVICES__KAFKA_HEAP_MB": "999999999"})
        assert result.returncode == 2 and "AGAD_SERVICES__KAFKA_HEAP_MB" in result.stderr
