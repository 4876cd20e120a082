"""The scorer's parts one by one: batching, frames, registry, digest, review queue, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis
from kafka.consumer.fetcher import ConsumerRecord

from agad_stream.config import Settings
from agad_stream.errors import AgadError
from agad_stream.model.card import model_digest
from agad_stream.model.registry import current_version, set_current
from agad_stream.review.queue import ReviewItem, ReviewQueue
from agad_stream.stream.batcher import Batcher
from agad_stream.stream.frames import Frame, Rejection, parse_frame
from agad_stream.stream.simulator import encode_frame, frame_headers
from tests.stream_support import frame_image, read_all, worker_env

Agad = Callable[..., subprocess.CompletedProcess[str]]


def record(value: bytes | None, headers: list[tuple[str, bytes]], offset: int = 7) -> ConsumerRecord:
    return ConsumerRecord(
        "frames", 2, -1, offset, 0, 0, b"cam", value, headers, None, 3, len(value or b""), -1
    )


def test_batch_closes_at_max_batch_or_max_wait() -> None:
    now = [0.0]
    batcher: Batcher[int] = Batcher(3, 50, clock=lambda: now[0])
    assert batcher.poll_budget(200) == (3, 200) and not batcher.ready()
    batcher.add([1, 2])
    now[0] = 0.03
    assert not batcher.ready() and batcher.poll_budget(200) == (1, pytest.approx(20))
    batcher.add([3])
    assert batcher.ready() and batcher.take() == [1, 2, 3] and len(batcher) == 0
    batcher.add([4])
    now[0] = 0.0801
    assert batcher.ready() and batcher.poll_budget(200)[1] == 0
    long: Batcher[int] = Batcher(3, 60_000, clock=lambda: now[0])
    long.add([5])
    assert long.poll_budget(200) == (2, 200)  # a minute's budget is polled for in short waits


@pytest.mark.parametrize("fmt", ["jpeg", "png", "raw"])
def test_frames_of_every_format_parse(fmt: str) -> None:
    value, content_type = encode_frame(frame_image(3), fmt)
    parsed = parse_frame(
        record(value, frame_headers("f1", "cam-00", 123, content_type)), image_size=32, channels=1
    )
    assert isinstance(parsed, Frame)
    assert (parsed.frame_id, parsed.camera_id, parsed.ts_ms) == ("f1", "cam-00", 123)
    assert parsed.image.shape == (32, 32, 1) and parsed.image.dtype == np.uint8


def test_frame_without_frame_id_is_named_by_its_position() -> None:
    value, content_type = encode_frame(frame_image(0))
    headers = frame_headers("x", "cam-00", 1, content_type)[1:]
    parsed = parse_frame(record(value, headers, offset=41), image_size=32, channels=1)
    assert isinstance(parsed, Frame) and parsed.frame_id == "frames:2:41"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (
            [("camera_id", b"c"), ("ts_ms", b"soon"), ("content_type", b"image/png")],
            "ts_ms 'soon' is not an integer",
        ),
        ([("camera_id", b"\xff"), ("ts_ms", b"1"), ("content_type", b"image/png")], "camera_id is not UTF-8"),
        ([("camera_id", b"c" * 300), ("ts_ms", b"1"), ("content_type", b"image/png")], "camera_id too long"),
        ([("ts_ms", b"1")], "missing header camera_id, content_type"),
    ],
)
def test_bad_headers_are_rejected_with_a_reason(headers: list[tuple[str, bytes]], reason: str) -> None:
    parsed = parse_frame(record(b"\x89PNG", headers), image_size=32, channels=1)
    assert isinstance(parsed, Rejection) and reason in parsed.reason


def test_registry_pointer(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    set_current(tmp_path, "v1")
    assert current_version(tmp_path) == tmp_path / "v1"
    set_current(tmp_path, "v2")
    assert current_version(tmp_path) == tmp_path / "v2" and [p.name for p in tmp_path.glob(".current*")] == []
    with pytest.raises(AgadError, match="not a version directory"):
        set_current(tmp_path, "v3")
    (tmp_path / "current").write_text("../elsewhere\n")
    with pytest.raises(AgadError, match="must hold the name of a version directory"):
        current_version(tmp_path)


def test_model_digest_is_what_sha256sum_computes(stream_models: dict[str, Path]) -> None:
    directory = stream_models["a"]
    files = "model.json model.onnx weights.safetensors"
    shell = subprocess.run(
        f"sha256sum {files} | sha256sum",
        shell=True,
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )
    assert model_digest(directory) == shell.stdout.split()[0]
    assert model_digest(directory) != model_digest(stream_models["b"])


def test_review_items_are_queued_once_per_frame(settings: Settings, redis_client: redis.Redis) -> None:
    binary = redis.Redis.from_url(settings.redis.url, **settings.redis.client_options())
    queue = ReviewQueue(binary, settings.redis.key_prefix)
    queue.ensure_group()
    queue.ensure_group()  # a second worker starting: no error
    item = ReviewItem("f1", "cam-00", 5, 3.5, 2.0, "v1", b"jpeg", "image/jpeg", np.ones((1, 32, 32)))
    assert queue.add([item, item]) == 1
    assert queue.add([item]) == 0
    binary.delete(queue.item_key("f1"))  # an operator decided it: the item leaves the queue ...
    assert queue.add([item]) == 0  # ... and a replay does not bring it back
    binary.close()
    assert [f["frame_id"] for _, f in redis_client.xrange(queue.stream)] == ["f1"]
    groups = redis_client.xinfo_groups(queue.stream)
    assert [g["name"] for g in groups] == ["reviewers"]


def test_serve_on_onnxruntime_does_not_import_torch(stream_models: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "from agad_stream.cli import serve_cmd\n"
        "from agad_stream.inference import load_backend\n"
        f"load_backend(__import__('pathlib').Path({str(stream_models['a'])!r}), 'onnxruntime')\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m == 'trainer'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_serve_names_the_setting_to_fix(
    agad: Agad, settings: Settings, stream_models: dict[str, Path]
) -> None:
    env = worker_env(settings)
    missing = agad("serve", "--model", "/nonexistent/model", env=env)
    assert (
        missing.returncode == 2
        and "argument --model: /nonexistent/model is neither a model directory" in missing.stderr
    )
    no_registry = agad("serve", env={**env, "AGAD_REGISTRY": "/nonexistent"})
    assert no_registry.returncode == 2 and "AGAD_REGISTRY" in no_registry.stderr
    no_broker = agad(
        "serve",
        "--model",
        str(stream_models["a"]),
        env={**env, "AGAD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    )
    assert no_broker.returncode == 2 and "AGAD_KAFKA__BOOTSTRAP_SERVERS" in no_broker.stderr
    no_topic = agad(
        "serve", "--model", str(stream_models["a"]), env={**env, "AGAD_KAFKA__TOPICS__SCORES": "nope"}
    )
    assert no_topic.returncode == 2 and "nope (AGAD_KAFKA__TOPICS__SCORES) does not exist" in no_topic.stderr
    no_redis = agad(
        "serve", "--model", str(stream_models["a"]), env={**env, "AGAD_REDIS__URL": "redis://127.0.0.1:1/0"}
    )
    assert no_redis.returncode == 2 and "AGAD_REDIS__URL" in no_redis.stderr


def test_simulate_sends_frames_per_the_contract(agad: Agad, settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(5):
        (folder / f"{index}.png").write_bytes(encode_frame(frame_image(index), "png")[0])
    result = agad(
        "simulate",
        "--data",
        f"folder:{folder}",
        "--cameras",
        "3",
        "--fps",
        "0",
        "--count",
        "60",
        "--corrupt-rate",
        "0.2",
        "--json",
        env=worker_env(settings),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sent"] == 60 and 0 < sum(summary["corrupted"].values()) < 60
    records = read_all(settings, settings.kafka.topics.frames)
    assert len(records) == 60
    ids = [dict(r.headers)["frame_id"].decode() for r in records]
    assert len(set(ids)) == 60 and all(f"-{summary['run_id']}-" in i for i in ids)
    assert {r.key for r in records} == {b"cam-00", b"cam-01", b"cam-02"}
    parsed = [parse_frame(r, image_size=32, channels=1) for r in records]
    assert sum(isinstance(p, Rejection) for p in parsed) == sum(summary["corrupted"].values())
