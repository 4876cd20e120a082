"""AGAD training pieces: routed BatchNorm, the losses' directions, the loop, checkpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from agad_stream.model.generator import build_generator
from agad_stream.preprocess import to_model_input
from trainer.agad.augment import STRETCH_RANGE, random_flips, stretched
from trainer.agad.batchnorm import RoutedBatchNorm2d, main_route_state_dict, recompute_statistics, routed
from trainer.agad.loop import TrainData, _batches, selection_criterion, train_agad
from trainer.agad.loss import discriminator_loss, generator_loss, generator_terms
from trainer.agad.score_choice import SYNTHETIC, choose_score, pick_score, shipped_scorer
from trainer.agad.scoring import build_scorer, encoder_codes, knn_distance
from trainer.agad.synthetic import damage_some, synthetic_defects
from trainer.agad.variant import preset
from trainer.data import Split
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


def test_routed_batchnorm_keeps_pseudo_anomaly_statistics_apart() -> None:
    generator = build_generator("naive", 32, 1, norm=RoutedBatchNorm2d).train()
    layer = next(m for m in generator.modules() if isinstance(m, RoutedBatchNorm2d))
    generator(torch.randn(8, 1, 32, 32))
    main_mean = layer.main.running_mean.clone()
    with routed(generator, "aux"):
        generator(torch.randn(8, 1, 32, 32) * 5 + 3)
    assert torch.equal(layer.main.running_mean, main_mean)
    assert not torch.equal(layer.aux.running_mean, torch.zeros_like(layer.aux.running_mean))
    assert layer.route == "main"
    plain = build_generator("naive", 32, 1)
    plain.load_state_dict(main_route_state_dict(generator))  # the scorer's plain BatchNorm accepts it


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
        terms = generator_terms(x, x_hat, x_hat, logits, z, z + 0.1, variant)
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


def _data(with_anomalies: bool) -> TrainData:
    train = _blobs(96, 0)
    labels = torch.zeros(96, dtype=torch.long)
    if with_anomalies:
        train = torch.cat([train, _blobs(8, 1, anomalous=True)])
        labels = torch.cat([labels, torch.ones(8, dtype=torch.long)])
    val = torch.cat([_blobs(24, 2), _blobs(8, 3, anomalous=True)]) if with_anomalies else _blobs(24, 2)
    val_labels = np.array([0] * 24 + [1] * 8) if with_anomalies else np.zeros(24, dtype=int)
    test = torch.cat([_blobs(24, 4), _blobs(24, 5, anomalous=True)])
    return TrainData(train, labels, val, val_labels, test, np.array([0] * 24 + [1] * 24))


@pytest.mark.parametrize("batchnorm", ["shared", "separate", "recompute"])
def test_training_learns_normality_and_selects_an_epoch_on_validation(batchnorm: str) -> None:
    variant = preset("faithful", batch_size=32, detach_pseudo=True, batchnorm=batchnorm, lr=1e-3)
    result = train_agad(_data(False), variant, image_size=32, epochs=4, progress=False)
    history = result.history
    assert len(history) == 4
    assert history[-1]["con"] < history[0]["con"]  # it learned to reconstruct normal images
    chosen = min(history, key=lambda r: r["val_normal_score"])
    assert result.best_epoch == chosen["epoch"]
    assert set(history[0]["test_auroc"]) == {"l2", "topk", "maxpool", "disc", "latent"}
    assert not result.generator.training


def test_synthetic_selection_picks_the_epoch_that_best_separates_damaged_copies() -> None:
    variant = preset("quarter", batch_size=32, turned_anomalies=4, lr=1e-3, selection="synthetic")
    result = train_agad(_data(False), variant, image_size=32, epochs=3, progress=False)
    scores = [r["val_synthetic_auroc"] for r in result.history]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert result.best_epoch == int(np.argmax(scores)) + 1


def test_weight_average_is_what_gets_evaluated_and_returned() -> None:
    data = _data(False)
    plain = train_agad(
        data,
        preset("quarter", batch_size=32, turned_anomalies=4, lr=1e-3),
        image_size=32,
        epochs=2,
        progress=False,
    )
    variant = preset("quarter", batch_size=32, turned_anomalies=4, lr=1e-3, ema=0.5)
    averaged = train_agad(data, variant, image_size=32, epochs=2, progress=False)
    # Same seed, same steps: only the evaluated weights differ, so the losses agree and the
    # selection numbers do not.
    assert averaged.history[1]["con"] == pytest.approx(plain.history[1]["con"], rel=1e-4)
    assert averaged.history[1]["val_normal_score"] != pytest.approx(plain.history[1]["val_normal_score"])
    with pytest.raises(ValueError, match=r"ema=1\.0"):
        preset("default", ema=1.0)


def test_weight_average_holds_no_initial_weights_after_one_step() -> None:
    """One step per epoch (a small data set): the average is that step's weights, not mostly the init."""
    data = _data(False)
    variants = [preset("quarter", batch_size=128, lr=1e-3, ema=e) for e in (0.0, 0.98)]
    plain, averaged = (train_agad(data, v, image_size=32, epochs=1, progress=False) for v in variants)
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


def test_flips_turn_each_image_as_a_whole_along_the_chosen_axes_only() -> None:
    images = torch.randn(64, 1, 8, 8)
    assert torch.equal(random_flips(images, "none", torch.Generator().manual_seed(0)), images)
    for augment, allowed in (("hflip", 2), ("flips", 4)):
        out = random_flips(images, augment, torch.Generator().manual_seed(0))
        poses = [
            [torch.equal(o, pose) for pose in (x, x.flip(2), x.flip(1), x.flip(1).flip(2))]
            for o, x in zip(out, images, strict=True)
        ]
        assert all(any(p[:allowed]) for p in poses), augment  # every image is one allowed pose of itself
        assert len({p.index(True) for p in poses}) == allowed  # and every allowed pose occurs
        assert torch.equal(out, random_flips(images, augment, torch.Generator().manual_seed(0)))


def test_training_sees_flipped_images_only_when_asked() -> None:
    """One epoch of normals: the batch order is drawn before any flip, so flips alone can differ."""
    data = _data(False)
    symmetric = (data.train_images + data.train_images.flip(3)) / 2  # unchanged by a left-right flip
    mirrored = replace(data, train_images=symmetric)

    def first_epoch_loss(d: TrainData, augment: str) -> float:
        variant = preset("quarter", batch_size=32, turned_anomalies=0, augment=augment)
        return float(train_agad(d, variant, image_size=32, epochs=1, progress=False).history[0]["con"])

    assert first_epoch_loss(data, "hflip") != pytest.approx(first_epoch_loss(data, "none"), rel=1e-6)
    assert first_epoch_loss(mirrored, "hflip") == pytest.approx(first_epoch_loss(mirrored, "none"), rel=1e-6)


def test_repair_damages_only_the_chosen_share_of_normal_inputs() -> None:
    images = torch.rand(400, 1, 32, 32) * 2 - 1
    normal = torch.arange(400) < 300
    untouched = torch.Generator().manual_seed(0)
    state = untouched.get_state()
    assert damage_some(images, normal, 0.0, untouched) is images
    assert torch.equal(untouched.get_state(), state)  # repair=0 draws nothing: old runs replay as they were
    out = damage_some(images, normal, 0.5, torch.Generator().manual_seed(0))
    changed = (out != images).flatten(1).any(1)
    assert not bool(changed[~normal].any())  # labelled anomalies stay as they are
    assert 0.4 < float(changed[normal].float().mean()) < 0.6
    assert torch.equal(out, damage_some(images, normal, 0.5, torch.Generator().manual_seed(0)))
    everything = damage_some(images, normal, 1.0, torch.Generator().manual_seed(1))
    assert bool((everything != images).flatten(1).any(1)[normal].all())


def test_repair_feeds_damaged_inputs_but_keeps_clean_targets() -> None:
    """Batches pair damaged inputs with clean targets, and training on them changes what G learns."""
    data = _data(False)

    def first_epoch_loss(repair: float) -> float:
        variant = preset("quarter", batch_size=32, turned_anomalies=0, repair=repair)
        return float(train_agad(data, variant, image_size=32, epochs=1, progress=False).history[0]["con"])

    variant = preset("quarter", batch_size=32, turned_anomalies=0, repair=1.0)
    originals = data.train_images.flatten(1)
    for inputs, targets, labels in _batches(data, variant, None, torch.Generator().manual_seed(0)):
        assert all(bool((originals == t).all(1).any()) for t in targets.flatten(1))  # clean targets
        assert bool((inputs != targets).flatten(1).any(1)[labels == 0].all())  # damaged inputs

    assert first_epoch_loss(1.0) != pytest.approx(first_epoch_loss(0.0), rel=1e-3)
    with pytest.raises(ValueError, match=r"repair=1\.5"):
        preset("default", repair=1.5)


@pytest.mark.parametrize(("turns", "undo"), [("quarter", (1, 3)), ("half", (2,)), ("any", (1, 2, 3))])
def test_turned_anomalies_are_turned_normals_labelled_anomalous(turns: str, undo: tuple[int, ...]) -> None:
    data = _data(False)
    variant = preset("quarter", batch_size=32, turned_anomalies=8, turns=turns)
    normals = data.train_images.flatten(1)
    seen: set[int] = set()
    for inputs, targets, labels in _batches(data, variant, turns, torch.Generator().manual_seed(0)):
        assert len(labels) == 32 and int(labels.sum()) == 8 and torch.equal(inputs, targets)
        for image in targets[labels == 1]:
            back = [k for k in undo if bool((normals == image.rot90(k, (1, 2)).flatten()).all(1).any())]
            assert back  # a training normal, turned by one of this setting's turns
            seen.update(back)
    assert seen == set(undo)
    with pytest.raises(ValueError, match="turned_anomalies=16"):
        preset("quarter", batch_size=32, turned_anomalies=16)
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
    variant = preset("quarter", batch_size=32, turned_anomalies=4, stretched_anomalies=4)
    normals = data.train_images.flatten(1)
    for _inputs, targets, labels in _batches(data, variant, "quarter", torch.Generator().manual_seed(0)):
        assert len(labels) == 32 and labels.tolist()[-8:] == [1] * 8 and int(labels.sum()) == 8
        for image in targets[-4:]:  # the stretched ones: no training normal, nor a turned one
            assert not bool((normals == image.flatten()).all(1).any())
    with pytest.raises(ValueError, match="stretched_anomalies=8"):
        preset("quarter", batch_size=32, turned_anomalies=8, stretched_anomalies=8)


def test_supervised_batches_hold_labelled_anomalies_and_select_by_validation_auroc() -> None:
    variant = preset("faithful", batch_size=32, anomalies_per_batch=8, detach_pseudo=True, lr=1e-3)
    result = train_agad(_data(True), variant, image_size=32, epochs=3, progress=False)
    assert all("val_auroc" in r for r in result.history)
    assert result.best_epoch == max(result.history, key=lambda r: r["val_auroc"])["epoch"]


def test_epochs_are_not_chosen_on_a_handful_of_labelled_anomalies() -> None:
    variant = preset("default")
    few, enough = (
        np.r_[np.zeros(150, dtype=int), np.ones(n, dtype=int)] for n in (MIN_ANOMALIES - 1, MIN_ANOMALIES)
    )
    assert selection_criterion(variant, few) == "val_normal_score"
    assert selection_criterion(preset("default", selection="synthetic"), few) == "val_synthetic_auroc"
    assert selection_criterion(variant, enough) == "val_auroc"


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_resume_continues_from_the_checkpoint(tmp_path: Path, ema: float) -> None:
    variant = preset("faithful", batch_size=32, detach_pseudo=True, ema=ema)
    data = _data(False)
    checkpoint = tmp_path / "checkpoint.pt"
    straight = train_agad(data, variant, image_size=32, epochs=2, progress=False)
    train_agad(data, variant, image_size=32, epochs=1, checkpoint=checkpoint, progress=False)
    resumed = train_agad(data, variant, image_size=32, epochs=2, checkpoint=checkpoint, progress=False)
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
    with pytest.raises(ValueError, match="augment='rotate'"):
        preset("default", augment="rotate")
    with pytest.raises(ValueError, match="latent_dim=16"):
        preset("default", arch="unet", score="l2", latent_dim=16)
    assert preset("default", score="l2+knn_latent").score == "l2+knn_latent"


def test_a_batch_size_set_alone_keeps_the_shares_of_made_anomalies() -> None:
    full = preset("default")
    small = preset("default", batch_size=64)
    for count in ("anomalies_per_batch", "turned_anomalies", "stretched_anomalies"):
        assert getattr(small, count) * full.batch_size == getattr(full, count) * 64
    assert preset("default", batch_size=64, turned_anomalies=4).turned_anomalies == 4  # as given
    assert preset("unturned", batch_size=64).turned_anomalies == 0  # off stays off


def _serving_val(data: TrainData) -> tuple[Split, torch.Tensor]:
    """``data``'s validation images as stored pixels (a Split) and as the serving input they become."""
    pixels = ((data.val_images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    kinds = np.where(data.val_labels == 1, "square", "good")
    split = Split(pixels, data.val_labels, kinds, [str(i) for i in range(len(pixels))])
    return split, torch.from_numpy(to_model_input(pixels))


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
    variant = preset("quarter", batch_size=32, turned_anomalies=4, anomalies_per_batch=4)
    result = train_agad(data, variant, image_size=32, epochs=1, progress=False)
    val, val_x = _serving_val(data)  # what the choice scores: the serving input
    normal, anomalous = data.train_images[data.train_labels == 0], data.train_images[data.train_labels == 1]
    val_normal = val_x[:24]
    scorer, choice = shipped_scorer(
        result.generator, "auto", val, normal, val_normal, anomalous, with_memory=True
    )
    assert set(choice.val_auroc) == {"l2", "topk", "maxpool", "knn_latent", "l2+knn_latent", "knn_contrast"}
    for method, value in choice.val_auroc.items():
        candidate = build_scorer(result.generator, method, normal, val_normal, train_anomalous=anomalous)
        with torch.inference_mode():
            scores = candidate(val_x)[0].numpy()
        assert value == pytest.approx(auroc(data.val_labels, scores))
    assert choice == pick_score(choice.val_auroc, n_anomalous=8, n_normal=24, standing="knn_contrast")
    assert scorer.spec().method == choice.method
    # Without labelled training anomalies there is no contrast to build; without a code, no memory.
    no_defects = choose_score(result.generator, val, normal, val_normal, anomalous[:0], with_memory=True)
    assert "knn_contrast" not in no_defects.val_auroc
    assert no_defects == pick_score(no_defects.val_auroc, n_anomalous=8, n_normal=24, standing="l2")
    no_memory = choose_score(result.generator, val, normal, val_normal, anomalous, with_memory=False)
    assert set(no_memory.val_auroc) == {"l2", "topk", "maxpool"}
    # A score the variant sets is shipped as it is, and the record says nothing was measured.
    fixed, fixed_choice = shipped_scorer(
        result.generator, "maxpool", val, normal, val_normal, anomalous, with_memory=True
    )
    assert fixed.spec().method == "maxpool"
    assert (fixed_choice.val_auroc, fixed_choice.evidence) == ({}, None)


def test_without_labelled_defects_auto_compares_scores_on_damaged_validation_normals() -> None:
    data = _data(with_anomalies=False)
    result = train_agad(
        data, preset("quarter", batch_size=32, turned_anomalies=4), image_size=32, epochs=1, progress=False
    )
    val, val_normal = _serving_val(data)
    normal, none = data.train_images, data.train_images[:0]
    scorer, choice = shipped_scorer(result.generator, "auto", val, normal, val_normal, none, with_memory=True)
    assert choice.evidence == SYNTHETIC and "synthetically damaged" in choice.reason
    assert set(choice.val_auroc) == {"l2", "topk", "maxpool", "knn_latent", "l2+knn_latent"}
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
    few = choose_score(result.generator, val, normal, val_normal, data.train_images[:4], with_memory=True)
    assert (few.method, few.val_auroc, few.evidence) == ("knn_contrast", {}, None)
    # Trained with turned normals, l2+knn_latent stands, and pixel damage is not asked to judge it.
    turned = choose_score(result.generator, val, normal, val_normal, none, with_memory=True, turned=True)
    assert (turned.method, turned.val_auroc) == ("l2+knn_latent", {})
    plain = choose_score(result.generator, val, normal, val_normal, none, with_memory=False, turned=True)
    assert plain.method in ("l2", "topk", "maxpool")  # no code to build it on
