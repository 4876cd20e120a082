"""The benchmarks' per-thread CPU accounting: who kept the cores busy, including threads that ended."""

from __future__ import annotations

import threading
import time

from benchmarks.thread_cpu import ThreadCpu


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds  # this thread's own CPU time, whatever else the process runs
    while time.thread_time() < end:
        pass


def test_a_busy_thread_that_ends_inside_the_span_is_counted_under_its_group() -> None:
    with ThreadCpu(every_s=0.02) as cpu:
        burners = [threading.Thread(target=_spin, args=(0.3,), name=f"burner_{i}") for i in range(2)]
        for burner in burners:
            burner.start()
        for burner in burners:
            burner.join()
        time.sleep(0.3)  # the span goes on after they ended: idle time for the group
    cores = cpu.cores()
    # Two threads spun 0.3 s of CPU each, taking turns on the GIL: 0.6 s over a span of at least
    # 0.9 s, so at most two thirds of a core; well above nothing, whatever else the process runs.
    assert "burner" in cores and "burner_0" not in cores
    assert 0.1 <= cores["burner"] <= 0.7
    assert cores.get("MainThread", 0.0) < 0.2  # it only waited
