"""``agad demo``: the whole loop on elpv in one command, on the local Kafka and Redis."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import ENV_PREFIX, Settings, load_settings, routing_env
from agad_stream.errors import AgadError
from deploy.services import manager
from deploy.services.settings import load_services_settings
from trainer.demo.loop import Loop, LoopConfig, loop, on_local_services, precision
from trainer.metrics import auroc

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole loop on real solar-cell images: train, stream, review, retrain, in one command",
        description="Start the local Kafka and Redis (agad services) and this demo's topics; train the "
        "default on elpv (cached after the first run); start a scorer and the review page; stream the elpv "
        "test cells it never trained on as four cameras; let a simulated operator decide what it flagged "
        "(from the ground truth, with spot checks when it flagged too little); retrain once from those "
        "labels; stream the cells again through the promoted model, and print what changed. The review "
        "page stays up until Ctrl-C, which stops everything the demo started.",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(".demo"), help="registry and model cache (default .demo)"
    )
    parser.add_argument(
        "--epochs", type=types.positive, default=10, help="epochs of the base model (default 10)"
    )
    parser.add_argument(
        "--image-size", type=types.image_size, default=64, help="model input size (default 64)"
    )
    parser.add_argument(
        "--seed", type=types.non_negative, default=0, help="seed of training and of the operator"
    )
    parser.add_argument(
        "--port", type=types.listening_port, default=8080, help="review page port (default 8080)"
    )
    parser.add_argument("--no-wait", action="store_true", help="stop everything after the summary")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    types.add_json_flag(parser)
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    services = load_services_settings()
    started = manager.up(services)
    settings = on_local_services(load_settings(), services)
    config = LoopConfig(image_size=args.image_size, epochs=args.epochs, seed=args.seed)
    children: list[subprocess.Popen[bytes]] = []
    begun = time.monotonic()
    try:
        with loop(settings, args.workdir, config) as run:
            summary = _demo(run, args, children)
            summary["seconds"] = round(time.monotonic() - begun)
            _print(summary, args.json)
            if not args.no_wait:
                print(
                    f"\nThe review page stays up at {summary['review_page']}; Ctrl-C stops the demo.",
                    flush=True,
                )
                signal.signal(signal.SIGTERM, _interrupt)
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)
        for name in reversed(started):
            manager.down(services, name)
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _demo(run: Loop, args: argparse.Namespace, children: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    base = run.base_model(progress=not args.no_progress)
    token = secrets.token_urlsafe(12)
    env = _env(run.settings) | {
        "AGAD_REVIEW__REVIEWERS": f"operator:{token}",
        "AGAD_REVIEW__PORT": str(args.port),
    }
    logs = args.workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children.append(_agad(["serve", "--model", str(run.registry)], env, logs / f"scorer-{run.run_id}.log"))
    children.append(_agad(["review"], env, logs / f"review-{run.run_id}.log"))
    _wait_for_port(args.port, children[-1])

    frames = run.test_frames()
    log.info("streaming %d cells the model never trained on, as 4 cameras", len(frames))
    before = run.stream(frames)
    operated = run.operate(frames, before)
    outcome = run.retrain(progress=not args.no_progress)
    after = before
    if outcome.status == "promoted":
        time.sleep(2)  # the scorer switches between batches, on the models event
        again = [replace(frame, frame_id=f"{frame.frame_id}-after") for frame in frames]
        scored = run.stream(again)
        after = {frame_id.removesuffix("-after"): s for frame_id, s in scored.items()}
    unlabelled = [f for f in frames if f.frame_id not in operated.labels]
    flagged = [f for f in frames if before[f.frame_id].flagged]
    return {
        "frames_scored": len(before),
        "flagged": len(flagged),
        "confirmed": sum(1 for f in flagged if operated.labels.get(f.frame_id) is True),
        "labelled": len(operated.labels),
        "spot_checks": operated.spot_checks,
        "retrain": outcome.status,
        "reason": outcome.reason,
        "model_before": base,
        "model_after": outcome.candidate_version if outcome.status == "promoted" else base,
        "precision_before": precision(unlabelled, before),
        "precision_after": precision(unlabelled, after),
        "auroc_before": _auroc(unlabelled, before),
        "auroc_after": _auroc(unlabelled, after),
        "holdout": {k: (outcome.report or {}).get(k, {}).get("auroc") for k in ("current", "candidate")},
        "review_page": f"http://127.0.0.1:{args.port}/",
        "review_token": token,
    }


def _auroc(frames: list[Any], scored: dict[str, Any]) -> float | None:
    labels = [int(f.anomalous) for f in frames]
    if len(set(labels)) < 2:
        return None
    return auroc(labels, [scored[f.frame_id].score for f in frames])  # type: ignore[arg-type]


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(
        f"\nagad demo: {summary['frames_scored']} cells scored, {summary['flagged']} flagged, "
        f"{summary['confirmed']} confirmed by the operator ({summary['labelled']} labelled, "
        f"{summary['spot_checks']} of them spot checks)\n"
        f"  retrain: {summary['retrain']} ({summary['reason']})\n"
        f"  on the {summary['frames_scored'] - summary['labelled']} cells nobody labelled: "
        f"AUROC {fmt(summary['auroc_before'])} -> {fmt(summary['auroc_after'])}, "
        f"precision of the flags {fmt(summary['precision_before'])} -> {fmt(summary['precision_after'])}\n"
        f"  on the retrain's holdout: AUROC {fmt(summary['holdout']['current'])} -> "
        f"{fmt(summary['holdout']['candidate'])}\n"
        f"  model {summary['model_before']} -> {summary['model_after']}; {summary['seconds']} s in all\n"
        f"  review page: {summary['review_page']} (token {summary['review_token']})"
    )


def _env(settings: Settings) -> dict[str, str]:
    return {**routing_env(settings), "AGAD_SCORER__BACKEND": "onnxruntime", "AGAD_SCORER__METRICS_PORT": "0"}


def _agad(arguments: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(ENV_PREFIX) or k.startswith("AGAD_SERVICES__")
    }
    command = [str(Path(sys.executable).with_name("agad")), *arguments]
    with log_file.open("wb") as out:
        return subprocess.Popen(
            command, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AgadError(
                f"the review page did not start (exit {process.returncode}); see the demo's logs/"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AgadError(f"the review page did not answer on port {port}; is the port taken? try --port")
