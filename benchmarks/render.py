"""Fill the generated tables of docs/RESULTS.md, RELIABILITY.md and PERFORMANCE.md from the run
files in benchmarks/results/.

    python benchmarks/render.py            # rewrite the tables in place
    python benchmarks/render.py --check    # fail if they are out of date (a test runs this)

The prose is written by hand; each table sits between ``<!-- table:NAME -->`` and
``<!-- /table:NAME -->``. A run is labelled by its own stored configuration, never by today's code:
runs whose stored variants agree (per-batch counts taken as shares of the batch, fields a run
predates taken as off) form one configuration, named by its stored name and a short digest. Only
the rows "today's default", "faithful", ... look today's presets up, to find which configuration
they are now; today's default is the configuration it trains at the run's number of good
training images (``Variant.for_training_set``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from statistics import mean, median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agad_stream.model.card import ALL_SCORES  # noqa: E402
from benchmarks.thread_cpu import NATIVE  # noqa: E402
from trainer.agad.variant import PRESETS  # noqa: E402  (only to find today's configurations)

RESULTS = ROOT / "benchmarks" / "results"
RESULTS_DOC, RELIABILITY_DOC = ROOT / "docs" / "RESULTS.md", ROOT / "docs" / "RELIABILITY.md"
PERFORMANCE_DOC = ROOT / "docs" / "PERFORMANCE.md"
PAPER = {"w_adv": 1.0, "w_con": 50.0, "w_adcon": 15.0, "w_lat": 5.0, "arch": "naive", "lr": 2e-4}
"""The paper's values (AGAD_METHOD.md), which a configuration's label lists its departures from."""
UNSTORED = {
    "latent_dim": 100, "latent_loss": "norm", "reciprocal_eps": 0.01, "beta1": 0.5, "d_reinit_below": 1e-5,
    "selection": "normal_score", "augment": "none", "repair": 0.0, "ema": 0.0, "turned_anomalies": 0,
    "turns": "quarter", "stretched_anomalies": 0, "detach_pseudo": False, "batchnorm": "shared",
}  # fmt: skip
"""Fields a run file may predate (or today's code no longer has), with the value the code then used."""
SHARES = ("anomalies_per_batch", "turned_anomalies", "stretched_anomalies")
ROWS = {"default": "AGAD default", "adversarial": "AGAD adversarial", "faithful": "AGAD faithful (paper)"}
BASELINES = {
    "autoencoder": "autoencoder", "skip-ganomaly": "Skip-GANomaly", "knn": "raw-pixel 5-NN",
    "pca": "raw-pixel PCA", "classifier": "supervised CNN",
}  # fmt: skip
Run = dict[str, Any]


def load_runs() -> list[Run]:
    """Every committed run file (scratch-* folders hold runs that are not for the tables)."""
    paths = sorted(p for p in RESULTS.glob("*/*.json") if not p.parent.name.startswith("scratch-"))
    return [json.loads(path.read_text()) for path in paths]


def configuration(variant: dict[str, Any]) -> str:
    """A digest of what a stored variant trains and ships (its name and batch size aside)."""
    full = {**UNSTORED, **variant}
    full["batchnorm"] = "recompute" if full.pop("recompute_batchnorm", False) else full["batchnorm"]
    for count in SHARES:
        full[count] = round(full[count] / full["batch_size"], 4)
    if not full["turned_anomalies"]:
        full["turns"] = None  # no turned anomalies: which turns is moot
    # A run file stores the variant as it trained (Variant.for_training_set), so the rule for when to
    # stretch is already spent in stretched_anomalies.
    kept = {k: v for k, v in sorted(full.items()) if k not in ("name", "batch_size", "stretch_from_normals")}
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:6]


def method(run: Run) -> str:
    """The row a run belongs to: its configuration's digest (AGAD runs) or its baseline; a run of
    today's default as it trains on that many good images is ``default``."""
    if not isinstance(run.get("variant"), dict):
        return str(run["label"])
    digest = configuration(run["variant"])
    normals = run.get("data_summary", {}).get("splits", {}).get("train", {}).get("normal")
    if normals is not None and digest == configuration(
        PRESETS["default"].for_training_set(normals)[0].to_dict()
    ):
        return "default"
    return digest


def today(name: str) -> str:
    """The configuration a preset is now (the default's, as it trains on the data at hand)."""
    return "default" if name == "default" else configuration(PRESETS[name].to_dict())


def former_defaults() -> list[tuple[str, str]]:
    """(label, configuration) of the defaults before stretching depended on the number of good
    images, whose runs the tables show beside today's."""
    stretching = {**PRESETS["default"].to_dict(), "stretched_anomalies": 32}
    never = {**PRESETS["default"].to_dict(), "stretched_anomalies": 0}
    return [
        ("AGAD default stretching at every size (until 2026-12-06)", configuration(stretching)),
        ("AGAD default stretching at no size (2026-12-06 and 07)", configuration(never)),
    ]


def headline(run: Run) -> tuple[float | None, float | None]:
    """(dev, test) AUROC of the score the run's model ships."""
    score = run["score"]
    return run["dev"]["auroc"].get(score), run["test"]["auroc"].get(score)


def setting(run: Run) -> tuple[str, float, int]:
    return str(run["data"]), float(run["gamma"]), int(run.get("image_size") or 0)


def seed_of(run: Run) -> int:
    return int(run.get("train_seed", run.get("seed", 0)) or 0)


def latest(runs: Iterable[Run]) -> dict[tuple[str, tuple[str, float, int], int], Run]:
    """One run per (method, setting, seed): the one that finished last."""
    chosen: dict[tuple[str, tuple[str, float, int], int], Run] = {}
    for run in sorted(runs, key=lambda r: r.get("finished_at", "")):
        if "dev" in run and "test" in run and "score" in run:
            chosen[(method(run), setting(run), seed_of(run))] = run
    return chosen


def cell(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def named_rows(gamma: float) -> list[tuple[str, str]]:
    """(label, method) of the rows of the main tables, today's presets first."""
    rows = [(label, today(name)) for name, label in ROWS.items()]
    rows[1:1] = former_defaults()
    unsupervised = ("autoencoder", "skip-ganomaly", "knn", "pca")
    for key, label in BASELINES.items():
        if (gamma == 0) == (key in unsupervised):
            rows.append((label, today(key) if key in PRESETS else key))
    return rows


def fmnist_table(runs: dict[Any, Run], gamma: float) -> str:
    rows = []
    for label, key in named_rows(gamma):
        found = [runs.get((key, (f"fmnist:{c}", gamma, 32), 0)) for c in range(10)]
        values = [headline(run)[1] if run else None for run in found]
        done = [v for v in values if v is not None]
        if done:
            average = cell(mean(done), 4) if len(done) == 10 else f"({len(done)}/10 classes)"
            rows.append([label, *map(cell, values), average])
    return table(["method", *map(str, range(10)), "mean"], rows)


def elpv_table(runs: dict[Any, Run]) -> str:
    rows = []
    for gamma in (0.0, 0.01, 0.05):
        for label, key in named_rows(gamma):
            run = runs.get((key, ("elpv", gamma, 64), 0))
            if run is None:
                continue
            at = run["test"]["at_threshold"]
            groups = at.get("groups", {})
            balanced = (run["test"].get("at_balanced_threshold") or {}).get("accuracy")
            rows.append([
                label, str(gamma), cell(headline(run)[1]), cell(groups.get("prob_0.667", {}).get("auroc")),
                cell(groups.get("prob_0.333", {}).get("auroc")), cell(at["accuracy"]), cell(at["f1"]),
                cell(balanced), f"{run.get('wall_seconds', 0):.0f}",
            ])  # fmt: skip
    header = ["method", "γ", "AUROC (1.0)", "AUROC (0.667)", "AUROC (0.333)", "accuracy", "F1",
              "accuracy (balanced thr.)", "wall s"]  # fmt: skip
    return table(header, rows)


def seeds_table(runs: dict[Any, Run]) -> str:
    """Today's default (and the former one) over every seed run, per setting: test AUROC per seed
    and their mean."""
    labels = {today("default"): ROWS["default"], **{key: label for label, key in former_defaults()}}
    by_setting: dict[tuple[str, tuple[str, float, int]], dict[int, float]] = defaultdict(dict)
    for (name, where, seed), run in runs.items():
        if name in labels and (value := headline(run)[1]) is not None:
            by_setting[(name, where)][seed] = value
    rows = []
    for key in labels:
        for (name, (data, gamma, size)), seeds in sorted(by_setting.items()):
            if name == key and len(seeds) > 1:
                shown = ", ".join(f"{s}: {v:.3f}" for s, v in sorted(seeds.items()))
                rows.append([labels[key], data, str(gamma), str(size), shown, cell(mean(seeds.values()), 4)])
    return table(["method", "data", "γ", "px", "test AUROC by seed", "mean"], rows)


def throughput_table(all_runs: list[Run]) -> str:
    measured = sorted(
        (r for r in all_runs if r.get("table") == "throughput"),
        key=lambda r: (r["image_size"], r["arch"], r["finished_at"]),
    )
    rows = [
        [
            str(r.get("variant", "faithful")),
            r["commit"],
            str(r["arch"]),
            str(r["image_size"]),
            str(r["batch_size"]),
            f"{r['images_per_second']:.0f}",
            str(r["machine"]["torch_threads"]),
            r["machine"]["cpu"],
        ]
        for r in measured
    ]
    header = ["variant (as named then)", "commit", "generator", "px", "batch", "images/s", "threads", "CPU"]
    return table(header, rows)


def history_table(runs: dict[Any, Run]) -> str:
    """Every AGAD configuration that ran: what it changes from the paper (its own stored fields), and
    its mean dev and test AUROC per setting, seed 0."""
    grouped: dict[str, list[Run]] = defaultdict(list)
    for (_, _, seed), run in runs.items():
        if isinstance(run.get("variant"), dict) and seed == 0:
            grouped[configuration(run["variant"])].append(run)
    rows = []
    for digest, members in sorted(grouped.items(), key=lambda item: min(r["finished_at"] for r in item[1])):
        stored = {**UNSTORED, **members[0]["variant"]}
        name = f"{' / '.join(sorted({r['variant']['name'] for r in members}))} [{digest}]"
        changes = [f"{k}={v}" for k, v in stored.items() if k in PAPER and PAPER[k] != v]
        changes += [f"{k}={v}" for k, v in stored.items() if k in UNSTORED and UNSTORED[k] != v]
        changes += [f"score={stored['score']}"] if stored["score"] != "l2" else []
        by_setting: dict[tuple[str, float, int], list[Run]] = defaultdict(list)
        for run in members:
            data, gamma, size = setting(run)
            by_setting[(data.split(":")[0], gamma, size)].append(run)
        for (data, gamma, size), group in sorted(by_setting.items()):
            dev, test = zip(*(headline(r) for r in group), strict=True)
            rows.append([
                name, ", ".join(changes) or "the paper's", f"{data} γ={gamma} {size}px", str(len(group)),
                cell(_mean(dev)), cell(_mean(test)), ", ".join(sorted({r["commit"] for r in group})),
            ])  # fmt: skip
    header = ["configuration", "changes from the paper", "setting", "runs", "dev", "test", "commits"]
    return table(header, rows)


def loop_table(all_runs: list[Run], name: str) -> str:
    """benchmarks/loop.py: per run, what a retrain on operator labels changed on the unlabelled stream."""
    rows = []
    runs = sorted(
        (r for r in all_runs if r.get("table") == name),
        key=lambda r: (r["data"], r["retrain_epochs"], r["seed"]),
    )
    for run in runs:
        stream, report = run["on_unlabelled_stream"], run["retrain"]["report"] or {}
        after = stream.get("retrained", {})
        rows.append(
            [
                f"{run['data']}, {run['retrain_epochs']} epochs, seed {run['seed']}",
                f"{run['labelled']} ({run['labelled_anomalous']} defects) of {run['streamed']}",
                cell(stream["before"]["auroc"]),
                cell(after.get("auroc")),
                cell(stream["from_scratch"]["auroc"]),
                _change(stream["before"]["precision"], after.get("precision")),
                _change(report.get("current", {}).get("auroc"), report.get("candidate", {}).get("auroc")),
                run["retrain"]["status"],
                run["machine"]["cpu"],
            ]
        )
    if len(runs) > 1 and len({(r["data"], r["retrain_epochs"]) for r in runs}) == 1:
        means = [
            _mean(r["on_unlabelled_stream"][k].get("auroc") for r in runs)
            for k in ("before", "retrained", "from_scratch")
        ]
        rows.append(["mean", "", *map(cell, means), "", "", "", ""])
    header = ["run", "labels", "AUROC before", "retrained", "from scratch", "precision of flags"]
    return table([*header, "holdout AUROC", "retrain", "CPU"], rows)


def _change(before: float | None, after: float | None) -> str:
    return f"{cell(before)} → {cell(after)}"


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return mean(present) if present else None


def fuzz_table(every: list[Run]) -> str:
    """benchmarks/fuzz.py: per run, generated frames, how many parsed, and what the worst one cost."""
    rows = [
        "| examples | parsed as frames | rejected, distinct reasons | slowest frame "
        "| peak RSS before → after | command | commit |",
        "|---:|---:|---:|---:|---|---|---|",
    ]
    for run in sorted((r for r in every if r["table"] == "fuzz"), key=lambda r: r["finished_at"]):
        rows.append(
            f"| {run['examples']:,} | {run['frames']} | {run['examples'] - run['frames']:,}, "
            f"{len(run['rejections'])} | {run['slowest_frame_seconds'] * 1000:.1f} ms "
            f"| {run['max_rss_mb_before']:.0f} → {run['max_rss_mb_after']:.0f} MB "
            f"| `{run['command']}` | {run['commit']} |"
        )
    return "\n".join(rows)


def soak_table(every: list[Run]) -> str:
    """benchmarks/soak.py: per run, the load and what grew (or did not) after warm-up."""
    rows = [
        "| minutes | rate (share of capacity) | frames scored / sent | RSS after warm-up → max later "
        "| p50 after warm-up → last minute | worst window p99 | lag max, last minute "
        "| review items | failures | commit |",
        "|---:|---|---|---|---|---:|---|---:|---|---|",
    ]
    for run in sorted((r for r in every if r["table"] == "soak"), key=lambda r: r["finished_at"]):
        s = run["summary"]
        rows.append(
            f"| {run['settings']['minutes']:g} | {run['rate_fps']:.0f} frames/s "
            f"({run['settings']['load']:.0%} of {run['capacity_fps']:.0f}) "
            f"| {run['scored']:,} / {run['sent']:,} "
            f"| {s['rss_mb_after_warmup']:.0f} → {s['rss_mb_max_later']:.0f} MB ({s['rss_growth']:+.1%}) "
            f"| {s['p50_ms_after_warmup']:.0f} → {s['p50_ms_last_minute']:.0f} ms "
            f"| {s['p99_ms_worst_window']:.0f} ms "
            f"| {s['lag_frames_max']}, {s['lag_frames_last_minute']:g} "
            f"| {run['review_items']} | {'; '.join(run['failures']) or 'none'} | {run['commit']} |"
        )
    return "\n".join(rows)


SMALL_METHODS = {"default": "default", "autoencoder": "autoencoder", "knn": "5-NN", "patch_nn": "patch-NN"}


def small_runs(every: list[Run]) -> dict[tuple[str, int, int, str, int], dict[str, Run]]:
    """benchmarks/small_data.py runs by (data family, px, normals, data, seed) and method, the last of
    each; a run of a ``--set`` or ``--steps`` change is not the method as it ships, and is left out."""
    chosen: dict[tuple[str, int, int, str, int], dict[str, Run]] = defaultdict(dict)
    shipped = (r for r in every if r["table"] == "small" and "set" not in r and "steps" not in r)
    for run in sorted(shipped, key=lambda r: r["finished_at"]):
        family = run["data"].partition(":")[0]
        chosen[(family, run["image_size"], run["normals"], run["data"], seed_of(run))][run["method"]] = run
    return chosen


def small_table(every: list[Run]) -> str:
    """Mean test AUROC per data family and number of good images, over the data sets and seeds that
    every method of the row has run on."""
    grouped: dict[tuple[str, int, int], list[dict[str, Run]]] = defaultdict(list)
    for (family, size, normals, _, _), by_method in small_runs(every).items():
        if family != "folder":
            grouped[(family, size, normals)].append(by_method)
    rows = []
    for (family, size, normals), sets in sorted(grouped.items()):
        shown = [m for m in SMALL_METHODS if any(m in s for s in sets)]
        complete = [s for s in sets if all(m in s for m in shown)]
        if not complete:
            continue
        means = {m: mean(s[m]["auroc"] for s in complete) for m in shown}
        lead = means["default"] - means["knn"] if {"default", "knn"} <= set(means) else None
        seconds = [s["default"]["training"]["seconds"] for s in complete if "default" in s]
        steps = [s["default"]["training"]["steps"] for s in complete if "default" in s]
        data_sets = {run["data"] for s in complete for run in s.values()}
        seeds = {seed_of(run) for s in complete for run in s.values()}
        rows.append(
            [
                f"{family} {size} px", str(normals), str(len(data_sets)), str(len(seeds)),
                *[cell(means.get(m), 4) for m in SMALL_METHODS],
                "—" if lead is None else f"{lead:+.4f}",
                f"{mean(steps):.0f}" if steps else "—", f"{mean(seconds):.0f}" if seconds else "—",
            ]
        )  # fmt: skip
    header = [
        "data", "good images", "data sets", "seeds", *SMALL_METHODS.values(), "default − 5-NN",
        "default steps", "default train s",
    ]  # fmt: skip
    return table(header, rows)


def small_dev_table(every: list[Run]) -> str:
    """benchmarks/small_data.py --dev: dev AUROC per data set of each method (a trained one as it was
    at the run's commit) and each ``--set`` change of it, then their means over the data sets that
    all of them ran on."""
    chosen: dict[tuple[str, int, int], dict[str, dict[str, Run]]] = defaultdict(lambda: defaultdict(dict))
    for run in sorted((r for r in every if r["table"] == "small-dev"), key=lambda r: r["finished_at"]):
        label = SMALL_METHODS[run["method"]]
        if run["method"] in PRESETS:  # a trained preset, as it was at the run's commit
            changes = {**run.get("set", {}), **({"steps": run["steps"]} if "steps" in run else {})}
            label += f" at {run['commit']}" + "".join(f", {k}={v}" for k, v in changes.items())
        chosen[(run["data"].partition(":")[0], run["image_size"], run["normals"])][run["data"]][label] = run
    every_label = {label for sets in chosen.values() for runs in sets.values() for label in runs}
    labels = sorted(every_label, key=lambda label: (label == "5-NN", label))
    rows = []
    for (family, size, normals), sets in sorted(chosen.items()):
        for data, runs in sorted(sets.items()):
            rows.append([f"{data} {size} px", str(normals), *[cell(_auroc(runs.get(x)), 4) for x in labels]])
        ran = {label for runs in sets.values() for label in runs}  # the columns of this size
        complete = [runs for runs in sets.values() if ran <= set(runs)]
        if len(complete) > 1:
            means = [mean(runs[x]["auroc"] for runs in complete) if x in ran else None for x in labels]
            shown = [cell(m, 4) for m in means]
            rows.append([f"**mean of {len(complete)}** {family} {size} px", str(normals), *shown])
    return table(["data", "good images", *labels], rows)


def _auroc(run: Run | None) -> float | None:
    return None if run is None else float(run["auroc"])


def textured_table(every: list[Run]) -> str:
    """Image AUROC, pixel AUROC and AUPRO of each method on folders with masks."""
    rows = []
    for (family, size, normals, data, _), by_method in sorted(small_runs(every).items()):
        if family != "folder":
            continue
        for name, label in SMALL_METHODS.items():
            if (run := by_method.get(name)) is None:
                continue
            groups = ", ".join(f"{g} {v:.3f}" for g, v in sorted(run["groups"].items()) if v is not None)
            rows.append(
                [
                    f"{data.partition(':')[2]} {size} px", str(normals), label, cell(run["auroc"]),
                    cell(run.get("pixel_auroc")), cell(run.get("aupro")), groups,
                ]
            )  # fmt: skip
    header = ["data", "good images", "method", "image AUROC", "pixel AUROC", "AUPRO", "image AUROC by defect"]
    return table(header, rows)


def scores_table(every: list[Run]) -> str:
    """benchmarks/score_candidates.py: each deployable score of one model on held-out data that is not
    test data, and on validation normals against damaged copies of them."""
    chosen = {r["name"]: r for r in sorted(every, key=lambda r: r["finished_at"]) if r["table"] == "scores"}
    methods = [m for m in ALL_SCORES if any(m in r["held_out_auroc"] for r in chosen.values())]
    rows = []
    for run in sorted(chosen.values(), key=lambda r: r["data"]):
        measured = [
            f"{run['held_out_auroc'][m]:.3f} ({run['synthetic_auroc'][m]:.3f})"
            if m in run["held_out_auroc"]
            else "—"
            for m in methods
        ]
        held_out = f"{run['n_normal']} / {run['n_anomalous']}"
        rows.append([f"{run['data']} {run['image_size']} px", held_out, *measured])
    return table(["data", "held out: normal / anomalous", *methods], rows)


def stream_runs(every: list[Run]) -> list[Run]:
    """The latest benchmarks/stream.py run file of each model size, batch and lane count, smallest first."""
    chosen: dict[tuple[int, int, int], Run] = {}
    for run in sorted((r for r in every if r["table"] == "stream"), key=lambda r: r["finished_at"]):
        s = run["settings"]
        chosen[(s["size"], s["batch"], s.get("lanes", 1))] = run
    return [chosen[key] for key in sorted(chosen)]


def _stream_model(settings: dict[str, Any]) -> str:
    lanes = settings.get("lanes", 1)
    return f"{settings['size']} px, batch {settings['batch']}" + (f", {lanes} lanes" if lanes > 1 else "")


def stream_table(every: list[Run]) -> str:
    """benchmarks/stream.py: capacity against the raw backend, latency at half capacity against its bound."""
    rows = []
    for run in stream_runs(every):
        s, summary = run["settings"], run["summary"]
        each = ", ".join(f"{r['pipeline_vs_raw']:.2f}" for r in run["runs"])
        interleaved = ", ".join(
            f"{r['pipeline_vs_raw_interleaved']:.2f}"
            for r in run["runs"]
            if "pipeline_vs_raw_interleaved" in r
        )
        bound = summary.get("latency_bound_ms")
        rows.append(
            [
                f"{_stream_model(s)}, wait {s['max_wait_ms']:.0f} ms",
                f"{summary['raw_backend_fps']:.0f}",
                f"{summary['pipeline_fps']:.0f}",
                f"{summary['pipeline_vs_raw']:.2f} ({each})",
                f"{summary['pipeline_vs_raw_interleaved']:.2f} ({interleaved})" if interleaved else "—",
                f"{summary['pipeline_p50_ms']:.0f} / {summary['pipeline_p99_ms']:.0f} ms",
                "—" if bound is None else f"{bound:.0f} ms",
                cell(summary.get("p50_vs_bound"), 2) + " / " + cell(summary.get("p99_vs_bound"), 2),
                f"{summary['naive_fps']:.0f}; "
                f"{summary['naive_p50_ms']:.0f} / {summary['naive_p99_ms']:.0f} ms",
            ]
        )
    header = [
        "model", "raw frames/s", "pipeline frames/s", "÷ raw (each run)", "÷ raw, interleaved (each run)",
        "p50 / p99", "bound",
        "p50 ÷ bound / p99 ÷ 3·bound", "naive loop: frames/s; p50 / p99",
    ]  # fmt: skip
    return table(header, rows)


def profile_table(every: list[Run]) -> str:
    """Where a frame's time went at half capacity: the worker's mean ms per step (median of runs)."""
    steps = ("fetch", "batch_wait", "decode", "infer", "deliver", "commit")
    rows = []
    for run in stream_runs(every):
        profile = run["summary"].get("profile_ms")
        if not profile:
            continue
        name = _stream_model(run["settings"])
        means = [f"{profile[k]:.1f}" for k in steps]
        rows.append([name, *means, f"{profile['batch_frames']:.1f}", f"{profile['end_to_end']:.0f}"])
    header = ["model", *steps, "frames per batch", "end to end (worker's view)"]
    return table(header, rows)


def _thread_kind(group: str) -> str:
    """The column a thread group of benchmarks/thread_cpu.py goes to."""
    if group in ("model", NATIVE):
        return "inference"
    if group.startswith("kafka-io"):
        return "Kafka client I/O"
    if group.endswith("network-thread"):
        return "Kafka producer sender"
    if group in ("decode", "worker loop"):
        return group
    return "benchmark"


SAMPLERS = ("benchmark-sampler", "tqdm_monitor")
"""Threads of the benchmark itself that run in the raw backend's timing too."""


def cpu_table(every: list[Run]) -> str:
    """Cores each kind of thread kept busy: the raw backend's run against the capacity run's (medians)."""
    kinds = ("inference", "decode", "worker loop", "Kafka client I/O", "Kafka producer sender")
    rows = []
    for run in stream_runs(every):
        summary, s = run["summary"], run["settings"]
        if "capacity_cpu_cores" not in summary:
            continue
        busy = {kind: 0.0 for kind in (*kinds, "benchmark")}
        for group, cores in summary["capacity_cpu_cores"].items():
            busy[_thread_kind(group)] += cores
        # A raw run has only its callers and ONNX Runtime's pool besides the benchmark's samplers.
        raw = median(
            sum(c for g, c in r["raw_backend_cpu_cores"].items() if g not in SAMPLERS) for r in run["runs"]
        )
        others = sum(busy[kind] for kind in kinds[1:])
        # Older runs did not measure the broker, Redis and the whole machine: their cells stay empty.
        machine = summary.get("capacity_machine_cores", {})
        raw_machine = summary.get("raw_backend_machine_cores", {})
        rows.append(
            [
                _stream_model(s),
                f"{raw:.2f}",
                *(f"{busy[kind]:.3f}" if kind != "inference" else f"{busy[kind]:.2f}" for kind in kinds),
                f"{others:.3f}",
                f"{raw - busy['inference']:.2f}",
                *(f"{machine[name]:.3f}" if name in machine else "—" for name in ("kafka", "redis")),
                f"{raw_machine['machine']:.2f} / {machine['machine']:.2f}" if "machine" in machine else "—",
            ]
        )
    header = [
        "model", "raw backend: inference", "pipeline: inference", "decode", "worker loop",
        "Kafka client I/O", "Kafka producer sender", "all but inference", "inference lost",
        "broker", "Redis", "machine busy: raw / pipeline",
    ]  # fmt: skip
    return table(header, rows)


def int8_speed_table(every: list[Run]) -> str:
    """benchmarks/int8.py speed: images/s of the three graphs and their ratios (median of runs)."""
    rows = []
    speed = (r for r in every if r["table"] == "int8" and "runs" in r)
    for run in sorted(speed, key=lambda r: r["name"]):
        s, summary = run["settings"], run["summary"]
        each = ", ".join(f"{r['int8_vs_fp32']:.2f}" for r in run["runs"])
        rows.append(
            [
                f"naive, {s['channels']}×{s['size']}×{s['size']}, batch {s['batch']}, {s['threads']} threads",
                f"{summary['fp32_fps']:.1f}",
                f"{summary['fp32-rewritten_fps']:.1f}",
                f"{summary['int8_fps']:.1f}",
                f"**{summary['int8_vs_fp32']:.2f}×** ({each})",
                f"{summary['rewritten_vs_fp32']:.2f}×",
            ]
        )
    header = [
        "model", "fp32 images/s", "fp32, decoder rewritten", "int8 images/s", "int8 ÷ fp32 (each run)",
        "rewrite alone ÷ fp32",
    ]  # fmt: skip
    return table(header, rows)


def int8_profile_table(every: list[Run]) -> str:
    """benchmarks/int8.py profile: ms per batch of each kernel group in the float32 and INT8 graphs;
    groups under half a millisecond in both are added up in the last row."""
    rows = []
    for run in sorted(
        (r for r in every if r["table"] == "int8" and "kernel_ms" in r), key=lambda r: r["name"]
    ):
        fp32, int8 = run["kernel_ms"]["fp32"], run["kernel_ms"]["int8"]
        groups = sorted(set(fp32) | set(int8), key=lambda g: -(fp32.get(g, 0.0) + int8.get(g, 0.0)))
        shown = [g for g in groups if max(fp32.get(g, 0.0), int8.get(g, 0.0)) >= 0.5]
        rest = [g for g in groups if g not in shown]
        s = run["settings"]
        model = f"naive, {s['channels']}×{s['size']}×{s['size']}, batch {s['batch']}, {s['threads']} threads"
        for group in shown:
            rows.append([model, group, cell(fp32.get(group), 1), cell(int8.get(group), 1)])
        if rest:
            rows.append(
                [
                    model,
                    f"the rest ({len(rest)} kinds)",
                    *(f"{sum(g.get(k, 0.0) for k in rest):.1f}" for g in (fp32, int8)),
                ]
            )
        rows.append(
            [model, "**all kernels**", f"**{sum(fp32.values()):.1f}**", f"**{sum(int8.values()):.1f}**"]
        )
    return table(["model", "kernels", "float32 graph, ms per batch", "INT8 graph, ms per batch"], rows)


def int8_parity_table(every: list[Run]) -> str:
    """benchmarks/int8.py parity: test AUROC of trained models at float32 and INT8."""
    rows = []
    parity = (r for r in every if r["table"] == "int8" and "auroc_fp32" in r)
    for run in sorted(parity, key=lambda r: r["name"]):
        rows.append(
            [
                f"{run['data']}, {run['image_size']} px",
                str(run["test_images"]),
                f"{run['auroc_fp32']:.4f}",
                f"{run['auroc_int8']:.4f}",
                f"{run['auroc_int8_minus_fp32']:+.4f}",
                f"{run['score_rank_correlation']:.4f}",
                f"{run['flag_changes']:.1%}",
            ]
        )
    header = ["model (agad train default)", "test images", "AUROC fp32", "AUROC int8", "difference",
              "score rank correlation", "flags changed"]  # fmt: skip
    return table(header, rows)


def decode_table(every: list[Run]) -> str:
    """benchmarks/decode.py: ms per frame of scaled JPEG decoding against the whole decode."""
    rows = []
    for run in sorted((r for r in every if r["table"] == "decode"), key=lambda r: r["name"]):
        for case in run["cases"]:
            rows.append(
                [
                    f"{case['frame']} JPEG, {case['frame_bytes'] // 1000} kB",
                    f"{case['model_size']} px",
                    f"{case['whole_ms']:.2f}",
                    f"{case['scaled_ms']:.2f}",
                    f"**{case['speedup']:.2f}×** ({min(case['speedup_each_round']):.2f}–"
                    f"{max(case['speedup_each_round']):.2f})",
                    f"{case['mean_abs_pixel_difference']:.2f} / {case['max_abs_pixel_difference']}",
                ]
            )
    header = ["frame", "model", "whole decode ms", "scaled decode ms", "speed-up (rounds)",
              "pixel difference mean / max"]  # fmt: skip
    return table(header, rows)


def tables() -> dict[Path, dict[str, Callable[[], str]]]:
    every = load_runs()
    runs = latest(every)
    return {
        RESULTS_DOC: {
            "fmnist-0": lambda: fmnist_table(runs, 0.0),
            "fmnist-0.05": lambda: fmnist_table(runs, 0.05),
            "elpv": lambda: elpv_table(runs),
            "seeds": lambda: seeds_table(runs),
            "throughput": lambda: throughput_table(every),
            "history": lambda: history_table(runs),
            "loop": lambda: loop_table(every, "loop"),
            "loop-dev": lambda: loop_table(every, "loop-dev"),
            "small": lambda: small_table(every),
            "small-dev": lambda: small_dev_table(every),
            "textured": lambda: textured_table(every),
            "scores": lambda: scores_table(every),
        },
        RELIABILITY_DOC: {"fuzz": lambda: fuzz_table(every), "soak": lambda: soak_table(every)},
        PERFORMANCE_DOC: {
            "decode": lambda: decode_table(every),
            "stream": lambda: stream_table(every),
            "profile": lambda: profile_table(every),
            "cpu": lambda: cpu_table(every),
            "int8-speed": lambda: int8_speed_table(every),
            "int8-profile": lambda: int8_profile_table(every),
            "int8-parity": lambda: int8_parity_table(every),
        },
    }


def render(doc: Path, text: str, makers: dict[str, Callable[[], str]]) -> str:
    for name, make in makers.items():
        begin, end = f"<!-- table:{name} -->", f"<!-- /table:{name} -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise SystemExit(f"{doc}: the markers {begin} ... {end} are missing")
        text = text[: start + len(begin)] + "\n" + make() + "\n" + text[stop:]
    return text


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if the tables are out of date")
    args = parser.parse_args()
    stale = []
    for doc, makers in tables().items():
        text = doc.read_text()
        rendered = render(doc, text, makers)
        if rendered == text:
            continue
        if args.check:
            stale.append(doc)
        else:
            doc.write_text(rendered)
    for doc in stale:
        print(f"{doc} is out of date: run python benchmarks/render.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
