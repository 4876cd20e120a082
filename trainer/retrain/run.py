"""One retrain: labels → fine-tuned candidate → comparison on a fixed holdout → promotion or not.

Stages, each logged as it starts (``retrain: <stage>``):

1. **labels**: every label record of the labels topic (the latest decision per frame);
2. **training**: the current version's own data plus the operators' labels (a fixed share of them
   held out by a hash of frame_id, never trained on), fine-tuned from the current weights in the
   supervised regime, written under ``REGISTRY/.incoming-<version>``;
3. **evaluating**: candidate and current version on the same frames (the current version's
   validation split plus the labelled holdout); the candidate wins unless its AUROC is lower by
   more than the margin;
4. **exporting**: ``model.onnx`` (and a TensorRT engine where TensorRT and a GPU are there), the
   report, then the directory renamed to ``REGISTRY/<version>``;
5. **promoting**: the registry pointer and the models event (:mod:`deploy.promotion`).

A process killed at any stage leaves the registry as it was, or with the candidate complete beside
the current version; only a finished rename is ever promoted. A lock in Redis keeps two retrains
from running at once.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agad_stream.config import Settings
from agad_stream.connections import redis_client
from agad_stream.errors import AgadError
from agad_stream.model.artifact import load_scorer
from agad_stream.model.card import CARD, load_card
from agad_stream.model.registry import current_version
from agad_stream.review.labels import read_labels
from deploy.onnx_export import export_onnx
from deploy.promotion import promote
from trainer.agad.variant import Variant
from trainer.api import TrainConfig, train
from trainer.data import load_dataset
from trainer.evaluate import score_split
from trainer.retrain.labelled import HOLDOUT_SHARE, evaluation_split, label_splits, with_labels
from trainer.retrain.lock import RetrainLock
from trainer.retrain.report import compare, write_report

log = logging.getLogger(__name__)
Status = Literal["promoted", "kept", "skipped"]
INCOMING = ".incoming-"


@dataclass(frozen=True)
class RetrainConfig:
    registry: Path
    epochs: int | None = None  # None: as many steps as the current version trained (chosen on dev runs)
    margin: float = 0.02  # the candidate may be this much lower in holdout AUROC and still win
    min_new_labels: int = 1
    holdout_share: float = HOLDOUT_SHARE
    seed: int = 0
    lock_seconds: float = 600.0
    announce: bool = True
    progress: bool = True


@dataclass(frozen=True)
class RetrainOutcome:
    status: Status
    reason: str
    current_version: str
    candidate_version: str | None = None
    report: dict[str, Any] | None = None


def retrain(settings: Settings, config: RetrainConfig) -> RetrainOutcome:
    """Run one retrain under the cross-host lock; see the module docstring."""
    client = redis_client(settings)
    try:
        with RetrainLock(client, f"{settings.redis.key_prefix}retrain:lock", config.lock_seconds):
            return _retrain(settings, config)
    finally:
        client.close()


def _retrain(settings: Settings, config: RetrainConfig) -> RetrainOutcome:
    registry = config.registry
    for stale in registry.glob(INCOMING + "*"):  # a retrain killed before its rename
        shutil.rmtree(stale, ignore_errors=True)
    current_dir = current_version(registry)
    card = load_card(current_dir)
    log.info("retrain: labels (current version %s)", card.model_version)
    store = read_labels(settings.kafka)
    seen = int((card.training.get("labels") or {}).get("end_offset", 0))
    end = sum(store.end_offsets.values())
    new = sum(1 for label in store.labels.values() if label.offset >= seen)
    if new < config.min_new_labels:
        reason = (
            f"{new} new decisions since {card.model_version} (labels offset {seen}), "
            f"fewer than {config.min_new_labels}"
        )
        log.info("retrain: skipped: %s", reason)
        return RetrainOutcome("skipped", reason, card.model_version)

    log.info("retrain: training on %d decisions (%d new)", len(store.labels), new)
    base = load_dataset(
        str(card.data["spec"]),
        card.input.image_size,
        gamma=float(card.data.get("gamma", 0.0)),  # as it trained: the same splits again
        seed=int(card.data.get("seed", 0)),
        channels=card.input.channels,
    )
    labelled = label_splits(store.labels.values(), base.image_size, base.channels, config.holdout_share)
    data = with_labels(base, labelled)
    version = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-retrain"
    stage = registry / (INCOMING + version)
    variant = _variant(card.variant)
    epochs, steps = _budget(config.epochs, card.training)
    trained = train(
        TrainConfig(
            variant,
            epochs=epochs,
            steps=steps,
            seed=config.seed,
            model_version=version,
            parent_version=card.model_version,
            init=current_dir,
        ),
        data,
        stage,
        progress=config.progress,
    )

    log.info("retrain: evaluating %s against %s", version, card.model_version)
    held = evaluation_split(base, labelled)
    current_scorer, _ = load_scorer(current_dir)
    scores = {"current": score_split(current_scorer, held), "candidate": score_split(trained.scorer, held)}
    before = compare(held.labels, scores["current"], card.threshold.value)
    after = compare(held.labels, scores["candidate"], trained.card.threshold.value)
    decision, reason = _decide(before, after, config.margin)
    report = {
        "current_version": card.model_version,
        "candidate_version": version,
        "decision": decision,
        "reason": reason,
        "margin": config.margin,
        "labels": {"total": len(store.labels), "new": new, "end_offset": end, "counts": labelled.counts()},
        "current": before,
        "candidate": after,
    }
    seen_labels = {"end_offset": end, "counts": labelled.counts(), "holdout_share": config.holdout_share}
    candidate = trained.card.model_copy(
        update={
            "metrics": {**trained.card.metrics, "holdout": after},
            "training": {**trained.card.training, "labels": seen_labels},
        }
    )
    (stage / CARD).write_text(candidate.model_dump_json(indent=2) + "\n")

    log.info("retrain: exporting %s", version)
    export_onnx(stage)
    _build_engine_if_possible(stage)
    curves = {name: (held.labels, values) for name, values in scores.items()}
    write_report(stage / "retrain", report, curves)
    stage.rename(registry / version)
    if decision == "keep":
        log.info("retrain: kept %s: %s", card.model_version, reason)
        return RetrainOutcome("kept", reason, card.model_version, version, report)
    log.info("retrain: promoting %s: %s", version, reason)
    promote(registry, version, settings.kafka if config.announce else None, reason=f"retrain: {reason}")
    return RetrainOutcome("promoted", reason, card.model_version, version, report)


def _decide(before: dict[str, Any], after: dict[str, Any], margin: float) -> tuple[str, str]:
    old, new = before["auroc"], after["auroc"]
    if old is None or new is None:
        return "keep", "the holdout needs normal and anomalous frames to compare on; label more defects"
    if new >= old - margin:
        return "promote", f"holdout AUROC {old:.4f} -> {new:.4f} (margin {margin})"
    return "keep", f"holdout AUROC {old:.4f} -> {new:.4f}: lower by more than the margin {margin}"


def _variant(stored: dict[str, Any]) -> Variant:
    """The current version's variant, from its card (fields today's code no longer has left out)."""
    known = {field.name for field in dataclasses.fields(Variant)}
    return Variant(**{key: value for key, value in stored.items() if key in known})


def _build_engine_if_possible(directory: Path) -> None:
    from agad_stream.inference.engine import tensorrt_available
    from agad_stream.inference.gpu import detect_gpu

    if not tensorrt_available() or detect_gpu() is None:
        return
    from deploy.tensorrt_engine import BuildOptions, build_engine

    try:
        build_engine(directory, BuildOptions(precision="fp16", batch_sizes=[1, 8, 32]))
    except AgadError as exc:  # the ONNX graph serves; a missing engine is not a reason to stop
        log.warning("no TensorRT engine for %s: %s", directory.name, exc)


def _budget(epochs: int | None, training: dict[str, Any]) -> tuple[int | None, int | None]:
    """``epochs`` when asked, else as many steps as the serving version ran (as many epochs for a
    version trained before budgets were counted in steps)."""
    if epochs is None and training.get("steps"):
        return None, int(training["steps"])
    return epochs or int(training.get("epochs", 10)), None
