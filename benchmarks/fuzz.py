"""Fuzz frame parsing and decoding with generated hostile frames and record what happened.

    python benchmarks/fuzz.py --examples 10000

Every generated record (tests/frame_strategies.py: cut, bit-flipped and spliced JPEG/PNG/BMP/TIFF/
WebP files, headers claiming huge images, raw frames with wrong shapes, noise, missing or garbled
headers) goes through the scorer's parsing. Recorded: how many became frames and how many were
refused, by reason; the slowest frame; the resident memory before and after. A crash, an exception
or a frame slower than --max-seconds fails the run. One run file in benchmarks/results/fuzz/.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agad_stream.stream.frames import Frame, parse_frame
from benchmarks.common import write_result
from tests.frame_strategies import Record, records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=2.0, help="slowest a frame may be")
    args = parser.parse_args()
    outcomes: Counter[str] = Counter()
    slowest = [0.0]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @settings(
        max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(records())
    def one(record: Record) -> None:
        started = time.perf_counter()
        parsed = parse_frame(record, image_size=64, channels=3)
        took = time.perf_counter() - started
        slowest[0] = max(slowest[0], took)
        assert took < args.max_seconds, f"a frame took {took:.2f} s"
        outcomes[
            "frame" if isinstance(parsed, Frame) else parsed.reason.split(":")[0].split("(")[0].strip()
        ] += 1

    started = time.perf_counter()
    one()
    record = {
        "examples": sum(outcomes.values()),
        "frames": outcomes.pop("frame", 0),
        "rejections": dict(outcomes.most_common()),
        "slowest_frame_seconds": round(slowest[0], 4),
        "max_rss_mb_before": round(rss_before / 1024, 1),
        "max_rss_mb_after": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_result("fuzz", f"frames-{args.examples}", record)
    print(f"{path}: {record['examples']} records, {record['frames']} frames, "
          f"{sum(record['rejections'].values())} refused, slowest {record['slowest_frame_seconds']} s, "
          f"max RSS {record['max_rss_mb_before']} -> {record['max_rss_mb_after']} MB")  # fmt: skip


if __name__ == "__main__":
    main()
