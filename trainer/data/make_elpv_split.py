"""Regenerate trainer/data/splits/elpv_seed0.csv from the installed elpv-dataset (seed 0).

Run only if the package's data changes: the committed file is what keeps every model comparable.
``python -m trainer.data.make_elpv_split``
"""

from __future__ import annotations

import sys
from collections import Counter

from trainer.data.elpv import SPLIT_FILE, data_dir, make_split, read_labels, write_split


def main() -> None:
    rows = make_split(read_labels(data_dir()), seed=0)
    write_split(rows, SPLIT_FILE)
    for (probability, split), n in sorted(Counter((r.probability, r.split) for r in rows).items()):
        print(f"probability {probability}  {split:5s} {n}", file=sys.stderr)
    print(f"wrote {SPLIT_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
