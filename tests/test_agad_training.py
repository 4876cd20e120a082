"""AGAD training pieces: routed BatchNorm, the losses' directions, the loop, checkpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from agad_stream.model.card import ALL_SCORES
from agad_stream.model.generator import build_generator
from tests.training_data import dataset_of, split_of
from trainer.agad.augment import STRETCH_RANGE, stretched
from trainer.agad.batches import epoch_batches
from trainer.agad.batchnorm import recompute_statistics
from trainer.agad.evaluation import selection_criterion
from trainer.agad.loss import discriminator_loss, generator_loss, generator_terms
from trainer.agad.score_choice import SYNTHETIC, choose_score, pick_score, shipped_scorer
from trainer.agad.scoring import build_scorer, encoder_codes, knn_distance
from trainer.agad.synthetic import synthetic_defects
from trainer.agad.variant import Variant, preset
from trainer.api import AgadFit, TrainConfig, fit_agad, tensors
from trainer.data import DataSet, Split
from trainer.metrics import MIN_ANOMALIES, auroc


def _blobs(n: int, seed: int, anomalous: bool = False) -> torch.Tensor:
    """Smooth 32x32 images; anomalies carry a bright square the normals never have."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    images = []
    for _ in range(n):
        a, b = rng.uniform(-1, 1, 2)
        image = np.tanh(a * xx + b * yy) * 0.5
        if anomalous:
            r, c = rng.integers(4, 24, 2)
            image[r : r + 6, c : c + 6] = 1.0
        images.append(image)
    return torch.tensor(np.array(images), dtype=torch.float32)[:, None]


def test_recomputed_statistics_reflect_only_the_given_images() -> None:
    generator = build_generator("naive", 32, 1)
    images = torch.full((16, 1, 32, 32), 0.5)
    recompute_statistics(generator, iter([images]))
    first = next(m for m in generator.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(first.num_batches_tracked) == 1
    assert not first.training or generator.training


def test_anomalous_samples_reward_failure_and_normal_samples_reward_reconstruction() -> None:
    variant = preset("faithful")
    x = torch.rand(4, 1, 32, 32)
    good = x + 0.01
    bad = x + 0.5
    logits, z = torch.zeros(4), torch.zeros(4, 100)
    normal, anomalous = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)

    def loss(x_hat: torch.Tensor, labels: torch.Tensor) -> float:
        terms = generator_terms(x, x_hat, x_hat, logits, z, z + 0.1)
        return float(generator_loss(terms, labels, variant))

    assert loss(good, normal) < loss(bad, normal)
    assert loss(bad, anomalous) < loss(good, anomalous)
    assert torch.isfinite(torch.tensor(loss(x, anomalous)))  # reciprocal of a zero error is guarded


def test_discriminator_loss_treats_anomalies_as_fake() -> None:
    confident_real = torch.full((2,), 8.0)
    fake = torch.full((2,), -8.0)
    normal, anomalous = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    assert float(discriminator_loss(confident_real, fake, normal)) < 0.01
    assert float(discriminator_loss(confident_real, fake, anomalous)) > 5
    assert float(discriminator_loss(-confident_real, fake, anomalous)) < 0.01


def _data(with_anomalies: bool) -> DataSet:
    train = _blobs(96, 0)
    labels = np.zeros(96, dtype=int)
    if with_anomalies:
        train = torch.cat([train, _blobs(8, 1, anomalous=True)])
        labels = np.r_[labels, np.ones(8, dtype=int)]
    val = torch.cat([_blobs(24, 2), _blobs(8, 3, anomalous=True)]) if with_anomalies else _blobs(24, 2)
    val_labels = np.array([0] * 24 + [1] * 8) if with_anomalies else np.zeros(24, dtype=int)
    test = torch.cat([_blobs(24, 4), _blobs(24, 5, anomalous=True)])
    return dataset_of(
        split_of(train, labels), split_of(val, val_labels), split_of(test, np.r_[[0] * 24, [1] * 24])
    )


def _fit(data: DataSet, variant: Variant, epochs: int, **options: object) -> AgadFit:
    return fit_agad(data, TrainConfig(variant, epochs=epochs), progress=False, test=data.test, **options)


@pytest.mark.parametrize("recompute", [False, True])
def test_training_learns_normality_and_selects_an_epoch_on_validation(recompute: bool) -> None:
    variant = preset("faithful", batch_size=32, detach_pseudo=True, recompute_batchnorm=recompute, lr=1e-3)
    result = _fit(_data(False), variant, 4)
    history = result.fit.history
    assert len(history) == 4
    assert history[-1]["con"] < history[0]["con"]  # it learned to reconstruct normal images
    chosen = min(history, key=lambda r: r["val_normal_score"])
    assert result.fit.best_epoch == chosen["epoch"]
    assert set(history[0]["test_auroc"]) == {"l2", "topk", "maxpool", "disc", "latent"}
    assert 0.0 <= history[0]["val_synthetic_auroc"] <= 1.0
    assert not result.generator.training


def test_weight_average_is_what_gets_evaluated_and_returned() -> None:
    data = _data(False)
    plain = _fit(data, preset("default", batch_size=32, lr=1e-3, ema=0.0), 2).fit
    averaged = _fit(data, preset("default", batch_size=32, lr=1e-3, ema=0.5), 2).fit
    # Same seed, same steps: only the evaluated weights differ, so the losses agree and the
    # selection numbers do not.
    assert averaged.history[1]["con"] == pytest.approx(plain.history[1]["con"], rel=1e-4)
    assert averaged.history[1]["val_normal_score"] != pytest.approx(plain.history[1]["val_normal_score"])
    with pytest.raises(ValueError, match=r"ema=1\.0"):
        preset("default", ema=1.0)


def test_weight_average_holds_no_initial_weights_after_one_step() -> None:
    """One step per epoch (a small data set): the average is that step's weights, not mostly the init."""
    data = _data(False)
    variants = [preset("default", batch_size=128, lr=1e-3, ema=e) for e in (0.0, 0.98)]
    plain, averaged = (_fit(data, v, 1) for v in variants)
    for name, value in plain.generator.state_dict().items():
        assert torch.allclose(averaged.generator.state_dict()[name].float(), value.float(), atol=1e-6), name


def test_synthetic_defects_damage_a_small_part_of_each_image_reproducibly() -> None:
    images = _blobs(10, 0)
    damaged = synthetic_defects(images, seed=3)
    changed = (damaged - images).abs().gt(1e-6).flatten(1).float().mean(1)
    assert damaged.shape == images.shape and damaged.abs().max() <= 1.0
    assert bool(((changed > 0) & (changed < 0.3)).all()), changed
    assert torch.equal(damaged, synthetic_defects(images, seed=3))
    assert not torch.equal(damaged, synthetic_defects(images, seed=4))


@pytest.mark.parametrize(("turns", "undo"), [("quarter", (1, 3)), ("half", (2,)), ("any", (1, 2, 3))])
def test_turned_anomalies_are_turned_normals_labelled_anomalous(turns: str, undo: tuple[int, ...]) -> None:
    data = _data(False)
    variant = preset("default", batch_size=32, turned_anomalies=8, stretched_anomalies=0, turns=turns)
    images, labels = tensors(data.train), torch.from_numpy(data.train.labels)
    normals = images.flatten(1)
    seen: set[int] = set()
    for x, y in epoch_batches(images, labels, variant, turns, torch.Generator().manual_seed(0)):
        assert len(y) == 32 and int(y.sum()) == 8
        for image in x[y == 1]:
            back = [k for k in undo if bool((normals == image.rot90(k, (1, 2)).flatten()).all(1).any())]
            assert back  # a training normal, turned by one of this setting's turns
            seen.update(back)
    assert seen == set(undo)
    with pytest.raises(ValueError, match="turned_anomalies=16"):
        preset("default", batch_size=32, turned_anomalies=16, stretched_anomalies=0)
    with pytest.raises(ValueError, match="turns='sideways'"):
        preset("default", turns="sideways")


def test_stretched_anomalies_change_one_side_of_a_part_within_range() -> None:
    # A bright 16 x 16 square on a dark frame: after stretching, its extent along exactly one axis
    # changes by a factor within STRETCH_RANGE, and the frame around it stays the background.
    images = torch.full((64, 1, 64, 64), -1.0)
    images[:, :, 24:40, 24:40] = 1.0
    out = stretched(images, torch.Generator().manual_seed(0))
    low, high = STRETCH_RANGE
    widened = {True: 0, False: 0}
    for image in out[:, 0]:
        width, height = float((image > 0).any(0).sum()), float((image > 0).any(1).sum())
        ratio, other = (width / 16, height / 16) if height == 16 else (height / 16, width / 16)
        assert other == 1.0  # one axis only
        assert low - 0.15 <= max(ratio, 1 / ratio) <= high + 0.15  # within range, up to whole pixels
        widened[ratio > 1] += 1
        assert float(image[0, 0]) == -1.0 and float(image[-1, -1]) == -1.0
    assert widened[True] and widened[False]  # both stretched and squeezed are drawn

    data = _data(False)
    variant = preset("default", batch_size=32, turned_anomalies=4, stretched_anomalies=4)
    images, labels = tensors(data.train), torch.from_numpy(data.train.labels)
    normals = images.flatten(1)
    for x, y in epoch_batches(images, labels, variant, "quarter", torch.Generator().manual_seed(0)):
        assert len(y) == 32 and y.tolist()[-8:] == [1] * 8 and int(y.sum()) == 8
        for image in x[-4:]:  # the stretched ones: no training normal, nor a turned one
            assert not bool((normals == image.flatten()).all(1).any())
    with pytest.raises(ValueError, match="stretched_anomalies=8"):
        preset("default", batch_size=32, turned_anomalies=8, stretched_anomalies=8)


def test_stretching_waits_for_enough_good_images_and_the_fit_says_what_trained() -> None:
    rule = preset(
        "default", batch_size=32, turned_anomalies=4, stretched_anomalies=4, stretch_from_normals=97
    )
    few, why = rule.for_training_set(96)
    assert few.stretched_anomalies == 0 and few.stretch_from_normals == 97
    assert why is not None and "96 good training images" in why and "stretch_from_normals=97" in why
    assert rule.for_training_set(97) == (rule, None)

    data = _data(False)  # 96 training normals
    assert _fit(data, rule, 1).variant == few
    enough = replace(rule, stretch_from_normals=96)
    assert _fit(data, enough, 1).variant == enough
    with pytest.raises(ValueError, match="stretch_from_normals=-1"):
        replace(rule, stretch_from_normals=-1)


def test_supervised_batches_stretch_normals_never_the_labelled_anomalies() -> None:
    # Normals are a bright square on a dark frame; labelled anomalies are all bright, so a stretched
    # anomaly would stay all bright while a stretched normal keeps its dark frame.
    normals = torch.full((48, 1, 16, 16), -1.0)
    normals[:, :, 5:11, 5:11] = 1.0
    images = torch.cat([normals, torch.ones(8, 1, 16, 16)])
    labels = torch.cat([torch.zeros(48, dtype=torch.long), torch.ones(8, dtype=torch.long)])
    variant = preset(
        "default", batch_size=32, turned_anomalies=0, stretched_anomalies=4, anomalies_per_batch=8
    )
    batches = list(epoch_batches(images, labels, variant, None, torch.Generator().manual_seed(0)))
    assert len(batches) == 3  # 20 normals, 8 labelled and 4 stretched anomalies each
    for x, y in batches:
        assert int(y.sum()) == 12
        assert bool((x[-4:].flatten(1).amin(1) < 0).all())  # stretched from normals


def test_supervised_batches_hold_labelled_anomalies_and_select_by_validation_auroc() -> None:
    variant = preset("faithful", batch_size=32, anomalies_per_batch=8, detach_pseudo=True, lr=1e-3)
    result = _fit(_data(True), variant, 3).fit
    assert all("val_auroc" in r for r in result.history)
    assert result.best_epoch == max(result.history, key=lambda r: r["val_auroc"])["epoch"]


def test_epochs_are_not_chosen_on_a_handful_of_labelled_anomalies() -> None:
    few, enough = (
        np.r_[np.zeros(150, dtype=int), np.ones(n, dtype=int)] for n in (MIN_ANOMALIES - 1, MIN_ANOMALIES)
    )
    assert selection_criterion(few).key == "val_normal_score" and selection_criterion(few).lower_is_better
    assert selection_criterion(enough).key == "val_auroc"


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_resume_continues_from_the_checkpoint(tmp_path: Path, ema: float) -> None:
    variant = preset("faithful", batch_size=32, detach_pseudo=True, ema=ema)
    data = _data(False)
    checkpoint = tmp_path / "checkpoint.pt"
    straight = _fit(data, variant, 2).fit
    _fit(data, variant, 1, checkpoint=checkpoint)
    resumed = _fit(data, variant, 2, checkpoint=checkpoint).fit
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.history[1]["con"] == pytest.approx(straight.history[1]["con"], rel=1e-4)
    # The evaluated model (the weight average when ema > 0) resumes too.
    assert resumed.history[1]["val_normal_score"] == pytest.approx(
        straight.history[1]["val_normal_score"], rel=1e-4
    )


def test_latent_knn_distance_is_zero_for_bank_members_and_grows_away_from_them() -> None:
    generator = build_generator("naive", 32, 1).eval()
    images = torch.rand(12, 1, 32, 32) * 2 - 1
    codes = encoder_codes(generator, images, batch_size=5)
    assert codes.shape == (12, 100)
    bank = codes[:8]
    own = knn_distance(bank, bank, k=1, chunk=3)
    np.testing.assert_allclose(own, 0.0, atol=1e-3)
    shifted = knn_distance(bank + 10.0, bank, k=1)
    assert (shifted > 10.0 - 1e-3).all()
    # k nearest: the mean over more neighbours is never below the nearest one.
    assert (knn_distance(codes[8:], bank, k=3) >= knn_distance(codes[8:], bank, k=1) - 1e-6).all()


def test_build_scorer_gives_memory_scores_their_memory_and_validation_reference() -> None:
    generator = build_generator("naive", 32, 1).eval()
    train, val = torch.rand(20, 1, 32, 32) * 2 - 1, torch.rand(9, 1, 32, 32) * 2 - 1
    scorer = build_scorer(generator, "l2+knn_latent", train, val)
    assert scorer.memory is not None and scorer.memory.shape == (20, 100)
    with torch.inference_mode():
        scores, _ = scorer(val)
    # Standardised on validation normals: on those very images the summed score has mean ~0.
    assert abs(float(scores.mean())) < 1e-3
    assert build_scorer(generator, "l2", train, val).memory is None
    defects = torch.rand(3, 1, 32, 32) * 2 - 1
    contrast = build_scorer(generator, "knn_contrast", train, val, train_anomalous=defects)
    assert contrast.defect_memory is not None and contrast.defect_memory.shape == (3, 100)
    with torch.inference_mode():
        near_defect, _ = contrast(defects)
        near_normal, _ = contrast(train[:3])
    # A labelled defect sits on its own code (distance ~0), a training normal on its own.
    assert (near_defect > near_normal).all()


def test_variant_refuses_choices_that_would_fail_after_training() -> None:
    with pytest.raises(ValueError, match="score='l3'"):
        preset("default", score="l3")
    with pytest.raises(ValueError, match="naive generator"):
        preset("default", arch="unet", score="knn_latent")
    with pytest.raises(TypeError, match="augment"):
        preset("default", augment="hflip")  # tried and rejected: under the tag ablations-2026-12
    assert preset("default", score="l2+knn_latent").score == "l2+knn_latent"


def test_a_batch_size_set_alone_keeps_the_shares_of_made_anomalies() -> None:
    full = preset("default")
    small = preset("default", batch_size=64)
    for count in ("anomalies_per_batch", "turned_anomalies", "stretched_anomalies"):
        assert getattr(small, count) * full.batch_size == getattr(full, count) * 64
    assert preset("default", batch_size=64, turned_anomalies=4).turned_anomalies == 4  # as given
    assert preset("faithful", batch_size=64).turned_anomalies == 0  # off stays off


def _serving_val(data: DataSet) -> tuple[Split, torch.Tensor]:
    """``data``'s validation split and the serving input it becomes."""
    return data.val, tensors(data.val)


def _train_tensors(data: DataSet) -> tuple[torch.Tensor, torch.Tensor]:
    images = tensors(data.train)
    return images[data.train.labels == 0], images[data.train.labels == 1]


def test_score_choice_keeps_the_standing_score_unless_another_clearly_beats_it() -> None:
    measured = {"l2": 0.80, "topk": 0.90, "maxpool": 0.90, "disc": 0.99, "knn_contrast": 0.85}
    # Eight defects: 0.90 against 0.85 is well within chance.
    few = pick_score(measured, n_anomalous=8, n_normal=150, standing="knn_contrast")
    assert few.method == "knn_contrast" and "closest: topk" in few.reason
    assert set(few.val_auroc) == {"l2", "topk", "maxpool", "knn_contrast"}  # disc is not deployable
    # Two hundred defects: the same gap is not; topk comes before maxpool on a tie.
    many = pick_score(measured, n_anomalous=200, n_normal=2000, standing="knn_contrast")
    assert many.method == "topk" and "beats the standing knn_contrast" in many.reason
    too_few = pick_score(measured, n_anomalous=MIN_ANOMALIES - 1, n_normal=150, standing="l2")
    assert (too_few.method, too_few.val_auroc) == ("l2", {})
    with pytest.raises(ValueError, match="'knn_contrast' was not measured"):
        pick_score({"l2": 0.8}, n_anomalous=8, n_normal=150, standing="knn_contrast")


def test_auto_score_is_measured_on_validation_with_the_scorers_it_would_ship() -> None:
    data = _data(with_anomalies=True)
    variant = preset(
        "default", batch_size=32, turned_anomalies=4, stretched_anomalies=0, anomalies_per_batch=4
    )
    result = _fit(data, variant, 1)
    val, val_x = _serving_val(data)  # what the choice scores: the serving input
    normal, anomalous = _train_tensors(data)
    val_normal = val_x[:24]
    scorer, choice = shipped_scorer(
        result.generator, "auto", val, normal, val_normal, anomalous, with_memory=True
    )
    assert set(choice.val_auroc) == set(ALL_SCORES)
    for method, value in choice.val_auroc.items():
        candidate = build_scorer(result.generator, method, normal, val_normal, train_anomalous=anomalous)
        with torch.inference_mode():
            scores = candidate(val_x)[0].numpy()
        assert value == pytest.approx(auroc(data.val.labels, scores))
    assert choice == pick_score(choice.val_auroc, n_anomalous=8, n_normal=24, standing="knn_contrast")
    assert scorer.spec().method == choice.method
    # Without labelled training anomalies there is no contrast to build; without a code, no memory.
    no_defects = choose_score(result.generator, val, normal, val_normal, anomalous[:0], with_memory=True)
    assert "knn_contrast" not in no_defects.val_auroc
    assert no_defects == pick_score(no_defects.val_auroc, n_anomalous=8, n_normal=24, standing="l2")
    no_memory = choose_score(result.generator, val, normal, val_normal, anomalous, with_memory=False)
    assert set(no_memory.val_auroc) == {"l2", "topk", "maxpool", "local_z"}
    # A score the variant sets is shipped as it is, and the record says nothing was measured.
    fixed, fixed_choice = shipped_scorer(
        result.generator, "maxpool", val, normal, val_normal, anomalous, with_memory=True
    )
    assert fixed.spec().method == "maxpool"
    assert (fixed_choice.val_auroc, fixed_choice.evidence) == ({}, None)


def test_without_labelled_defects_auto_compares_scores_on_damaged_validation_normals() -> None:
    data = _data(with_anomalies=False)
    result = _fit(data, preset("default", batch_size=32, turned_anomalies=4, stretched_anomalies=0), 1)
    val, val_normal = _serving_val(data)
    normal, none = tensors(data.train), tensors(data.train)[:0]
    scorer, choice = shipped_scorer(result.generator, "auto", val, normal, val_normal, none, with_memory=True)
    assert choice.evidence == SYNTHETIC and "synthetically damaged" in choice.reason
    assert set(choice.val_auroc) == set(ALL_SCORES) - {"knn_contrast"}
    images = torch.cat([val_normal, synthetic_defects(val_normal)])
    labels = np.r_[np.zeros(24, dtype=int), np.ones(24, dtype=int)]
    for method, value in choice.val_auroc.items():
        candidate = build_scorer(result.generator, method, normal, val_normal)
        with torch.inference_mode():
            assert value == pytest.approx(auroc(labels, candidate(images)[0].numpy()))
    assert choice == pick_score(
        choice.val_auroc, n_anomalous=24, n_normal=24, standing="l2", evidence=SYNTHETIC
    )
    assert scorer.spec().method == choice.method
    # Trained with labelled defects but too few in validation: knn_contrast stands, nothing measured.
    few = choose_score(result.generator, val, normal, val_normal, normal[:4], with_memory=True)
    assert (few.method, few.val_auroc, few.evidence) == ("knn_contrast", {}, None)
    # Trained with turned normals, knn_or_local stands, and pixel damage is not asked to judge it.
    turned = choose_score(result.generator, val, normal, val_normal, none, with_memory=True, turned=True)
    assert (turned.method, turned.val_auroc) == ("knn_or_local", {})
    plain = choose_score(result.generator, val, normal, val_normal, none, with_memory=False, turned=True)
    assert plain.method in ("l2", "topk", "maxpool", "local_z")  # no code to build it on
