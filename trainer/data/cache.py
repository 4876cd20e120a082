"""A disk cache of decoded and resized image arrays, for data sets that are slow to decode.

Decoding elpv's 2,624 PNGs takes ~3.5 s on two cores; loading the cached array takes ~0.05 s.
The key hashes everything the pixels depend on: the data, the size and channels, the source of
``agad_stream.preprocess`` and the OpenCV version, so a change to any of them misses the cache
instead of serving stale pixels. Directory: ``$AGAD_CACHE_DIR``, else
``$XDG_CACHE_HOME/agad-stream``, else ``~/.cache/agad-stream``. A cache that cannot be written
is skipped silently: it is an optimisation, never a requirement.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from agad_stream import preprocess


def cache_dir() -> Path:
    if os.environ.get("AGAD_CACHE_DIR"):
        return Path(os.environ["AGAD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agad-stream"


def cache_key(*parts: str | bytes | int) -> str:
    """A short hash of ``parts`` plus the preprocessing code and OpenCV version."""
    digest = hashlib.sha256()
    for part in (*parts, inspect.getsource(preprocess), cv2.__version__):
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cached_array(name: str, key: str, build: Callable[[], np.ndarray]) -> np.ndarray:
    """``build()``'s result, from ``<cache_dir>/<name>-<key>.npy`` when present."""
    path = cache_dir() / f"{name}-{key}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        pass
    array = build()
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)  # atomic: concurrent runs never read a half-written file
    except OSError:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return array
