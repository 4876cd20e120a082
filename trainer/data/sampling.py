"""Seeded partitioning and the γ arithmetic shared by every data set.

γ = a / (n + a): a labelled anomalies beside n normal training images, so a = γ n / (1 − γ). The
validation split gets labelled anomalies in the same ratio to its normals (at least one when
γ > 0, so the F1-optimal threshold has something to work with).

Labelled anomalies come from a pool in a seeded order: train takes them from the front, val from
the back. Raising γ only adds images, the two never overlap, and the normal train/val split does
not depend on γ at all (it uses its own random stream).
"""

from __future__ import annotations

import numpy as np

from agad_stream.errors import AgadError

NORMAL_STREAM = 0
ANOMALY_STREAM = 1


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """An independent random stream per purpose, so one choice never shifts another."""
    return np.random.default_rng([seed, stream])


def check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma < 1.0:
        raise AgadError(
            f"gamma must be in [0, 1): it is a / (n + a), the labelled-anomaly fraction; got {gamma}"
        )


def anomalies_for(n_normal: int, gamma: float) -> int:
    """Labelled anomalies to put beside ``n_normal`` normals for ratio γ (≥ 1 when γ > 0)."""
    if gamma <= 0.0 or n_normal == 0:
        return 0
    return max(1, round(gamma * n_normal / (1.0 - gamma)))


def split_off(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (keep, held_out) positions of ``range(n)``; held out ≈ fraction·n, ≥ 1 when n ≥ 2."""
    if not 0.0 < fraction < 1.0:
        raise AgadError(f"val_fraction must be in (0, 1), got {fraction}")
    order = rng.permutation(n)
    held = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
    return np.sort(order[held:]), np.sort(order[:held])


def draw_labelled(
    pool_size: int, n_train: int, n_val: int, rng: np.random.Generator, *, what: str, cap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a pool of labelled anomalies for train (front of a seeded order) and val (back).

    Without ``cap`` a pool too small is an error naming the largest γ it allows; with ``cap`` the
    pool is shared in the requested proportion (val at least one when it has two or more).
    """
    if n_train + n_val > pool_size:
        if not cap:
            raise AgadError(
                f"{what}: gamma needs {n_train} + {n_val} labelled anomalies for train + val, "
                f"but the pool holds {pool_size}; use a smaller gamma"
            )
        requested = n_train + n_val
        n_val = min(pool_size - 1, max(1, round(pool_size * n_val / requested))) if pool_size >= 2 else 0
        n_train = pool_size - n_val
    order = rng.permutation(pool_size)
    return order[:n_train], order[pool_size - n_val :] if n_val else order[:0]
