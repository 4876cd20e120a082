"""``turns=auto``: a turn makes anomalies only where it changes the part, as the good parts show it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training_data import dataset_of, split_of
from trainer.agad.batches import epoch_batches
from trainer.agad.symmetry import CHANGES_PART, MIN_NORMALS, choose_turns
from trainer.agad.variant import preset
from trainer.api import TrainConfig, fit_agad, tensors
from trainer.data import DataSet


def _parts(kind: str, n: int, seed: int) -> torch.Tensor:
    """n jittered 32 x 32 parts in [-1, 1]: ``tee`` has a top and a side (a T), ``stripes`` only a
    direction (horizontal bars, like a cell's busbars), ``disc`` neither."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(float)
    images = np.full((n, 32, 32), -1.0)
    for image in images:
        dy, dx = rng.uniform(-2, 2, 2)
        if kind == "tee":
            image[(yy > 5 + dy) & (yy < 10 + dy) & (abs(xx - 16 - dx) < 11)] = 1.0
            image[(yy >= 10 + dy) & (yy < 27 + dy) & (abs(xx - 16 - dx) < 3)] = 1.0
        elif kind == "stripes":
            image[:] = np.cos((yy + 2 * dy) * 2 * np.pi / rng.uniform(7, 9))
        else:
            radius = np.hypot(yy - 15.5 - dy, xx - 15.5 - dx)
            image[radius < rng.uniform(8, 12)] = 1.0
    return torch.tensor(images, dtype=torch.float32)[:, None]


@pytest.mark.parametrize(("kind", "turns"), [("tee", "any"), ("stripes", "quarter"), ("disc", None)])
def test_turns_that_change_the_part_are_chosen_from_good_parts_alone(kind: str, turns: str | None) -> None:
    choice = choose_turns(_parts(kind, 200, 0), _parts(kind, 60, 1))
    assert choice.turns == turns
    assert set(choice.auroc) == {"quarter", "half"}
    changed = {name for name, value in choice.auroc.items() if value >= CHANGES_PART}
    assert changed == {"tee": {"quarter", "half"}, "stripes": {"quarter"}, "disc": set()}[kind]
    assert str(turns) in choice.reason or "no turn changes the part" in choice.reason


def test_too_few_good_parts_keep_quarter_turns() -> None:
    choice = choose_turns(_parts("disc", 200, 0), _parts("disc", MIN_NORMALS - 1, 1))
    assert choice.turns == "quarter" and choice.auroc == {} and "fewer than" in choice.reason


def _data(kind: str) -> DataSet:
    return dataset_of(
        split_of(_parts(kind, 96, 0), np.zeros(96)), split_of(_parts(kind, 40, 1), np.zeros(40))
    )


def test_training_with_auto_turns_records_the_choice_and_feeds_only_those_turns() -> None:
    variant = preset("default", batch_size=32, turned_anomalies=8, stretched_anomalies=4)
    assert variant.turns == "auto"
    for kind, expected in (("disc", None), ("tee", "any")):
        result = fit_agad(_data(kind), TrainConfig(variant, epochs=1), progress=False)
        assert result.turn_choice is not None and result.turn_choice.turns == expected
    # Where no turn changes the part, batches hold no turned part: good ones fill the room instead.
    disc = _data("disc")
    images, labels = tensors(disc.train), torch.from_numpy(disc.train.labels)
    batches = list(epoch_batches(images, labels, variant, None, torch.Generator().manual_seed(0)))
    assert all(int(y.sum()) == 4 for _, y in batches)  # the stretched ones only
    assert len(batches[0][1]) == 32  # 28 good parts and 4 stretched
    quarter = preset("default", batch_size=32, turned_anomalies=8, turns="quarter")
    fixed = fit_agad(disc, TrainConfig(quarter, epochs=1), progress=False)
    assert fixed.turn_choice is None  # a fixed setting measures nothing
