"""Regenerate docs/RESULTS.md from the run files in benchmarks/results/.

    python benchmarks/report.py

Every number in the tables comes from a results file; a cell without one says "—" (not run yet).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUTPUT = ROOT / "docs" / "RESULTS.md"

# Paper (Shi & Zhang 2023), Fashion-MNIST one-class AUROC %, and supervised means (AGAD_METHOD.md).
PAPER_FMNIST = {
    "AGAD paper, naive G": [98.2, 100, 99.1, 99.7, 99.0, 100, 97.7, 100, 99.1, 100],
    "AGAD paper, UNet++ G": [99.9, 100, 100, 99.4, 100, 100, 100, 100, 100, 100],
}
PAPER_FMNIST_SUPERVISED_MEAN = {0.0: 99.9, 0.01: 100.0, 0.05: 100.0, 0.10: 100.0}
FMNIST_CLASSES = range(10)
# Scores recorded beside each AGAD run's own score; tables show them as extra rows of the same runs.
ALTERNATIVE_SCORES = ("knn_latent", "l2+knn_latent", "knn_contrast")
AGAD_SCORES = ("l2", *ALTERNATIVE_SCORES)  # knn_contrast last: it needs labelled anomalies
# The score ``score=auto`` (the default's) ships per run: knn_contrast with labelled training
# defects, else l2, unless validation (or, without labelled defects, synthetic damage) clearly
# prefers another; so it gets rows of its own.
AUTO = "auto"
# Rows the issue asks for in each Fashion-MNIST table; shown as "not run" until a run exists. The
# unsupervised baselines ignore labels, so they belong to γ = 0 only.
PLANNED_FMNIST_ROWS = {
    0.0: (
        "agad-default, score auto",
        "agad-unturned, score auto",
        "agad-faithful, score l2",
        "autoencoder",
        "skip-ganomaly",
    ),
    0.05: ("agad-default, score auto", "agad-unturned, score auto", "agad-faithful, score l2", "classifier"),
}
# Presets the AGAD loop trains as baselines: one row each, scored by the baseline's own score.
BASELINE_PRESETS = {"autoencoder": "l2", "skip-ganomaly": "skip"}
UNSUPERVISED = "n/a (needs γ > 0)"


# Settings a data set may tune without making another variant: the score is a column of its own,
# and small data sets (elpv) need smaller batches.
PER_DATASET_FIELDS = ("name", "score", "batch_size", "anomalies_per_batch")
# ... and counts that make the variant as a share of the batch (elpv's batches of 64 hold 8 turned
# normals where Fashion-MNIST's of 256 hold 32: the same eighth).
BATCH_SHARE_FIELDS = ("turned_anomalies", "stretched_anomalies")
# The epochs of each data set's table (its protocol); an ablation run trained longer or shorter
# stays in table 1.
TABLE_EPOCHS = {"fmnist": 10, "elpv": 20}


def read_runs(table: str) -> list[dict[str, Any]]:
    """The run files of one table as written, oldest first."""
    folder = RESULTS / table
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(runs, key=lambda r: r.get("finished_at", ""))


def load(table: str) -> list[dict[str, Any]]:
    """The training runs of one table, oldest first, each with ``label`` set to the row it belongs in."""
    runs = read_runs(table)
    for run in runs:
        run["label"] = row_label(run)
    return runs


def row_label(run: dict[str, Any]) -> str:
    """A baseline's own label; for AGAD the preset whose settings the run trained with, today.

    So when the default changes, earlier default runs show by what they changed from the paper
    instead of standing in for the new default.
    """
    if "variant" not in run:
        return str(run.get("label", ""))
    from trainer.agad.variant import FAITHFUL, PRESETS

    settings = {**FAITHFUL.to_dict(), **run["variant"]}  # fields added later: the paper's value
    presets = {name: variant.to_dict() for name, variant in PRESETS.items()}
    matching = [
        name
        for name, preset in presets.items()
        if all(_same_setting(k, settings, preset) for k in preset if k not in PER_DATASET_FIELDS)
    ]
    if not matching:
        return f"agad ({variant_delta(run)})"
    # Presets that train alike (the default and the autoencoder baseline) differ by their score.
    name = next((n for n in matching if PRESETS[n].score == settings["score"]), matching[0])
    return name if name in BASELINE_PRESETS else f"agad-{name}"


def _same_setting(name: str, settings: dict[str, Any], preset: dict[str, Any]) -> bool:
    if name in BATCH_SHARE_FIELDS:
        return bool(settings[name] * preset["batch_size"] == preset[name] * settings["batch_size"])
    return bool(settings[name] == preset[name])


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def resolve_score(run: dict[str, Any], score: str | None = None) -> str:
    """``score`` itself; ``auto``: the one picked on validation; none: the run's own (a baseline
    preset's own, not the l2 it trained to select by)."""
    if score == AUTO:
        return picked_score(run)
    return score or BASELINE_PRESETS.get(run["label"], str(run["score"]))


def shipped_score(run: dict[str, Any]) -> str:
    """The score a run's model ships: the ``auto`` pick for a variant scored ``auto``, else its own."""
    return resolve_score(run, AUTO if run.get("variant", {}).get("score") == AUTO else None)


def test_auroc(run: dict[str, Any], score: str | None = None) -> float | None:
    """Test AUROC of ``score`` (see :func:`resolve_score`)."""
    return run["test"]["auroc"].get(resolve_score(run, score))


def picked_score(run: dict[str, Any]) -> str:
    """What ``score=auto`` picks for an AGAD run, from the AUROCs it recorded.

    Whenever validation holds labelled anomalies, the run's dev set is the validation split
    (benchmarks/common.py), so this is the choice training makes; runs from before ``auto`` get it too.
    A choice made on synthetically damaged validation normals cannot be recomputed: it is read back.
    """
    from trainer.agad.score_choice import pick_score, standing_score

    if _chosen_on_synthetic(run):
        return str(run["score"])
    val = run["data_summary"]["splits"]["val"]
    standing = standing_score(
        contrast_available=run["dev"]["auroc"].get("knn_contrast") is not None,
        turned=_makes_anomalies(run["variant"]) and "knn_latent" in run["dev"]["auroc"],
    )
    return pick_score(run["dev"]["auroc"], val["anomalous"], val["normal"], standing=standing).method


def variant_delta(run: dict[str, Any]) -> str:
    """What a run changes relative to the faithful preset, e.g. ``detach_pseudo=True, batchnorm=separate``."""
    if "variant" not in run:
        return run.get("method", "")
    from trainer.agad.variant import FAITHFUL

    base = FAITHFUL.to_dict()
    changes = [f"{k}={v}" for k, v in run["variant"].items() if k != "name" and base.get(k) != v]
    return ", ".join(changes) or "(as the paper)"


def machines(runs: list[dict[str, Any]]) -> str:
    seen = sorted(
        {
            f"{r['machine']['cpu']}, {r['machine']['cores']} cores, torch {r['machine']['torch']}, "
            f"{r['machine']['torch_threads']} thread(s) per run"
            for r in runs
        }
    )
    return "; ".join(seen) or "—"


def ablation_section() -> list[str]:
    runs = load("ablation")
    lines = [
        "## 1. Ablation of the open choices",
        "",
        "Each row is one training run (seed 0, or the seed its name ends with: -s1). **dev** = AUROC on "
        "validation normals plus labelled "
        "anomalies that are not test data (the pool the data set would label at γ = 0.05); choices are "
        "made on it. **test** = AUROC on the test split for the epoch chosen on validation (by its AUROC "
        "where validation holds at least 5 labelled anomalies, else by the lowest validation score of "
        "normal images), per score. γ = share of labelled anomalies in training. **best-on-test** = "
        "the highest per-epoch test AUROC of the run's own score, as GANomaly-family code reports it; "
        "never used to choose. "
        "Scores: l2/topk/maxpool from the reconstruction; disc = D calls x fake; latent = distance of "
        "D's features of x and x̂; skip = Skip-GANomaly's 0.9·l2 + 0.1·latent; knn_latent (ours) = mean "
        "distance of G's bottleneck code to the 5 nearest codes of training normals; l2+knn_latent = "
        "the sum of l2 and knn_latent, each standardised on validation normals; knn_contrast (ours, "
        "γ > 0) = log distance to the training normals' codes minus log distance to the labelled "
        "anomalies' codes.",
        "",
    ]
    if not runs:
        return [*lines, "No ablation run recorded yet.", ""]
    scores = ["l2", "topk", "maxpool", "disc", "latent", "skip", *ALTERNATIVE_SCORES]
    lines.append(
        "| data | γ | run | change vs faithful | epoch (chosen/of) | dev AUROC (own score) | "
        + " | ".join(f"test {s}" for s in scores)
        + " | best-on-test | train img/s | wall s |"
    )
    lines.append("|" + "---|" * (9 + len(scores)))
    for run in sorted(runs, key=lambda r: (r["data"], r["gamma"], r["name"])):
        dev = run["dev"]["auroc"].get(run["score"])
        row = [
            run["data"],
            f"{run['gamma']:g}",
            run["name"],
            variant_delta(run),
            f"{run['selected_epoch']}/{run['epochs']}",
            fmt(dev),
        ]
        row += [fmt(run["test"]["auroc"].get(s)) for s in scores]
        row += [
            f"{fmt(run['best_epoch_on_test']['auroc'])} (ep {run['best_epoch_on_test']['epoch']})",
            f"{run['images_per_second']:.0f}",
            f"{run['wall_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"Machine: {machines(runs)}.",
        "",
        "Commands: `python benchmarks/agad_run.py --table ablation --name NAME --data SPEC --variant V "
        "--set FIELD=VALUE ... --epochs E --threads 1` (each file in benchmarks/results/ablation/ holds "
        "its exact command).",
        "",
    ]
    return lines


def table_runs(table: str) -> list[dict[str, Any]]:
    """A data set's runs by row: ablation runs count too when they train for the table's epochs with
    its seed (0) and belong to a preset or to a row the table has (a former preset's); of several runs
    of one row, data, γ and image size the latest."""
    own = load(table)
    rows = {r["label"] for r in own}
    joining = [
        r
        for r in load("ablation")
        if (not r["label"].startswith("agad (") or r["label"] in rows)
        and r["epochs"] == TABLE_EPOCHS.get(table)
        and _seed_zero(r)
    ]
    latest: dict[tuple[str, float, str, int], dict[str, Any]] = {}
    for run in sorted(own + joining, key=lambda r: r.get("finished_at", "")):
        if run["data"].split(":")[0] == table:
            latest[(run["label"], run["gamma"], run["data"], run.get("image_size", 0))] = run
    return sorted(latest.values(), key=lambda r: r.get("finished_at", ""))


def fmnist_section() -> list[str]:
    runs = table_runs("fmnist")
    lines = [
        "## 2. Fashion-MNIST one-class (paper protocol)",
        "",
        "Train on one class's training images (10 % held out for validation), test on the official "
        "test split: that class normal (1,000), the nine others anomalous (9,000). 32 px. AUROC of each "
        "method's own score (AGAD: each score) at the epoch chosen on validation. γ = labelled "
        "anomalies a/(n+a), drawn "
        "from the other classes' training images. `agad-default`, `agad-adversarial` and "
        "`agad-faithful` are today's presets (a run trained with a preset's settings counts as that "
        "preset, whatever it was called when it ran); a row `agad (…)` names a variant by what it "
        "changes from the paper (an earlier default, for instance).",
        "",
    ]
    by_gamma: dict[float, dict[str, dict[int, float | None]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        cls = int(run["data"].split(":")[1]) if run["data"].split(":")[1].isdigit() else None
        if cls is None:
            continue
        if "variant" not in run or run["label"] in BASELINE_PRESETS:  # a baseline: its own score
            by_gamma[run["gamma"]][run["label"]][cls] = test_auroc(run)
            continue
        if run["label"] == "agad-faithful":  # the paper's variant: the paper's score only
            scores: tuple[str, ...] = (run["score"],)
        else:
            scores = (AUTO, *AGAD_SCORES) if run["gamma"] > 0 else (AUTO, *AGAD_SCORES[:-1])
        for score in scores:
            by_gamma[run["gamma"]][f"{run['label']}, score {score}"][cls] = test_auroc(run, score)
    for gamma in sorted(set(by_gamma) | {0.0, 0.05}):
        lines += [
            f"### γ = {gamma}",
            "",
            "| method | " + " | ".join(str(c) for c in FMNIST_CLASSES) + " | mean |",
            "|" + "---|" * 12,
        ]
        rows = {
            label: cells
            for label, cells in by_gamma[gamma].items()
            if any(v is not None for v in cells.values())
        }
        for label in PLANNED_FMNIST_ROWS.get(gamma, ()):
            rows.setdefault(label, {})
        for label, cells in sorted(rows.items()):
            values = [cells.get(c) for c in FMNIST_CLASSES]
            done = [v for v in values if v is not None]
            mean_cell = fmt(mean(done)) if len(done) == len(values) else f"({len(done)}/10 classes run)"
            lines.append(f"| {label} | " + " | ".join(fmt(v) for v in values) + f" | {mean_cell} |")
        if gamma == 0.0:
            for name, reported in PAPER_FMNIST.items():
                lines.append(
                    f"| {name} (reported; mean of its per-class values) | "
                    + " | ".join(f"{v / 100:.3f}" for v in reported)
                    + f" | {mean(reported) / 100:.3f} |"
                )
        elif gamma in PAPER_FMNIST_SUPERVISED_MEAN:
            lines.append(
                "| AGAD paper (reported mean) | "
                + " | ".join("" for _ in FMNIST_CLASSES)
                + f" | {PAPER_FMNIST_SUPERVISED_MEAN[gamma] / 100:.3f} |"
            )
        lines.append("")
    if runs:
        lines += [f"Machine: {machines(runs)}.", ""]
    return lines


def elpv_section() -> list[str]:
    runs = table_runs("elpv")
    lines = [
        "## 3. elpv (solar cells, real defects)",
        "",
        "Fixed split `trainer/data/splits/elpv_seed0.csv`: normals (defect probability 0) 70/10/20 % "
        "train/val/test; probability-1.0 cells 40 % labelled pool / 60 % test; 0.333 and 0.667 cells "
        "all in test, reported apart. Headline AUROC = probability 1.0 against held-out normals. "
        "Accuracy, F1 at the threshold calibrated on validation (F1-optimal with labelled anomalies, "
        "else 1 % false-positive quantile of normals), on the headline test set. The F1-optimal "
        "threshold follows validation's anomaly share (5 % at γ = 0.05, against about 60 % in this test "
        "set); accuracy (balanced thr.) uses the validation threshold of best balanced accuracy "
        "instead, which does not depend on that share. Deitsch et al. (2019) report 88.4 % accuracy "
        "for a CNN trained on all labels.",
        "",
    ]
    if not runs:
        return [*lines, "No elpv run recorded yet.", ""]
    lines += [
        "| method | γ | px | AUROC (1.0) | AUROC (0.667) | AUROC (0.333) | accuracy | F1 "
        "| accuracy (balanced thr.) | "
        + "".join(f"AUROC (1.0) {score} | " for score in ALTERNATIVE_SCORES)
        + "epochs | wall s |",
        "|" + "---|" * (11 + len(ALTERNATIVE_SCORES)),
    ]
    for run in sorted(runs, key=lambda r: (r["gamma"], r["label"])):
        groups = run["test"]["at_threshold"]["groups"]
        at = run["test"]["at_threshold"]
        lines.append(
            " | ".join(
                [
                    f"| {run['label']}",
                    str(run["gamma"]),
                    str(run["image_size"]),
                    fmt(test_auroc(run)),
                    fmt(groups.get("prob_0.667", {}).get("auroc")),
                    fmt(groups.get("prob_0.333", {}).get("auroc")),
                    fmt(at["accuracy"]),
                    fmt(at["f1"]),
                    fmt((run["test"].get("at_balanced_threshold") or {}).get("accuracy")),
                    *(fmt(run["test"]["auroc"].get(score)) for score in ALTERNATIVE_SCORES),
                    str(run.get("epochs") or "—"),
                    f"{run['wall_seconds']:.0f} |",
                ]
            )
        )
    lines += ["", f"Machine: {machines(runs)}.", ""]
    return lines


def _mean_over_classes(
    runs: list[dict[str, Any]], label: str, gamma: float, score: str | None, digits: int = 3
) -> str:
    """Mean test AUROC of a method over the Fashion-MNIST classes run so far, and how many."""
    values = [
        test_auroc(run, score)
        for run in runs
        if run["label"] == label and run["gamma"] == gamma and run["data"].startswith("fmnist:")
    ]
    done = [v for v in values if v is not None]
    if not done:
        return "not run"
    return f"{mean(done):.{digits}f}" + ("" if len(done) == 10 else f" ({len(done)}/10 classes)")


def _classes(runs: list[dict[str, Any]], label: str, gamma: float) -> set[str]:
    """The data specs (Fashion-MNIST classes) a method has run at ``gamma``."""
    return {r["data"] for r in runs if r["label"] == label and r["gamma"] == gamma}


def _mean_on(
    runs: list[dict[str, Any]], label: str, gamma: float, classes: set[str], score: str | None
) -> float:
    """Mean test AUROC of a method over the given classes."""
    return mean(
        test_auroc(r, score) or 0.0
        for r in runs
        if r["label"] == label and r["gamma"] == gamma and r["data"] in classes
    )


def _variant_cell(runs: list[dict[str, Any]], label: str, gamma: float, reference: str) -> str:
    """A variant's mean with ``auto`` over the classes it has run; over fewer than ten, beside the
    ``reference`` variant's mean on the same classes."""
    cell = _mean_over_classes(runs, label, gamma, AUTO)
    mine = _classes(runs, label, gamma)
    if mine and len(mine) < 10 and mine <= _classes(runs, reference, gamma):
        cell += f"; {reference} on them {_mean_on(runs, reference, gamma, mine, AUTO):.3f}"
    return cell


def _baseline_cell(runs: list[dict[str, Any]], label: str, gamma: float, like: str) -> str:
    """A baseline's mean over all classes run, and over the classes ``like`` has run, when fewer."""
    overall = _mean_over_classes(runs, label, gamma, None)
    shared = _classes(runs, label, gamma) & _classes(runs, like, gamma)
    if not shared or shared == _classes(runs, label, gamma):
        return overall
    return f"{overall}; on the same {len(shared)} classes {_mean_on(runs, label, gamma, shared, None):.3f}"


def _elpv_cell(
    runs: list[dict[str, Any]], label: str, gamma: float, key: str, score: str | None = None, digits: int = 3
) -> str:
    """An elpv run's test AUROC (of ``score``, default its own) or ``key`` at the threshold, at 64 px.

    Threshold figures belong to the score the run shipped; a run from before ``auto`` says so when
    ``auto`` would have shipped another.
    """
    for run in reversed(runs):  # the latest
        if run["label"] == label and run["gamma"] == gamma and run["image_size"] == 64:
            if key == "auroc":
                return fmt(test_auroc(run, score), digits)
            if key == "balanced_accuracy":
                balanced = run["test"].get("at_balanced_threshold")
                value = fmt(balanced["accuracy"]) if balanced else "not recorded"
            else:
                value = fmt(run["test"]["at_threshold"][key])
            if "variant" in run and run["score"] != (picked := picked_score(run)):
                value += f" (of {run['score']}; auto picks {picked})"
            return value
    return "not run"


def targets_section() -> list[str]:
    """Issue 3's targets for the default variant beside what was measured (held-out selection)."""
    fmnist, elpv = table_runs("fmnist"), table_runs("elpv")
    agad, upright, quarter = "agad-default", "agad-upright", "agad-quarter"
    unturned, adversarial = "agad-unturned", "agad-adversarial"
    rows = [
        (
            "Fashion-MNIST mean AUROC, γ = 0",
            "≥ 0.95",
            _mean_over_classes(fmnist, agad, 0.0, AUTO, digits=4),
            *(_mean_over_classes(fmnist, agad, 0.0, score) for score in AGAD_SCORES[:-1]),
            UNSUPERVISED,
            _variant_cell(fmnist, upright, 0.0, agad),
            _mean_over_classes(fmnist, quarter, 0.0, AUTO),
            _mean_over_classes(fmnist, unturned, 0.0, AUTO),
            _mean_over_classes(fmnist, adversarial, 0.0, AUTO),
            _baseline_cell(fmnist, "knn", 0.0, agad),
        ),
        (
            "Fashion-MNIST mean AUROC, γ = 0.05",
            "≥ 0.99",
            _mean_over_classes(fmnist, agad, 0.05, AUTO, digits=4),
            *(_mean_over_classes(fmnist, agad, 0.05, score) for score in AGAD_SCORES),
            _variant_cell(fmnist, upright, 0.05, agad),
            _mean_over_classes(fmnist, quarter, 0.05, AUTO),
            _mean_over_classes(fmnist, unturned, 0.05, AUTO),
            _mean_over_classes(fmnist, adversarial, 0.05, AUTO),
            _baseline_cell(fmnist, "classifier", 0.05, agad),
        ),
        (
            "elpv AUROC, γ = 0 (64 px)",
            "≥ 0.80",
            _elpv_cell(elpv, agad, 0.0, "auroc", AUTO, digits=4),
            *(_elpv_cell(elpv, agad, 0.0, "auroc", score) for score in AGAD_SCORES[:-1]),
            UNSUPERVISED,
            _elpv_cell(elpv, upright, 0.0, "auroc", AUTO),
            _elpv_cell(elpv, quarter, 0.0, "auroc", AUTO),
            _elpv_cell(elpv, unturned, 0.0, "auroc", AUTO),
            _elpv_cell(elpv, adversarial, 0.0, "auroc", AUTO),
            _elpv_cell(elpv, "knn", 0.0, "auroc"),
        ),
        (
            "elpv AUROC, γ = 0.05 (64 px)",
            "≥ 0.90",
            _elpv_cell(elpv, agad, 0.05, "auroc", AUTO, digits=4),
            *(_elpv_cell(elpv, agad, 0.05, "auroc", score) for score in AGAD_SCORES),
            _elpv_cell(elpv, upright, 0.05, "auroc", AUTO),
            _elpv_cell(elpv, quarter, 0.05, "auroc", AUTO),
            _elpv_cell(elpv, unturned, 0.05, "auroc", AUTO),
            _elpv_cell(elpv, adversarial, 0.05, "auroc", AUTO),
            _elpv_cell(elpv, "classifier", 0.05, "auroc"),
        ),
        *(
            (
                f"elpv accuracy at the {name}, γ = 0.05",
                "≥ 0.884",
                _elpv_cell(elpv, agad, 0.05, key),
                *("—" for _ in AGAD_SCORES),
                _elpv_cell(elpv, upright, 0.05, key),
                _elpv_cell(elpv, quarter, 0.05, key),
                _elpv_cell(elpv, unturned, 0.05, key),
                _elpv_cell(elpv, adversarial, 0.05, key),
                _elpv_cell(elpv, "classifier", 0.05, key),
            )
            for name, key in (
                ("threshold", "accuracy"),
                ("balanced-accuracy threshold", "balanced_accuracy"),
            )
        ),
    ]
    lines = [
        "## Targets",
        "",
        "The default variant against the targets of issue 3, epochs and thresholds chosen on validation "
        "only. The default's score is `auto`: knn_contrast when training had labelled defects (γ > 0), else "
        "l2+knn_latent (l2 for the unturned variant), replaced per model only by a score that is clearly "
        "better on its validation split, or, for a model standing on l2 at γ = 0, on validation normals "
        "against synthetically damaged copies. Baselines: the raw-pixel 5-NN at γ = 0, the supervised CNN "
        "classifier at γ = 0.05. The default's own cell has four digits, so that a shortfall under 0.001 "
        "shows. A mean over fewer than ten classes says how many were run.",
        "",
        "| target | wanted | AGAD default, its score (auto) | l2 | knn_latent | l2+knn_latent | "
        "knn_contrast | AGAD upright (turned by a quarter and a half whatever the parts show), auto | AGAD "
        "quarter (the default from a18 to a28), auto | AGAD unturned (the default before a18), auto | AGAD "
        "adversarial, its score (auto) | baseline | default short by |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join([*row, _shortfall(row[1], row[2])]) + " |" for row in rows),
        "",
        "Turns measured on the good parts (runs a29; the default since). Before training, the default now "
        "asks the good parts which turns make a defect (`turns=auto`, trainer/agad/symmetry.py): a turn "
        "counts when a raw-pixel 5-NN among the training normals tells turned held-out normals from "
        "untouched ones with an AUROC of 0.75 or more. It feeds those turns as labelled anomalies, with the "
        "stretched copies and the weight average of the upright variant. Fashion-MNIST picks quarter and "
        "half turns on every class (quarter-turn AUROC 0.916 to 1.0, half 0.842 to 1.0), so there the "
        "default trains as `--variant upright` does (on this Intel machine bit for bit); elpv picks quarter "
        "turns only (quarter 0.884, half 0.591: a cell upside down looks like any other). Fashion-MNIST at "
        "γ = 0: mean test AUROC 0.9496 over the ten classes (dev 0.9506) against 0.937 for quarter turns "
        "and 0.932 for the raw-pixel 5-NN, short of the 0.95 target by 0.0004; seeds 1 and 2 of the upright"
        " variant, which trains alike, make 0.9508 and 0.9487 (section 6), so over three seeds the default "
        "sits on the target (0.9495 ± 0.0011), with shirts (0.870) the weakest class. At γ = 0.05: 0.9824 "
        "(dev 0.9875) against 0.981 for quarter turns (dev 0.9904: here quarter turns lead on dev by 0.003,"
        " within the spread of 32 validation defects a class) and 0.978 for the CNN, short of 0.99 by 0.008 "
        "(shirt 0.925, pullover 0.969, coat 0.968). elpv, three seeds each on the same Intel machine: at γ ="
        " 0 dev 0.823 / 0.791 / 0.757 (mean 0.790) against quarter turns' 0.827 / 0.759 / 0.777 (0.788), "
        "level on dev, and test 0.788 / 0.801 / 0.763 (mean 0.784 ± 0.020, short of 0.80 by 0.016; seed 0 "
        "short by 0.012) against 0.775 / 0.771 / 0.768 (0.771) and 0.770 for the 5-NN. At γ = 0.05 test "
        "0.862 / 0.790 / 0.857 (mean 0.836; quarter turns on the AMD machine 0.833, the CNN 0.811), short "
        "of 0.90 by 0.038 in seed 0, with accuracy 0.605 at the F1 threshold and 0.777 at the "
        "balanced-accuracy one, short of 0.884 by 0.28 and 0.11; at γ = 0.01 0.830 (quarter turns 0.835 and "
        "the CNN 0.817, both on the AMD machine). Why elpv stays short: its defects are cracks and dark "
        "regions a few pixels wide on "
        "cells whose texture varies from cell to cell (mono against poly), and with 8 validation defects "
        "at γ = 0.05 (dev AUROC 0.762 / 0.727 / 0.923 over the seeds) neither the epoch nor the score can "
        "be chosen reliably; the ablations (table 1) found no setting that moves dev by more than the seed "
        "spread there. Not adopted, on dev data: a raw-pixel 5-NN fused into the score (+0.002 on "
        "Fashion-MNIST, nothing on elpv), another learning rate or batch size, and memories of turned and "
        "flipped labelled defects at γ = 0.05 (no gain).",
        "",
        "What turned anomalies changed (runs a18; the default until runs a29, now `--variant quarter`, and "
        "the figures of this paragraph are its own). Each training batch of 256 also holds "
        "32 copies of its own normal images turned by a quarter, labelled anomalous, so that G must fail on "
        "a part that is merely turned; at γ = 0 the model then ships l2+knn_latent, the best mean dev AUROC "
        "of its scores over the ten classes (0.938 against 0.929 for l2 and 0.930 for knn_latent). On "
        "Fashion-MNIST at γ = 0 every class gains on dev and on test: the mean test AUROC is 0.937 against "
        "0.902 for the unturned default and 0.932 for the raw-pixel 5-NN, the first AGAD variant here to "
        "beat that baseline, though short of 0.95 by 0.013; bags (class 8) go from 0.808 to 0.971, pullovers"
        " (2) from 0.839 to 0.906, shirts (6) from 0.818 to 0.853, the weakest class still. The code is what"
        " learned most: knn_latent alone averages dev 0.930 against 0.842 before. On elpv at γ = 0 it "
        "makes 0.802 (l2+knn_latent; dev 0.851) against 0.785 for the unturned default and 0.770 for"
        " the 5-NN, meeting the 0.80 target in one run of three: seeds 1 and 2 make 0.753 and 0.779 "
        "(section 6), a mean of 0.778 over the three, short of 0.80 by 0.022 but above the 5-NN and above "
        "the unturned default's 0.731 over its three seeds, with a third of its spread (sd 0.024 against "
        "0.066). Choosing its epoch on synthetic damage instead of the normals' score (a22, seeds 0 and 1)"
        " does not steady it: dev 0.838 / 0.769 against 0.851 / 0.761 (test 0.793 / 0.761 against 0.802 / "
        "0.753). "
        "On elpv at γ = 0.05 it is level with the unturned default (knn_contrast 0.847 against 0.849, "
        "accuracy at the F1 threshold 0.546 against 0.584, from 8 validation defects). At γ = 0.05 on "
        "Fashion-MNIST it is level with the unturned default too: 0.981 against 0.981 (the CNN 0.978), "
        "shirt 0.924 against 0.923.",
        "",
        "Turned also upside down (runs a19; the first `--variant upright`; 'the default' in this paragraph "
        "is the quarter-turned one of its day). Clothes have a top and a "
        "bottom, so a half turn makes a part as wrong as a quarter turn does; solar cells look alike upside "
        "down. On Fashion-MNIST at γ = 0 turning also by a half averages dev 0.942 against quarter turns' "
        "0.938 over the ten classes (test 0.941 against 0.937), gaining on the tops and the coat (test: "
        "T-shirt 0.912 → 0.939, pullover 0.906 → 0.922, coat 0.904 → 0.914) and losing on bags (0.971 → "
        "0.961). On elpv at γ = 0 it loses: dev 0.830 against 0.851 (test 0.781 against 0.802), and with "
        "labelled defects (γ = 0.05, classes 0 / 2 / 6) it does not help either: dev knn_contrast 0.992 / "
        "0.969 / 0.954 against 0.988 / 0.972 / 0.973 (test 0.980 / 0.970 / 0.921 against 0.978 / 0.968 / "
        "0.924). Whether a half turn changes a part was then taken as known on the line, not learned by the "
        "model, so the default kept quarter turns (runs a29 measure it on the good parts). Twice the "
        "turned normals (a20: 64 of 256) moves nothing on dev: 0.917 "
        "/ 0.851 / 0.901 against 0.911 / 0.854 / 0.900 on classes 0 / 6 / 2; nor do twice the epochs (a21: "
        "20 instead of 10, dev 0.920 / 0.921 / 0.860 against 0.931 / 0.917 / 0.857 on classes 0 / 4 / 6, in "
        "twice the time).",
        "",
        "Stretched anomalies and a weight average (runs a23 to a28; `--variant upright` since, part of the "
        "default since a29; 'the default' in this paragraph is the quarter-turned one of its day). A garment "
        "widened or narrowed by a factor of 1.3 to 1.6 along one axis has the wrong proportions, one way in "
        "which garments of one kind differ from those of another; 32 such copies of each batch's normals, "
        "labelled anomalous beside the 32 turned ones (a23), lift the mean dev AUROC over the ten classes "
        "at γ = 0 from 0.942 to 0.948 (test 0.941 → 0.945): T-shirt 0.939 → 0.952, pullover 0.922 → 0.933, "
        "coat 0.914 → 0.932, bag 0.961 → 0.971, shirt 0.853 → 0.861 on test, while trousers (0.994 → 0.979) "
        "and sneakers (0.988 → 0.975), which come in many widths, lose. With quarter turns only (a24, "
        "classes 6 / 2 / 8) stretching also helps on dev, 0.882 / 0.923 / 0.966 against the default's 0.854 "
        "/ 0.900 / 0.971, but on elpv at γ = 0 it costs: dev 0.832 against 0.851 (test 0.779 against "
        "0.802). Its epochs swing: the validation normals' score jumps from one epoch to the next (T-shirt: "
        "9.3 then 27.3), and the chosen model's l2 is erratic (dev 0.843 on sandals, 0.871 on dresses). An "
        "exponential moving average of G's weights (ema 0.98, a25) steadies them (l2 on dress 0.871 → "
        "0.947, sandal 0.843 → 0.940) and lifts the mean dev AUROC to 0.950 (test 0.949: T-shirt 0.956, "
        "dress 0.950, sandal 0.947, shirt 0.870), short of the 0.95 target by 0.001 on test; re-estimating "
        "BatchNorm statistics on normal images instead (a26, classes 2 / 3 / 5 / 6) does less, dev 0.928 on "
        "those four against 0.926 without either and 0.929 with the average. The average alone does not "
        "help the default on elpv at γ = 0 (dev 0.846 against 0.851, test 0.802 against 0.802), and with "
        "labelled defects the upright variant does not beat the default on dev: at γ = 0.05 over the ten "
        "Fashion-MNIST classes knn_contrast makes dev 0.988 against 0.990 (shirt 0.945 against 0.973, on 32 "
        "validation anomalies) and test 0.983 against 0.981, short of 0.99 as well; on elpv at γ = 0.05 dev "
        "0.734 against 0.688 (8 validation defects) and test 0.846 against 0.847. So `upright` became the "
        "variant for shaped parts at γ = 0 and the default was left unchanged (on elpv at γ = 0 the upright "
        "variant makes dev 0.841, test 0.786). Neither a slower average (ema 0.99, a27) nor half the "
        "stretched copies (16, a28) does better on dev over classes 6 / 2 / 4 / 1: 0.884 / 0.931 / 0.940 / "
        "0.983 and 0.882 / 0.921 / 0.934 / 0.989 against 0.883 / 0.932 / 0.939 / 0.983 (means 0.934, 0.932 "
        "and 0.934); fewer stretched copies suit trousers only. Retrained with seeds 1 and 2 on all ten "
        "classes (section 6) it averages 0.9491 / 0.9508 / 0.9487, 0.9495 over the three seeds (sd "
        "0.0011): one run is a good measure of it, and it misses the 0.95 target by 0.0005 on average.",
        "",
        "Why the targets are missed, from the tables below; the figures of this paragraph, of sections 5 to "
        "7 and of table 1 up to a17 are of the unturned variant. The default trains no discriminator: on "
        "dev data the adversarial terms cost accuracy and time (table 1, runs a11), so at γ = 0 the "
        "unturned variant is a plain convolutional autoencoder. On Fashion-MNIST at γ = 0 it averaged 0.902 "
        "(the adversarial variant 0.897) against 0.932 for the raw-pixel 5-NN, and no representation it "
        "learned separated the classes better than raw pixels do (section 5: on only one of the classes "
        "studied does a kNN memory in some layer of G or D beat the pixel 5-NN by more than 0.01). On elpv "
        "at γ = 0 it made 0.785 with maxpool, which `auto` picks there on synthetic damage (l2 makes 0.785 "
        "too; the same settings at 2 threads made 0.769: one seed's runs differ that much between thread "
        "counts), against 0.770 for 5-NN; its knn_latent score makes 0.832, but damage drawn in pixels "
        "ranks knn_latent last (synthetic AUROC 0.634 against 0.847), on Fashion-MNIST knn_latent trails l2 "
        "on dev (0.842 against 0.904), and without labelled defects a model cannot tell which case it is "
        "in. With labelled defects (γ = 0.05) it beat a CNN trained on the same labels: Fashion-MNIST 0.981 "
        "against 0.978 (short of 0.99 most on shirt, pullover, coat: 0.923 / 0.966 / 0.971, the CNN 0.911 / "
        "0.961 / 0.968), elpv 0.849 against 0.842 (one run each), short of 0.90 by 0.051. Accuracy on elpv "
        "is bounded by the AUROC and by a test split with 59 % defects against 5 % in validation: the "
        "threshold that maximises F1 on validation flags 30 % of the test defects (accuracy 0.584), the one "
        "that maximises balanced accuracy 56 % (accuracy 0.724; the CNN makes 0.646 at either). One run per "
        "figure flatters elpv: retrained with seeds 1 and 2 (section 6) it averaged 0.731 at γ = 0 (below "
        "the 5-NN) and 0.821 at γ = 0.05 (the CNN over the same seeds: 0.811), short by 0.069 and 0.079; on "
        "Fashion-MNIST classes 0 and 6 the three seeds agree within 0.01, on class 8 they spread by 0.07. "
        "At γ = 0.05 that spread on elpv comes mostly from which defects were labelled: on one split three "
        "training seeds make 0.849 / 0.843 / 0.852 (section 7).",
        "",
        "What else was tried on the unturned default, on dev data (table 1). A UNet or UNet++ generator, "
        "whose skip connections let it pass the input through, scores shirt at γ = 0.05 at dev 0.866 / 0.860"
        " against the naive generator's 0.947 (test 0.879 / 0.843 against 0.923) in 4× / 11× the time, and "
        "has no bottleneck code for knn_contrast; on elpv at γ = 0.05 the UNet makes dev 0.742 against 0.732"
        " (8 validation defects: well within chance) and the same test AUROC, 0.849, in 4× the time (runs "
        "a12, a13). Without labels it is worse still: on class 0 at γ = 0 the UNet makes dev 0.756 against "
        "0.891 (l2; test 0.789 against 0.903) in 4.6× the time. UNet++ on elpv at γ = 0.05, run for 10 "
        "epochs (20 did not finish in 66 minutes at 2 threads), makes dev 0.759 against 0.732 (l2 against "
        "knn_contrast, again on 8 validation defects) and test 0.839 against 0.849, in 35 minutes against "
        "4½. Random flips of the training images (a14) did not pay: elpv dev 0.696 against 0.732 at γ = 0.05"
        " and 0.820 against 0.829 at γ = 0; Fashion-MNIST 0.957 against 0.947 on shirt at γ = 0.05 but 0.889"
        " against 0.891 on class 0 at γ = 0. A weight average of G (ema 0.98) over twice the epochs (a15) "
        "helps only without labels: at γ = 0 dev 0.887 / 0.832 / 0.849 against 0.891 / 0.825 / 0.809 on "
        "classes 0 / 6 / 8 (test +0.014 on their mean, far from the 0.048 missing) and 0.845 against 0.829 "
        "on elpv; at γ = 0.05 0.941 / 0.959 against 0.947 / 0.956 on classes 6 / 2 and 0.708 against 0.732 "
        "on elpv. Training G to repair damage (a16: half the normal inputs get a synthetic scratch or patch,"
        " the target stays clean) moves nothing beyond run-to-run spread: dev l2 at γ = 0 0.887 / 0.834 / "
        "0.804 against 0.891 / 0.825 / 0.809 on classes 0 / 6 / 8 (the same mean, 0.842) and 0.839 against "
        "0.829 on elpv, where the score auto then picks (topk) makes dev 0.854 against maxpool's 0.877 on "
        "the default. elpv at 128 px instead of 64 (table 3; 18 and 20 minutes at 2 threads) does not pay on"
        " dev either: at γ = 0 dev 0.802 (topk, which auto picks there) against 0.877 (test 0.722 against "
        "0.785), at γ = 0.05 dev 0.728 against 0.732 (knn_contrast; test 0.854 against 0.849, accuracy at "
        "the F1 threshold 0.688 against 0.584, a threshold learned from 8 validation defects), so 64 px "
        "stays. A narrower code (a17: `latent_dim` 16 or 32 instead of the paper's 100), which should leave "
        "G less room to reconstruct what it never saw, changes nothing either: dev l2 at γ = 0 0.898 / 0.821"
        " / 0.821 and 0.901 / 0.835 / 0.801 against 0.891 / 0.825 / 0.809 on classes 0 / 6 / 8 (means 0.847 "
        "and 0.846 against 0.842, inside class 8's seed spread alone), so the code stays at 100. Averaging "
        "three generators (section 7) gains 0.003 to 0.038 over their mean, not enough to meet a target.",
        "",
    ]
    return lines


def _shortfall(wanted: str, measured: str) -> str:
    """How far the measured cell (its leading number) stays below a '≥ x' target; 'met' when it does not."""
    try:
        gap = float(wanted.removeprefix("≥ ")) - float(measured.split()[0])
    except (ValueError, IndexError):
        return "—"
    if gap <= 0:
        return "met"
    return f"{gap:.{4 if gap < 0.001 else 3}f}"


def score_choice_section() -> list[str]:
    """Mean dev AUROC of each score over the unturned variant's runs: how the product's score is chosen."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for table in ("ablation", "fmnist", "elpv"):
        for run in load(table):
            if run["label"] == "agad-unturned":
                groups[(run["data"].split(":")[0], run["gamma"])].append(run)
    lines = [
        "## Which score (chosen on dev data)",
        "",
        "Mean **dev** AUROC (held-out normals and labelled anomalies that are not test data) of each score "
        "over the runs of the unturned variant (the default before runs a18), per data set and γ. No column "
        "leads everywhere. The rule (`score=auto`) starts from knn_contrast when training had labelled "
        "defects (the best mean dev AUROC at Fashion-MNIST γ = 0.05, 32 validation defects a class), else "
        "from l2, and switches to another score only when that one beats it on the model's own validation "
        "split by more than 1.96 standard errors of the difference (Hanley & McNeil's error of each AUROC, "
        "taken as independent); at γ > 0 that split is the dev set here. With no labelled defect at all (γ ="
        " 0) the same rule compares scores on validation normals against damaged copies of them (last "
        "table), except for a generator trained with turned anomalies (the default since a18): its standing "
        "score is l2+knn_latent, and damage drawn in pixels, which ranks every code score last, is not asked"
        " to judge it. An earlier rule took the best validation AUROC outright: on elpv at γ = 0.05 it "
        "picked maxpool on 8 validation defects, which tested at 0.767 against knn_contrast's 0.845. That "
        "one run's test labels prompted the change, and it is said here; the rule itself reads no test "
        "labels.",
        "",
    ]
    if not groups:
        return [*lines, "No run of the unturned variant recorded yet.", ""]
    scores = ["l2", "topk", "maxpool", *ALTERNATIVE_SCORES]
    lines += ["| data | γ | runs | " + " | ".join(scores) + " |", "|" + "---|" * (3 + len(scores))]
    for (table, gamma), runs in sorted(groups.items()):
        cells = []
        for score in scores:
            values = [r["dev"]["auroc"][score] for r in runs if score in r["dev"]["auroc"]]
            cells.append(f"{mean(values):.3f} ({len(values)})" if values else "—")
        lines.append(f"| {table} | {gamma} | {len(runs)} | " + " | ".join(cells) + " |")
    lines += ["", "(n) = runs that recorded the score.", ""]
    supervised = [r for group in groups.values() for r in group if r["gamma"] > 0]
    if supervised:
        from trainer.agad.score_choice import CANDIDATES

        lines += [
            "What `auto` picks, run by run, where validation holds labelled anomalies; the last column "
            "is hindsight on test labels, for judging the rule, never for choosing.",
            "",
            "| run | validation anomalies | picked | its validation AUROC | test AUROC of the pick "
            "| test l2 | best deployable score on test |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in sorted(supervised, key=lambda r: r["name"]):
            picked = picked_score(run)
            deployable = {s: v for s in CANDIDATES if (v := test_auroc(run, s)) is not None}
            best = max(deployable, key=lambda s: deployable[s])
            lines.append(
                f"| {run['name']} | {run['data_summary']['splits']['val']['anomalous']} | {picked} "
                f"| {fmt(run['dev']['auroc'][picked])} | {fmt(test_auroc(run, picked))} "
                f"| {fmt(test_auroc(run, 'l2'))} | {best} {fmt(deployable[best])} |"
            )
        lines.append("")
    synthetic = [r for group in groups.values() for r in group if _chosen_on_synthetic(r)]
    if synthetic:
        lines += [
            "What `auto` picks where nothing is labelled (γ = 0): each score's AUROC on validation "
            "normals against damaged copies of them (a drawn scratch or a pasted patch, "
            "trainer/agad/synthetic.py), the same 1.96-standard-error rule deciding. Dev and test "
            "columns are hindsight, for judging the rule. Over the eleven runs below it kept l2 seven "
            "times and picked maxpool four; the mean dev AUROC of its picks is 0.901 against 0.898 for "
            "l2 throughout (test 0.891 against 0.890): a small gain, largest on elpv (dev 0.877 against "
            "0.844), and the rule was kept. It never picks knn_latent: damage drawn in pixels moves "
            "the residual more than the code.",
            "",
            "| run | picked | its synthetic AUROC | l2's synthetic AUROC | dev AUROC of the pick | dev l2 "
            "| test AUROC of the pick | test l2 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in sorted(synthetic, key=lambda r: r["name"]):
            picked, measured = run["score"], run["score_choice"]["val_auroc"]
            lines.append(
                f"| {run['name']} | {picked} | {fmt(measured[picked])} | {fmt(measured['l2'])} "
                f"| {fmt(run['dev']['auroc'][picked])} | {fmt(run['dev']['auroc']['l2'])} "
                f"| {fmt(test_auroc(run, picked))} | {fmt(test_auroc(run, 'l2'))} |"
            )
        lines.append("")
    return lines


def _makes_anomalies(variant: dict[str, Any]) -> bool:
    """Variant.makes_anomalies of a recorded variant; runs from before a field lacked it (0)."""
    return variant.get("turned_anomalies", 0) + variant.get("stretched_anomalies", 0) > 0


def _chosen_on_synthetic(run: dict[str, Any]) -> bool:
    from trainer.agad.score_choice import SYNTHETIC

    return bool(run.get("score_choice", {}).get("evidence") == SYNTHETIC)


def features_section() -> list[str]:
    """kNN on learned features against kNN on pixels, on kept models of the unturned variant."""
    runs = load("features")
    lines = [
        "## 5. Would learned features beat raw pixels? (kNN memory study)",
        "",
        "Each row re-scores one kept model of the unturned variant, the default before runs a18 "
        "(`benchmarks/feature_knn.py`): the "
        "mean distance to the 5 nearest training normals in raw pixels, in each layer of G's encoder "
        "(G0 = first activation … last = the code) and of D's feature stack, beside the reconstruction "
        "error l2 and sums of two standardised scores. Cells: test AUROC (dev AUROC).",
        "",
    ]
    if not runs:
        return [*lines, "No run recorded yet.", ""]
    names = list(runs[0]["test"]["auroc"])
    lines += ["| data | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]
    for run in sorted(runs, key=lambda r: r["data"]):
        cells = [f"{run['test']['auroc'][n]:.3f} ({run['dev']['auroc'][n]:.3f})" for n in names]
        lines.append(f"| {run['data']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Machine: {machines(runs)}. Command: `python benchmarks/feature_knn.py --weights runs/NAME.pt "
        "--data SPEC --name NAME` on weights kept by `benchmarks/agad_run.py --keep-weights`.",
        "",
    ]
    return lines


def seeds_section() -> list[str]:
    """Runs retrained with other seeds beside their seed-0 run: how far one run's figure moves."""
    ablation = load("ablation")
    groups: dict[tuple[str, str, float, int, int, str], list[dict[str, Any]]] = defaultdict(list)
    retrained = [
        *load("seeds"),
        *(
            r
            for r in ablation
            if not _seed_zero(r) and r["epochs"] == TABLE_EPOCHS.get(r["data"].split(":")[0])
        ),
    ]
    for run in retrained:
        groups[_seed_group(run)].append(run)
    lines = [
        "## 6. Run-to-run spread (seeds)",
        "",
        "The default, the upright variant (and its first form, turned upside down only: a19), the unturned "
        "one (the default before runs a18) and on elpv at γ = 0.05 the CNN baseline, retrained with seeds 1 "
        "and 2 beside their seed-0 run of tables 2 and 3, with the same settings. A seed draws the weights, "
        "the batches and, on Fashion-MNIST, the held-out normals and the labelled anomalies (on elpv only "
        "the labelled anomalies: its split is fixed). Cells list seeds 0, 1, 2: the score `auto` picked, "
        "its dev and test AUROC. A difference between two single runs smaller than this spread says nothing "
        "about a change.",
        "",
    ]
    if not groups:
        return [*lines, "No run recorded yet.", ""]
    lines += [
        "| method | data | γ | px | epochs | CPU | picked score | dev AUROC | test AUROC | test mean ± sd |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Seed 0 from the same machine as seeds 1 and 2: one seed's runs differ between CPUs.
    seed0 = {
        _seed_group(r): r
        for r in sorted((*load("fmnist"), *load("elpv"), *ablation), key=lambda r: r.get("finished_at", ""))
        if _seed_zero(r)
    }
    for key, others in sorted(groups.items()):
        runs = sorted([*([seed0[key]] if key in seed0 else []), *others], key=lambda r: r["seed"])
        picks = [shipped_score(r) for r in runs]
        dev = [r["dev"]["auroc"][pick] for r, pick in zip(runs, picks, strict=True)]
        test = [r["test"]["auroc"][pick] for r, pick in zip(runs, picks, strict=True)]
        spread = f"{mean(test):.3f} ± {stdev(test):.3f}" if len(test) > 1 else "—"
        label, data, gamma, size, epochs, cpu = key
        lines.append(
            f"| {label} | {data} | {gamma} | {size} | {epochs} | {cpu} | {' / '.join(picks)} | "
            f"{' / '.join(fmt(v) for v in dev)} | {' / '.join(fmt(v) for v in test)} | {spread} |"
        )
    every = [*(seed0[k] for k in groups if k in seed0), *(r for rs in groups.values() for r in rs)]
    lines += ["", *_ten_class_means(every)]
    lines += [
        "What it means. On Fashion-MNIST classes 0 and 6 one run is a good measure (standard deviation 0.005"
        " or less), on class 8 it is not (0.808 / 0.878 / 0.808): the ablation gains on class 8 in table 1 "
        "(up to 0.04 on dev) are within its seed spread, the UNet's loss on class 0 (0.756 against 0.891) is"
        " far outside it. On elpv the spread is larger than every difference the ablations found: at γ = 0 "
        "the three seeds make 0.785 / 0.751 / 0.657, a mean of 0.731, below the 5-NN's 0.770, and at γ = "
        "0.05 0.849 / 0.773 / 0.842, a mean of 0.821, where the CNN makes 0.842 / 0.803 / 0.788, a mean of "
        "0.811. The seed-0 figures in the targets table are the best of the three at γ = 0 and at γ = 0.05; "
        "averaged over seeds elpv misses its targets by 0.069 and 0.079. Only 8 validation defects at γ = "
        "0.05 (dev AUROC 0.732 / 0.762 / 0.938 for the same three seeds) cannot tell these runs apart "
        "either.",
        "",
        "With turned anomalies the runs agree more. Quarter turns (the default from a18 to a28) on elpv at "
        "γ = 0 make 0.802 / 0.753 / "
        "0.779 (sd 0.024 against 0.066 unturned; mean 0.778, above the 5-NN's 0.770 but short of 0.80) and"
        " at γ = 0.05 0.847 / 0.801 / 0.850 (mean 0.833 against 0.821 unturned and 0.811 for the CNN), on "
        "shirt 0.853 / 0.853 / 0.860. Turned upside down too (a19) it makes 0.939 / 0.935 / 0.932 on"
        " class 0 (the 5-NN 0.924) and 0.961 / 0.964 / 0.976 on bags, where the unturned variant spread "
        "from 0.808 to 0.878; the upright variant, also stretched and averaged, 0.956 / 0.955 / 0.954 on "
        "class 0 and 0.870 / 0.874 / 0.874 on shirts; no class spreads by more than 0.012 on test "
        "(dresses: 0.941 to 0.952). Over all ten Fashion-MNIST classes at γ = 0 quarter turns make 0.9374 / "
        "0.9378 / 0.9384 (short of 0.95 by 0.012 on average) and the upright variant 0.9491 / 0.9508 / "
        "0.9487: its lead of about 0.011 holds for every seed. The default since runs a29 trains on "
        "Fashion-MNIST as the upright variant does; on elpv (Intel machine) it makes 0.788 / 0.801 / 0.763 at"
        " γ = 0 against 0.775 / 0.771 / 0.768 for quarter turns on the same machine, and 0.862 / 0.790 / "
        "0.857 at γ = 0.05.",
        "",
        f"Machine: {machines(every)}.",
        "",
    ]
    return lines


def _seed_zero(run: dict[str, Any]) -> bool:
    """Whether a run split and trained with seed 0, the seed of tables 2 and 3."""
    return bool(run.get("seed", 0) == 0 and run.get("train_seed", 0) == 0)


def _seed_group(run: dict[str, Any]) -> tuple[str, str, float, int, int, str]:
    """What runs of one method retrained with other seeds share: settings, data and machine."""
    return (run["label"], run["data"], run["gamma"], run["image_size"], run["epochs"], run["machine"]["cpu"])


def _ten_class_means(runs: list[dict[str, Any]]) -> list[str]:
    """Per seed, the mean test AUROC over the ten Fashion-MNIST classes, for methods run on all ten."""
    by_method: dict[tuple[str, float], dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        if run["data"].startswith("fmnist:"):
            auroc = run["test"]["auroc"][shipped_score(run)]
            by_method[(run["label"], run["gamma"])][run["seed"]][run["data"]] = auroc
    lines = []
    for (label, gamma), per_seed in sorted(by_method.items()):
        complete = {seed: mean(c.values()) for seed, c in sorted(per_seed.items()) if len(c) == 10}
        if len(complete) > 1:
            # Four digits: these means sit within a thousandth of the 0.95 target.
            means = " / ".join(f"{m:.4f} (seed {seed})" for seed, m in complete.items())
            lines += [
                f"{label} on all ten Fashion-MNIST classes at γ = {gamma:g}, mean test AUROC per seed: "
                f"{means}; over seeds {mean(complete.values()):.4f} ± {stdev(complete.values()):.4f}.",
                "",
            ]
    return lines


ENSEMBLE_SCORES = ("l2", "maxpool", "knn_latent", "knn_contrast")


def ensemble_section() -> list[str]:
    """K generators of one variant trained with other seeds on one split, their scores averaged."""
    runs = read_runs("ensemble")
    combined = [r for r in runs if "k" in r]
    members = {r["name"]: r for r in runs if "k" not in r}
    lines = [
        "## 7. Averaging generators (seed ensembles)",
        "",
        "The unturned variant (the default before runs a18) trained K times on one split (seed 0) with "
        "training seeds 0 … K−1 (weights and batches), each member's score standardised on the dev normals "
        "and the K scores averaged (`benchmarks/ensemble.py` over `agad_run.py --train-seed T "
        "--save-scores`). Cells list the members / their mean / the ensemble.",
        "",
    ]
    if not combined:
        return [*lines, "No run recorded yet.", ""]
    lines += [
        "| data | γ | K | score | dev: members | dev: mean | dev: ensemble | test: members | test: mean "
        "| test: ensemble |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(combined, key=lambda r: r["name"]):
        first = members[run["members"][0]]  # the member's run file: its data set and γ
        for score in ENSEMBLE_SCORES:
            if score not in run["dev"]["ensemble"]:
                continue
            cells = []
            for split in ("dev", "test"):
                each = [m[score] for m in run[split]["members"]]
                cells += [
                    " / ".join(fmt(v) for v in each),
                    fmt(mean(each)),
                    fmt(run[split]["ensemble"][score]),
                ]
            lines.append(
                f"| {first['data']} | {first['gamma']} | {run['k']} | {score} | " + " | ".join(cells) + " |"
            )
    lines += [
        "",
        "What it means. The ensemble beats its members' mean everywhere, by 0.003 to 0.038 on test, and its "
        "best member in seven of the fourteen rows, none of them at γ = 0; where the score `auto` ships is "
        "knn_contrast (γ = 0.05) it gains least: 0.859 against 0.848 on elpv and 0.928 against 0.924 on "
        "shirt. With the split held fixed that score hardly moves between training seeds (elpv 0.849 / 0.843"
        " / 0.852, shirt 0.923 / 0.924 / 0.924), so most of the spread at γ = 0.05 in section 6 (elpv 0.849 "
        "/ 0.773 / 0.842) comes from which defects were labelled, not from training. At γ = 0 training alone"
        " spreads elpv by 0.08 (l2 0.769 / 0.751 / 0.686), and three members lift l2 from a mean of 0.735 to"
        " 0.753 and maxpool from 0.729 to 0.759, still short of 0.80. No target is met this way, and it "
        "costs K times the training and the scoring, so the product trains one generator.",
        "",
        f"Machine: {machines(list(members.values()))}.",
        "",
    ]
    return lines


def throughput_section() -> list[str]:
    runs = read_runs("throughput")
    lines = ["## 4. Training throughput on this CPU", ""]
    if not runs:
        return [*lines, "Not measured yet.", ""]
    lines += [
        "The default trains G alone; the faithful variant also trains D and runs G a second time on "
        "its own output. Measurements before the variant was recorded are of the faithful one. The "
        "default's rows are of the default of their commit (since runs a29: turned, stretched, averaged).",
        "",
        "| variant | generator | image size | batch | train images/s (median) | threads | CPU |",
        "|---|---|---|---|---|---|---|",
    ]

    def variant(run: dict[str, Any]) -> str:
        return str(run.get("variant", "faithful"))

    for run in sorted(runs, key=lambda r: (variant(r), r["arch"], r["image_size"])):
        lines.append(
            f"| {variant(run)} | {run['arch']} | {run['image_size']} | {run['batch_size']} | "
            f"{run['images_per_second']:.1f} | {run['machine']['torch_threads']} | {run['machine']['cpu']} |"
        )
    lines += [
        "",
        f"Machine: {machines(runs)}. Command: `python benchmarks/train_throughput.py --variant V "
        "--sizes S ...` (each run file holds its exact command).",
        "",
    ]
    return lines


def main() -> None:
    header = [
        "# Results",
        "",
        "Generated by `python benchmarks/report.py` from the run files in `benchmarks/results/`; "
        "do not edit by hand. Each run file records its command, commit, machine and wall time.",
        "",
    ]
    body = (
        targets_section()
        + score_choice_section()
        + ablation_section()
        + fmnist_section()
        + elpv_section()
        + throughput_section()
        + features_section()
        + seeds_section()
        + ensemble_section()
    )
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(header + body))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
