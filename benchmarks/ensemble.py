"""Would averaging a few generators beat one? Combine the per-image scores of K runs of one variant.

    python benchmarks/ensemble.py --table ensemble --name elpv-g0-agad-default-64-k3 \
        --members /tmp/ens/elpv-g0-agad-default-64-t{0,1,2}.npz

Members come from ``agad_run.py --table ensemble --name NAME --save-scores DIR/NAME.npz`` (the file
named after its run, so the report finds the run's settings) with the same ``--seed`` (so the same
split and the same dev and test images) and different ``--train-seed``. Per score, each member's values are
standardised by their mean and spread on the dev normals (validation normals: no anomaly label is
read), then averaged. Recorded: the AUROC of each member and of the ensemble, on dev and on test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import run_parser, write_result
from trainer.metrics import auroc


def main() -> None:
    parser = run_parser(__doc__)
    parser.add_argument("--members", type=Path, nargs="+", required=True)
    args = parser.parse_args()

    members = [dict(np.load(path)) for path in args.members]
    dev_labels, test_labels = members[0]["dev_labels"], members[0]["test_labels"]
    for path, member in zip(args.members, members, strict=True):
        if not (
            np.array_equal(member["dev_labels"], dev_labels)
            and np.array_equal(member["test_labels"], test_labels)
        ):
            parser.error(f"{path} was scored on other images than {args.members[0]}: use the same --seed")
    scores = sorted(
        {key.removeprefix("dev_") for key in members[0] if key.startswith("dev_") and key != "dev_labels"}
    )
    record: dict[str, object] = {"members": [path.stem for path in args.members], "k": len(members)}
    for split, labels in (("dev", dev_labels), ("test", test_labels)):
        record[split] = {
            "members": [{s: auroc(labels, m[f"{split}_{s}"]) for s in scores} for m in members],
            "ensemble": {
                s: auroc(labels, np.mean([_standardised(m, split, s, dev_labels) for m in members], axis=0))
                for s in scores
            },
        }
    path = write_result(args.table, args.name, record)
    print(f"{path}: dev {record['dev']}, test {record['test']}")


def _standardised(
    member: dict[str, np.ndarray], split: str, score: str, dev_labels: np.ndarray
) -> np.ndarray:
    normals = member[f"dev_{score}"][dev_labels == 0]
    return (member[f"{split}_{score}"] - normals.mean()) / (normals.std() + 1e-12)


if __name__ == "__main__":
    main()
