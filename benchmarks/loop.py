"""The loop measured on elpv: what a few operator labels buy, against a model trained from scratch on them.

    python benchmarks/loop.py --seeds 0 1 2 --threads 2

Per seed, on the local Kafka and Redis (`agad services up` first), through the real scorer:
the semi-supervised default trained on elpv's normal training cells (64 px, 20 epochs) serves; the
elpv test cells it never trained on (302 normal, 429 defective) stream through it; a simulated
operator labels what it flagged as it comes in, from the ground truth, with random spot checks
when it flagged too little, on at most 5 % of the streamed cells; one `agad retrain`
(5 epochs from the serving weights) follows. Measured on the streamed cells nobody labelled: AUROC
and the precision of the flags at each model's own threshold, for the model before, the retrained
one, and the default trained from scratch (20 epochs) on exactly the retrain's data; and the
retrain's own holdout comparison. One run file per seed in benchmarks/results/loop/.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.config import load_settings
from agad_stream.inference import load_backend
from agad_stream.model.artifact import load_scorer
from agad_stream.model.registry import current_version
from agad_stream.preprocess import prepare_image, to_model_input
from agad_stream.review.labels import read_labels
from agad_stream.stream.clients import connect
from agad_stream.stream.worker import Worker
from benchmarks.common import write_result
from deploy.services.settings import load_services_settings
from trainer.agad.variant import preset
from trainer.api import TrainConfig, train
from trainer.data import load_dataset
from trainer.demo.loop import Loop, LoopConfig, StreamFrame, loop, on_local_services
from trainer.metrics import auroc
from trainer.retrain.labelled import label_splits, with_labels


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="elpv", help="data set spec (default elpv)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-frames", type=int, help="stream a random subset of the test split")
    parser.add_argument("--table", default="loop", help="results table (default loop; dev runs elsewhere)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=int, default=20, help="epochs of the base and the from-scratch model"
    )
    parser.add_argument("--retrain-epochs", type=int, help="default: as many as the base trained")
    parser.add_argument("--label-share", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("runs/loop"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    services = load_services_settings()
    settings = on_local_services(load_settings(), services)
    for seed in args.seeds:
        config = LoopConfig(
            data=args.data,
            image_size=args.image_size,
            epochs=args.epochs,
            seed=seed,
            label_share=args.label_share,
            retrain_epochs=args.retrain_epochs,
            max_frames=args.max_frames,
        )
        started = time.monotonic()
        with loop(settings, args.workdir, config) as run:
            record = measure(run, args.epochs)
        record["wall_seconds"] = round(time.monotonic() - started, 1)
        name = f"{args.data.replace(':', '')}-r{args.retrain_epochs or args.epochs}-seed{seed}"
        path = write_result(args.table, name, record)
        print(f"{path}: {record['summary']}")


def measure(run: Loop, epochs: int) -> dict[str, Any]:
    base_version = run.base_model(progress=False)
    frames = run.test_frames()
    with scorer(run):
        before = run.stream(frames)
    operated = run.operate(frames, before)
    outcome = run.retrain(progress=False)
    unlabelled = [f for f in frames if f.frame_id not in operated.labels]
    models = {"before": run.registry / base_version}
    if outcome.candidate_version:
        models["retrained"] = run.registry / outcome.candidate_version
    models["from_scratch"] = from_scratch(run, epochs)
    on_stream = {name: evaluate(directory, unlabelled) for name, directory in models.items()}
    return {
        "label": "loop",
        "data": run.config.data,
        "seed": run.config.seed,
        "image_size": run.config.image_size,
        "epochs": epochs,
        "retrain_epochs": run.config.retrain_epochs or epochs,
        "streamed": len(frames),
        "streamed_anomalous": sum(f.anomalous for f in frames),
        "flagged": sum(1 for s in before.values() if s.flagged),
        "labelled": len(operated.labels),
        "labelled_anomalous": sum(operated.labels.values()),
        "spot_checks": operated.spot_checks,
        "label_share": len(operated.labels) / len(frames),
        "retrain": {"status": outcome.status, "reason": outcome.reason, "report": outcome.report},
        "on_unlabelled_stream": on_stream,
        "summary": _summary(on_stream, len(unlabelled), operated.labels),
    }


def _summary(on_stream: dict[str, Any], unlabelled: int, labels: dict[str, bool]) -> str:
    before, after = on_stream["before"]["auroc"], on_stream.get("retrained", {}).get("auroc", float("nan"))
    return (
        f"AUROC {before:.3f} -> {after:.3f} ({(after - before) * 100:+.1f} points; from scratch "
        f"{on_stream['from_scratch']['auroc']:.3f}) on {unlabelled} unlabelled cells, {len(labels)} labels "
        f"({sum(labels.values())} defects)"
    )


class scorer:
    """The real scorer worker serving the loop's registry, in a thread, for the stream."""

    def __init__(self, run: Loop) -> None:
        directory = current_version(run.registry)
        backend = load_backend(directory, "onnxruntime")
        self.worker = Worker(
            run.settings, directory, backend, lambda d: load_backend(d, "onnxruntime"), connect(run.settings)
        )
        self.thread = threading.Thread(target=self.worker.run)

    def __enter__(self) -> scorer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.worker.stopping.set()
        self.thread.join()


def from_scratch(run: Loop, epochs: int) -> Path:
    """The default trained from its initial weights on exactly the retrain's data (its own labels)."""
    c = run.config
    base = load_dataset(c.data, c.image_size, gamma=0, seed=c.seed)
    labels = read_labels(run.settings.kafka).labels.values()
    data = with_labels(base, label_splits(labels, base.image_size, base.channels))
    out = run.workdir / f"scratch-{run.run_id}"
    train(
        TrainConfig(preset("default", batch_size=c.batch_size), epochs=epochs, seed=c.seed),
        data,
        out,
        progress=False,
    )
    return out


def evaluate(directory: Path, frames: list[StreamFrame]) -> dict[str, Any]:
    """AUROC and the flags' precision and recall at the model's own threshold, scored offline."""
    scorer_model, card = load_scorer(directory)
    size, channels = card.input.image_size, card.input.channels
    images = np.stack(
        [prepare_image(f.value, f.content_type, image_size=size, channels=channels) for f in frames]
    )
    with torch.inference_mode():
        scores = np.concatenate(
            [
                scorer_model(torch.from_numpy(to_model_input(images[i : i + 256])))[0].numpy()
                for i in range(0, len(images), 256)
            ]
        )
    labels = np.array([int(f.anomalous) for f in frames])
    flagged = scores >= card.threshold.value
    return {
        "version": card.model_version,
        "auroc": auroc(labels, scores),
        "threshold": card.threshold.value,
        "flagged": int(flagged.sum()),
        "precision": float(labels[flagged].mean()) if flagged.any() else None,
        "recall": float(flagged[labels == 1].mean()),
    }


if __name__ == "__main__":
    main()
