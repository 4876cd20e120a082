"""The benchmarks' per-thread CPU accounting: who kept the cores busy, including threads that ended."""

from __future__ import annotations

import threading
import time

from benchmarks.thread_cpu import ThreadCpu


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds  # this process's CPU time: counts only while running
    while time.process_time() < end:
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
    # Two threads spun 0.3 s of CPU between them at least (process time is shared by both), in a
    # span of at least 0.45 s; neither can have had more than the span.
    assert "burner" in cores and "burner_0" not in cores
    assert 0.15 <= cores["burner"] <= 2.0
    assert cores.get("MainThread", 0.0) < 0.2  # it only waited
