"""CPU time of each thread of this process over a span, grouped by what the thread does (Linux).

The streaming benchmark uses it to show who shares the cores with the model: on a machine whose
every core runs inference, each CPU-second the Kafka clients, the decoders and the loop take is a
second the model does not get, so their sum bounds how close the pipeline can come to the raw
backend.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from types import TracebackType

TASKS = Path("/proc/self/task")
NATIVE = "native (unnamed: ONNX Runtime's intra-op pool)"
"""Threads that Python did not start; in the benchmark these are ONNX Runtime's pool workers."""


def _group(name: str) -> str:
    """``decode_1`` and ``decode_0`` are one group, ``decode``."""
    return re.sub(r"_\d+$", "", name)


class ThreadCpu:
    """``with ThreadCpu() as cpu: ...``, then ``cpu.cores()``: cores each thread group kept busy.

    A sampler reads every thread's CPU seconds from /proc every ``every_s``, so that threads which
    end inside the span (a worker's pools) still count, up to their last sample.
    """

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.start_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.wall_s = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_until_stopped, name="benchmark-sampler")

    def __enter__(self) -> ThreadCpu:
        self.start_cpu = self._read()
        self._started = time.perf_counter()
        self._sampler.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._sampler.join()
        self._update()
        self.wall_s = time.perf_counter() - self._started

    def cores(self) -> dict[str, float]:
        """Mean cores busy per thread group over the span (1.0: one core all the time), largest first."""
        busy: dict[str, float] = {}
        for tid, cpu in self.last_cpu.items():
            name = self.names.get(tid, NATIVE)
            used = cpu - self.start_cpu.get(tid, 0.0)
            busy[name] = busy.get(name, 0.0) + used / max(self.wall_s, 1e-9)
        return dict(sorted(busy.items(), key=lambda item: -item[1]))

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.every_s):
            self._update()

    def _update(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names[thread.native_id] = _group(thread.name)
        for tid, cpu in self._read().items():
            self.last_cpu[tid] = max(self.last_cpu.get(tid, 0.0), cpu)

    @staticmethod
    def _read() -> dict[int, float]:
        tick = os.sysconf("SC_CLK_TCK")
        cpu: dict[int, float] = {}
        for task in TASKS.iterdir():
            seconds = _cpu_seconds(task / "stat", tick)
            if seconds is not None:  # None: the thread ended meanwhile
                cpu[int(task.name)] = seconds
        return cpu


class MachineCpu:
    """``with MachineCpu({"broker": pid}) as cpu: ...``, then ``cpu.cores()``: cores each named process
    (all its threads) and the whole machine (``"machine"``) kept busy over the span.

    The benchmark's broker and Redis run on the same cores as the scorer; in a plant they need not.
    """

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes
        self._start: dict[str, float] = {}
        self._end: dict[str, float] = {}
        self.wall_s = 0.0

    def __enter__(self) -> MachineCpu:
        self._start, self._started = self._read(), time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._end, self.wall_s = self._read(), time.perf_counter() - self._started

    def cores(self) -> dict[str, float]:
        wall = max(self.wall_s, 1e-9)
        both = [name for name in self._end if name in self._start]
        return {name: (self._end[name] - self._start[name]) / wall for name in both}

    def _read(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal: busy is all but idle, iowait and steal
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        seconds = {"machine": (f[0] + f[1] + f[2] + f[5] + f[6]) / tick}
        for name, pid in self.processes.items():
            used = _cpu_seconds(Path(f"/proc/{pid}/stat"), tick)
            if used is not None:  # None: not running, or not visible from here
                seconds[name] = used
        return seconds


def _cpu_seconds(stat: Path, tick: int) -> float | None:
    """User plus system CPU seconds from a /proc stat file (a thread's or a process's), or None when
    it cannot be read."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / tick
