"""Every subcommand refuses a bad flag value while parsing: exit status 2, the flag named, no traceback."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agad_stream.cli.args import batch_sizes
from agad_stream.cli.main import build_parser, main
from tests.model_dirs import make_model_dir

MODEL = "{model}"  # replaced by a real model directory, so that only the flag under test is wrong
BAD_FLAGS: list[tuple[list[str], str]] = [
    (["train", "--data", "fmnist:0", "--out", "x", "--image-size", "48"], "--image-size"),
    (["train", "--data", "fmnist:0", "--out", "x", "--epochs", "0"], "--epochs"),
    (["train", "--data", "fmnist:0", "--out", "x", "--gamma", "1.5"], "--gamma"),
    (["train", "--data", "fmnist:0", "--out", "x", "--seed", "-1"], "--seed"),
    (["train", "--data", "fmnist:0", "--out", "x", "--threads", "0"], "--threads"),
    (["train", "--data", "fmnist:0", "--out", "x", "--target-fpr", "0"], "--target-fpr"),
    (["train", "--data", "fmnist:0", "--out", "x", "--device", "gpu"], "--device"),
    (["train", "--data", "fmnist:0", "--out", "x", "--set", "nosuch=1"], "--set"),
    (["train", "--data", "fmnist:0", "--out", "x", "--set", "ema=fast"], "--set"),
    (["evaluate", "--model", "no/such/dir"], "--model"),
    (["evaluate", "--model", MODEL, "--gamma", "-0.1"], "--gamma"),
    (["evaluate", "--model", MODEL, "--seed", "x"], "--seed"),
    (["export", "--model", MODEL, "--opset", "10"], "--opset"),
    (["build-engine", "--model", MODEL, "--batch", "0"], "--batch"),
    (["build-engine", "--model", MODEL, "--calibration-images", "0"], "--calibration-images"),
    (["build-engine", "--model", MODEL, "--workspace-gib", "0"], "--workspace-gib"),
    (["bench", "--model", MODEL, "--batch", "1,x"], "--batch"),
    (["bench", "--model", MODEL, "--iterations", "0"], "--iterations"),
    (["bench", "--model", MODEL, "--warmup", "-1"], "--warmup"),
    (["bench", "--model", MODEL, "--backends", "cuda"], "--backends"),
    (["bench", "--model", MODEL, "--frame-size", "4x4"], "--frame-size"),
    (["bench", "--model", MODEL, "--device", "tpu"], "--device"),
    (["serve", "--model", "no/such/dir"], "--model"),
    (["serve", "--model", MODEL, "--max-batch", "0"], "--max-batch"),
    (["serve", "--model", MODEL, "--max-wait-ms", "-5"], "--max-wait-ms"),
    (["serve", "--model", MODEL, "--metrics-port", "70000"], "--metrics-port"),
    (["serve", "--model", MODEL, "--threshold", "nan"], "--threshold"),
    (["serve", "--model", MODEL, "--threads", "0"], "--threads"),
    (["serve", "--model", MODEL, "--lanes", "0"], "--lanes"),
    (["simulate", "--data", "elpv", "--cameras", "0"], "--cameras"),
    (["simulate", "--data", "elpv", "--fps", "-1"], "--fps"),
    (["simulate", "--data", "elpv", "--corrupt-rate", "2"], "--corrupt-rate"),
    (["simulate", "--data", "elpv", "--count", "-1"], "--count"),
    (["simulate", "--data", "elpv", "--duration", "0"], "--duration"),
    (["simulate", "--data", "elpv", "--image-size", "3"], "--image-size"),
    (["services", "up", "--only", "zookeeper"], "--only"),
    (["retrain", "--every", "soon"], "--every"),
    (["retrain", "--margin", "2"], "--margin"),
    (["retrain", "--holdout", "1"], "--holdout"),
    (["retrain", "--epochs", "0"], "--epochs"),
    (["demo", "--port", "0"], "--port"),
    (["demo", "--image-size", "100"], "--image-size"),
    (["review", "serve", "--port", "70000"], "--port"),
    (["review", "decide", "f", "--label", "maybe", "--reviewer", "ana"], "--label"),
]


def test_batch_sizes_are_sorted_and_unique() -> None:
    assert batch_sizes("32, 1,8,8") == [1, 8, 32]
    for bad in ("", "0", "1,x", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive whole numbers"):
            batch_sizes(bad)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("flags-model"))


@pytest.mark.parametrize(("argv", "flag"), BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_value_is_refused_while_parsing(
    argv: list[str], flag: str, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([str(model) if arg == MODEL else arg for arg in argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert f"argument {flag}" in err, err
    assert "Traceback" not in err


def test_the_installed_command_says_which_sizes_it_takes(
    agad: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = agad("train", "--data", "fmnist:0", "--out", "m", "--image-size", "48")
    assert result.returncode == 2
    assert (
        "argument --image-size: 48 px is not a size the generators take; choose one of 32, 64"
        in result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout


def _options() -> dict[str, list[tuple[str, argparse.Action]]]:
    """Every option of every command: option -> [(command, action)]."""
    found: dict[str, list[tuple[str, argparse.Action]]] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            elif action.option_strings and action.dest != "help":
                for option in action.option_strings:
                    found.setdefault(option, []).append((" ".join(path), action))

    walk(build_parser(), ())
    return found


def test_every_flag_has_help_and_shared_flags_mean_one_thing() -> None:
    options = _options()
    undocumented = [f"{cmd} {opt}" for opt, uses in options.items() for cmd, a in uses if not a.help]
    assert not undocumented
    for option, uses in options.items():
        if option == "--model":  # serve also takes a registry; every other command a model directory
            continue
        if option == "--precision":  # a TensorRT engine can also be fp16; ONNX Runtime's graphs cannot
            engine = {cmd: a for cmd, a in uses}.pop("build-engine")
            uses = [(cmd, a) for cmd, a in uses if cmd != "build-engine"]
            assert all(set(a.choices or ()) < set(engine.choices or ()) for _, a in uses)
        kinds = {(a.type, tuple(a.choices or ()), type(a)) for _, a in uses}
        assert len(kinds) == 1, f"{option} means different things in {[cmd for cmd, _ in uses]}"
