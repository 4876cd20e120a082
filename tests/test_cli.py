"""The `agad` command line: help everywhere, config show, settings errors, and local services."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agad_stream.cli.main import build_parser, main
from agad_stream.config import load_settings, routing_env
from tests.support import Services

Agad = Callable[..., subprocess.CompletedProcess[str]]


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*path, name))


COMMANDS = list(_command_paths(build_parser()))


def test_every_command_is_listed() -> None:
    names = {path[0] for path in COMMANDS if path}
    assert {"config", "services"} <= names
    assert ("services", "up") in COMMANDS and ("config", "show") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(("agad", *path)))
def test_help_exits_zero(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {' '.join(('agad', *path))}")


def test_installed_command_runs(agad: Agad) -> None:
    result = agad("--help")
    assert result.returncode == 0, result.stderr
    assert "services" in result.stdout and "config" in result.stdout


def test_config_show_masks_secrets(agad: Agad) -> None:
    secrets = {
        "AGAD_KAFKA__SASL_PASSWORD": "pa55-kafka-secret",
        "AGAD_REVIEW__REVIEWERS": "ana:review-token-secret",
    }
    env = {**secrets, "AGAD_KAFKA__SASL_USERNAME": "scorer", "AGAD_SCORER__MAX_BATCH": "16"}

    text = agad("config", "show", env=env)
    assert text.returncode == 0, text.stderr
    as_json = agad("config", "show", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    for secret in secrets.values():
        assert secret not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
    assert "AGAD_KAFKA__SASL_USERNAME" in text.stdout and "scorer" in text.stdout

    shown = json.loads(as_json.stdout)
    assert shown["AGAD_KAFKA__SASL_PASSWORD"] == "********"
    assert shown["AGAD_REVIEW__REVIEWERS"] == "********"
    assert shown["AGAD_SCORER__MAX_BATCH"] == 16
    assert shown["AGAD_KAFKA__TOPICS__FRAMES"] == "frames"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGAD_SCORER__MAX_BATCH", "abc"),
        ("AGAD_SCORER__MAX_BATCH", "0"),
        ("AGAD_KAFKA__SECURITY_PROTOCOL", "PLAIN"),
        ("AGAD_SERVICES__REDIS_PORT", "70000"),
        ("AGAD_KAFKA__TOPICS", "{not json"),
    ],
)
@pytest.mark.parametrize("command", [("config", "show"), ("services", "status")], ids=" ".join)
def test_invalid_setting_names_the_variable(
    agad: Agad, variable: str, value: str, command: tuple[str, ...]
) -> None:
    result = agad(*command, env={variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_invalid_setting_message_says_what_is_accepted(agad: Agad) -> None:
    result = agad("config", "show", env={"AGAD_KAFKA__SECURITY_PROTOCOL": "PLAIN"})
    assert "SASL_SSL" in result.stderr  # lists the accepted values


def test_invalid_setting_in_process_is_an_agad_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGAD_SCORER__MAX_BATCH", "abc")
    assert main(["config", "show"]) == 2
    assert "AGAD_SCORER__MAX_BATCH" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # exited, waiting for its parent to reap it


def test_services_lifecycle_in_a_fresh_state_dir(agad: Agad, tmp_path: Path) -> None:
    """up, up again (a no-op), status, down, down again: on a Redis of its own, so it is cheap."""
    port = _free_port()
    env = {"AGAD_SERVICES__STATE_DIR": str(tmp_path / "state"), "AGAD_SERVICES__REDIS_PORT": str(port)}
    first = agad("services", "up", "--only", "redis", env=env)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert "started: redis" in first.stdout
        status = agad("services", "status", "--only", "redis", "--json", env=env)
        assert status.returncode == 0, status.stderr
        (redis_status,) = json.loads(status.stdout)
        pid = redis_status["pid"]
        assert isinstance(pid, int) and redis_status["port"] == port and redis_status["healthy"]

        again = agad("services", "up", "--only", "redis", env=env)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        status = agad("services", "status", "--only", "redis", "--json", env=env)
        assert json.loads(status.stdout)[0]["pid"] == pid

        table = agad("services", "status", "--only", "redis", env=env)
        assert table.returncode == 0
        header, row = table.stdout.splitlines()
        assert header.split() == ["SERVICE", "STATE", "PID", "PORT"]
        assert row.split() == ["redis", "running", str(pid), str(port)]
    finally:
        down = agad("services", "down", "--only", "redis", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped: redis" in down.stdout
    assert _process_gone(pid)
    assert "nothing was running" in agad("services", "down", env=env).stdout
    stopped = agad("services", "status", "--only", "redis", env=env)
    assert stopped.returncode == 1 and "stopped" in stopped.stdout


def test_status_of_the_session_services(services: Services, agad: Agad) -> None:
    pids = {name: services.agad_managed(name) for name in ("kafka", "redis")}
    if None in pids.values():
        pytest.skip("the session uses services agad does not manage in AGAD_SERVICES__STATE_DIR")
    result = agad("services", "status", env=services.env())
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    local = services.local
    assert rows["kafka"] == ["kafka", "running", str(pids["kafka"]), str(local.kafka_port)]
    assert rows["redis"] == ["redis", "running", str(pids["redis"]), str(local.redis_port)]

    # `up` while everything runs changes nothing.
    again = agad("services", "up", env=services.env())
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert {name: services.agad_managed(name) for name in pids} == pids


def test_routing_env_points_another_process_where_the_settings_point(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = {
        "AGAD_KAFKA__BOOTSTRAP_SERVERS": "broker-7:9093",
        "AGAD_KAFKA__GROUP_ID": "line-7",
        "AGAD_KAFKA__TOPICS__LABELS": "line-7.labels",
        "AGAD_KAFKA__TOPICS__DEAD_LETTER": "line-7.dlq",
        "AGAD_REDIS__URL": "redis://cache-7:6380/2",
        "AGAD_REDIS__KEY_PREFIX": "line7:",
        "AGAD_REGISTRY": "/srv/models",
    }
    for name, value in chosen.items():
        monkeypatch.setenv(name, value)
    env = routing_env(load_settings())
    assert chosen.items() <= env.items()
    assert env["AGAD_KAFKA__TOPICS__MODELS"] == "models"  # every topic, defaults too
    for name in chosen:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert routing_env(load_settings()) == env
