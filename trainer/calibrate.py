"""A new model version with another threshold, the network untouched: ``agad calibrate``.

The threshold of a trained model is a choice about the line: how many false alarms an operator
will look at against how many defects slip through. Moving it needs no retraining: the new
version copies the weights, keeps the score, and records what the new threshold means on the
validation split (its false-positive rate with a confidence interval, and the share of drawn
damage it flags), beside the test metrics at it.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from agad_stream.errors import AgadError
from agad_stream.model.artifact import WEIGHTS, load_scorer
from agad_stream.model.card import CARD, ModelCard
from deploy.onnx_export import export_onnx
from trainer.api import with_synthetic_recall
from trainer.data import load_dataset
from trainer.evaluate import evaluation_report, score_split
from trainer.metrics import fixed_threshold, quantile_threshold


def recalibrate(
    model_dir: Path,
    out: Path,
    *,
    target_fpr: float | None = None,
    threshold: float | None = None,
    version: str | None = None,
) -> ModelCard:
    """Write ``out``: ``model_dir``'s model with the threshold at ``target_fpr`` on validation normals,
    or at ``threshold``; the card names ``model_dir``'s version as its parent."""
    if (target_fpr is None) == (threshold is None):
        raise AgadError("give exactly one of --target-fpr and --threshold")
    if out.exists():
        raise AgadError(f"{out} exists; choose another --out (a new version gets a new directory)")
    scorer, card = load_scorer(model_dir)
    spec = card.data.get("spec")
    if not spec:
        raise AgadError(f"{model_dir}/{CARD} names no training data to calibrate on")
    dataset = load_dataset(
        str(spec),
        card.input.image_size,
        gamma=float(card.data.get("gamma", 0.0)),
        seed=int(card.data.get("seed", 0)),
        channels=card.input.channels,
    )
    val_scores = score_split(scorer, dataset.val)
    normal = dataset.val.labels == 0
    if threshold is not None:
        chosen = fixed_threshold(dataset.val.labels, val_scores, threshold)
    else:
        at = quantile_threshold(val_scores[normal], float(target_fpr or 0))  # on the normals alone
        chosen = fixed_threshold(dataset.val.labels, val_scores, at).model_copy(
            update={"method": "normal_quantile", "target_fpr": target_fpr}
        )
    chosen = with_synthetic_recall(chosen, scorer, dataset, int(card.training.get("seed", 0)))
    test_scores = score_split(scorer, dataset.test)
    new = card.model_copy(
        update={
            "model_version": version or f"{card.model_version}-t{datetime.now(UTC):%Y%m%d%H%M%S}",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parent_version": card.model_version,
            "threshold": chosen,
            "metrics": {
                **card.metrics,
                "val": evaluation_report(dataset.val, val_scores, chosen.value),
                "test": evaluation_report(dataset.test, test_scores, chosen.value, dataset.hard_groups),
            },
            "training": {**card.training, "calibrated_from": card.model_version},
        }
    )
    out.mkdir(parents=True)
    try:
        shutil.copy2(model_dir / WEIGHTS, out / WEIGHTS)
        (out / CARD).write_text(new.model_dump_json(indent=2) + "\n")
        export_onnx(out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return new
