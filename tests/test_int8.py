"""INT8 for ONNX Runtime on CPUs: the exact rewrite of the decoder, the quantised graph, and its use.

What is checked here is what a wrong build would break: the rewritten decoder computes what the
transposed convolutions did, the INT8 graph quantises the generator but keeps the code and the
score head in float32, it ranks real images as the float32 graph does, and the scorer's ``auto``
backend takes it on a CPU only while it belongs to the model directory. Its speed and its AUROC
against float32 are measured by benchmarks/int8.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from agad_stream.cli.main import main
from agad_stream.errors import AgadError
from agad_stream.inference import load_backend
from agad_stream.inference.selection import Machine, choose_backend
from agad_stream.model.card import load_card
from agad_stream.model.generator import NaiveGenerator
from agad_stream.preprocess import to_model_input
from deploy.phase_conv import PhaseConvTranspose, rewrite_transposed_convolutions
from tests.model_dirs import make_model_dir
from trainer.data import load_dataset

CODE_WEIGHT = "generator.encoder.8.weight"  # the naive encoder's last convolution at 32 px


@pytest.mark.parametrize("bias", [False, True])
def test_a_phase_convolution_equals_the_transposed_one(bias: bool) -> None:
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(5, 7, 4, stride=2, padding=1, bias=bias)
    x = torch.randn(3, 5, 6, 9)  # not square: rows and columns must not be mixed up
    np.testing.assert_allclose(PhaseConvTranspose(deconv)(x).detach(), deconv(x).detach(), atol=1e-5)


def test_other_transposed_convolutions_are_refused() -> None:
    with pytest.raises(ValueError, match="not a 4/2/1"):
        PhaseConvTranspose(nn.ConvTranspose2d(4, 4, 2, stride=2))


@pytest.mark.parametrize("activation", [None, nn.ReLU(), nn.LeakyReLU(0.2)])
def test_the_batchnorm_and_activation_after_it_are_taken_in(activation: nn.Module | None) -> None:
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(5, 7, 4, stride=2, padding=1, bias=True)
    batchnorm = _trained_looking(nn.BatchNorm2d(7)).eval()
    after = activation if activation is not None else nn.Identity()
    x = torch.randn(3, 5, 6, 9)
    with torch.no_grad():
        expected = after(batchnorm(deconv(x)))
        np.testing.assert_allclose(PhaseConvTranspose(deconv, batchnorm, activation)(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        PhaseConvTranspose(deconv, batchnorm.train())


def test_the_rewritten_decoder_reconstructs_as_before() -> None:
    torch.manual_seed(0)
    generator = NaiveGenerator(64, 3)
    for module in generator.modules():
        if isinstance(module, nn.BatchNorm2d):
            _trained_looking(module)
    generator.eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        before = generator(x)
        # 64 px: three 4/2/1 stages plus the output layer; the first (1x1 code to 4x4) stays as it is.
        assert rewrite_transposed_convolutions(generator) == 4
        after = generator(x)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in generator.modules()) == 1
    # The BatchNorms and ReLUs of the three stages are taken in; the first layer's stay.
    decoder = generator.decoder
    assert [type(m) for m in decoder if isinstance(m, (nn.BatchNorm2d, nn.ReLU))] == [nn.BatchNorm2d, nn.ReLU]
    np.testing.assert_allclose(after, before, atol=1e-4)


def _trained_looking(batchnorm: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """Running statistics and affine weights far from their initial 0, 1, 1, 0."""
    with torch.no_grad():
        channels = batchnorm.num_features
        batchnorm.running_mean.copy_(torch.randn(channels))  # type: ignore[union-attr]
        batchnorm.running_var.copy_(torch.rand(channels) * 3 + 0.1)  # type: ignore[union-attr]
        batchnorm.weight.copy_(torch.randn(channels))
        batchnorm.bias.copy_(torch.randn(channels))
    return batchnorm


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A naive model with a memory score, exported by the CLI at int8 (calibrated on Fashion-MNIST 0),
    and the CLI's JSON report."""
    model_dir = make_model_dir(tmp_path_factory.mktemp("int8"), "naive", 32, score="knn_latent")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        flags = ["--precision", "int8", "--calibration-images", "64", "--json"]
        assert main(["export", "--model", str(model_dir), *flags]) == 0
    return model_dir, json.loads(out.getvalue())


def test_export_writes_both_graphs_and_checks_int8_against_fp32(
    int8_model: tuple[Path, dict[str, Any]],
) -> None:
    model_dir, report = int8_model
    assert report["onnx"] == str(model_dir / "model.int8.onnx") and report["precision"] == "int8"
    assert (model_dir / "model.onnx").is_file()  # the float32 reference was exported first
    assert report["parity"]["ok"] is True
    stamp = {p.key: p.value for p in onnx.load(str(model_dir / "model.int8.onnx")).metadata_props}
    assert stamp["agad.precision"] == "int8" and stamp["agad.model_version"] == "test-naive-32-knn_latent"


def test_the_generator_is_quantised_the_code_and_score_are_not(
    int8_model: tuple[Path, dict[str, Any]],
) -> None:
    graph = onnx.load(str(int8_model[0] / "model.int8.onnx")).graph
    dequantised = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    quantised = [node for node in convs if node.input[1] in dequantised]
    # 32 px: the encoder's first three convolutions and the decoder's three rewritten ones.
    assert len(quantised) == 6, [node.input[1] for node in convs]
    (code,) = [node for node in convs if node.input[1] == CODE_WEIGHT]  # float32 weights
    quantising = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    assert code.output[0] not in quantising, "the code must not be rounded to 8 bits"
    # No 4/2/1 transposed convolution is left (only the code's 1x1 -> 4x4 one, in float32), and no
    # BatchNorm after one: it is folded into the phase convolution (the first layer's may stay).
    ops = [n.op_type for n in graph.node]
    assert ops.count("ConvTranspose") == 1 and ops.count("BatchNormalization") <= 1
    # The score head reads the reconstruction and the input in float32.
    head = {"TopK", "MatMul", "Sqrt", "Abs", "ReduceMean"}
    for node in graph.node:
        if node.op_type in head:
            assert not any(name in dequantised for name in node.input), node.name


def test_int8_ranks_real_images_as_fp32(int8_model: tuple[Path, dict[str, Any]]) -> None:
    model_dir = int8_model[0]
    test = load_dataset("fmnist:0", 32).test
    pick = np.concatenate([np.flatnonzero(test.labels == 0)[:24], np.flatnonzero(test.labels == 1)[:24]])
    images = to_model_input(test.images[pick])
    fp32 = load_backend(model_dir, "onnxruntime", precision="fp32").predict(images)
    int8_backend = load_backend(model_dir, "onnxruntime", precision="int8")
    assert int8_backend.details["precision"] == "int8"
    int8 = int8_backend.predict(images)
    assert int8[1] is not None and fp32[1] is not None and int8[1].shape == fp32[1].shape
    assert np.corrcoef(fp32[0], int8[0])[0, 1] > 0.99
    np.testing.assert_allclose(int8[0], fp32[0], rtol=0.1)


def test_auto_takes_the_int8_graph_on_a_cpu_while_it_belongs_to_the_model(
    int8_model: tuple[Path, dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = int8_model[0]
    assert load_backend(model_dir).details["precision"] == "int8"
    assert load_backend(model_dir, precision="fp32").details["precision"] == "fp32"
    # Another model version in the same directory: the INT8 graph is stale, auto falls back to fp32.
    stale = tmp_path / "stale"
    shutil.copytree(model_dir, stale)
    card = load_card(stale)
    (stale / "model.json").write_text(card.model_copy(update={"model_version": "v2"}).model_dump_json())
    (stale / "model.onnx").unlink()
    with pytest.raises(
        AgadError, match=r"stale; re-export it with `agad export --model .* --precision int8`"
    ):
        load_backend(stale, "onnxruntime", precision="int8")
    from deploy.onnx_export import export_onnx

    export_onnx(stale)
    with caplog.at_level(logging.WARNING):
        assert load_backend(stale).details["precision"] == "fp32"
    assert "trying the next choice" in caplog.text


def test_int8_without_its_graph_says_how_to_export(tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "model")
    with pytest.raises(
        AgadError, match=r"has no model.int8.onnx; run `agad export --model .* --precision int8`"
    ):
        load_backend(model_dir, "onnxruntime", precision="int8")
    with pytest.raises(AgadError, match="precision 'fp16'"):
        load_backend(model_dir, "onnxruntime", precision="fp16")


def test_choice_on_a_cpu_machine_with_an_int8_graph() -> None:
    cpu_only = ("CPUExecutionProvider",)
    choice = choose_backend(Machine(cpu_only, None, None, (), int8_graph=True))
    assert choice.options == {"device": "cpu", "precision": "int8"}
    assert choose_backend(Machine(cpu_only, None, None)).options == {"device": "cpu"}


def test_bench_compares_the_two_graphs_in_one_run(
    int8_model: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--batch", "2", "--iterations", "2", "--rounds", "1", "--preprocess-iterations", "2", "--json"]
    backends = "onnxruntime,onnxruntime:int8"
    assert main(["bench", "--model", str(int8_model[0]), "--backends", backends, *flags]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["details"]["precision"] for r in results] == ["fp32", "int8"]
    assert all(r["images_per_second"] > 0 for r in results)
