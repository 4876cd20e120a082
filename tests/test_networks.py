"""Generators, discriminator and scores: sizes, shapes and the paper's parameter counts."""

from __future__ import annotations

import pytest
import torch

from agad_stream.model.generator import build_generator
from agad_stream.model.score import (
    AnomalyScorer,
    anomaly_score,
    heatmap,
    latent_knn,
    local_z,
    pixel_reference,
    residual_map,
)
from trainer.agad.discriminator import Discriminator

# Paper, Table 8: parameters at 32x32 grayscale.
PAPER_PARAMETERS = {"naive": 2.04e6, "unet": 7.76e6, "unetpp": 9.04e6}


@pytest.mark.parametrize("arch", sorted(PAPER_PARAMETERS))
def test_parameter_counts_match_the_paper_within_5_percent(arch: str) -> None:
    count = sum(p.numel() for p in build_generator(arch, 32, 1).parameters())  # type: ignore[arg-type]
    paper = PAPER_PARAMETERS[arch]
    print(
        f"{arch}: {count / 1e6:.3f} M parameters "
        f"(paper {paper / 1e6:.2f} M, {100 * (count / paper - 1):+.1f} %)"
    )
    assert abs(count / paper - 1) < 0.05


@pytest.mark.parametrize("arch", ["naive", "unet", "unetpp"])
@pytest.mark.parametrize(("size", "channels"), [(32, 1), (64, 3), (128, 1)])
def test_generator_reconstructs_the_input_shape_in_tanh_range(arch: str, size: int, channels: int) -> None:
    generator = build_generator(arch, size, channels).eval()  # type: ignore[arg-type]
    x = torch.rand(2, channels, size, size) * 2 - 1
    with torch.no_grad():
        y = generator(x)
    assert y.shape == x.shape
    assert float(y.abs().max()) <= 1.0


def test_largest_supported_input_runs() -> None:
    generator = build_generator("naive", 256, 3).eval()
    with torch.no_grad():
        assert generator(torch.zeros(1, 3, 256, 256)).shape == (1, 3, 256, 256)


@pytest.mark.parametrize("size", [16, 48, 512])
def test_unsupported_sizes_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        build_generator("naive", size, 1)


def test_discriminator_returns_logit_and_feature() -> None:
    logit, feature = Discriminator(64, 3)(torch.randn(4, 3, 64, 64))
    assert logit.shape == (4,)
    assert feature.shape == (4, 100)


def test_scores_rank_a_corrupted_image_above_its_clean_twin() -> None:
    x = torch.zeros(2, 1, 32, 32)
    reconstruction = x.clone()
    x[1, 0, 10:14, 10:14] = 1.0  # a small defect the reconstruction does not show
    for method in ("l2", "topk", "maxpool"):
        scores = anomaly_score(x, reconstruction, method)  # type: ignore[arg-type]
        assert scores[0] == 0 and scores[1] > 0, method
    assert float(anomaly_score(x, reconstruction, "l2")[1]) == pytest.approx(4.0)  # sqrt(16 pixels * 1^2)
    heat = heatmap(residual_map(x, reconstruction))
    assert heat.shape == (2, 1, 32, 32)
    assert heat[1, 0, 11, 11] == 1.0 and heat[1, 0, 0, 0] == 0.0
    # Each pixel shows its 3x3 neighbourhood's mean: the corner beside the defect sees one defect pixel.
    assert float(heat[1, 0, 9, 9]) == pytest.approx(1 / 9)


def test_local_z_counts_a_residual_in_spreads_of_that_pixel_on_normals() -> None:
    normals = torch.rand(50, 1, 8, 8) * 0.1
    normals[:, :, 0, :] += 0.5  # a row every normal reconstructs badly: an edge, not a defect
    reference = pixel_reference(normals)
    assert reference.shape == (2, 1, 8, 8) and (reference[1] > 0).all()
    edge_as_usual = normals[:1].clone()
    mark = normals[:1].clone()
    mark[0, 0, 4, 4] = 0.6  # as bright as the edge, where no normal is ever that bright
    scores = local_z(torch.cat([edge_as_usual, mark]), reference)
    assert scores[1] > 5 * scores[0].clamp_min(1)
    # A pixel no normal varies at is floored by the image's mean spread, not divided by ~0.
    flat = pixel_reference(torch.zeros(10, 1, 4, 4) + torch.linspace(0, 1, 10).view(10, 1, 1, 1) * 0.01)
    assert float(flat[1].min()) > 0


def test_scorer_returns_scores_and_heatmaps_of_input_size() -> None:
    scorer = AnomalyScorer(build_generator("naive", 32, 3)).eval()
    with torch.no_grad():
        scores, heat = scorer(torch.randn(5, 3, 32, 32))
    assert scores.shape == (5,)
    assert heat.shape == (5, 1, 32, 32)


def test_memory_scores_need_an_encoder_bottleneck_and_a_memory() -> None:
    memory = torch.randn(10, 100)
    reference = {"l2": (1.0, 1.0), "knn_latent": (1.0, 1.0)}
    with pytest.raises(ValueError, match="encoder bottleneck"):
        AnomalyScorer(build_generator("unet", 32, 1), "knn_latent", memory=memory)
    with pytest.raises(ValueError, match="latent memory"):
        AnomalyScorer(build_generator("naive", 32, 1), "knn_latent")
    with pytest.raises(ValueError, match="validation reference"):
        AnomalyScorer(build_generator("naive", 32, 1), "l2+knn_latent", memory=memory)
    with pytest.raises(ValueError, match="labelled anomalies"):
        AnomalyScorer(build_generator("naive", 32, 1), "knn_contrast", memory=memory)
    with pytest.raises(ValueError, match="per-pixel reference"):
        AnomalyScorer(build_generator("unet", 32, 1), "local_z")
    scorer = AnomalyScorer(
        build_generator("naive", 32, 1), "l2+knn_latent", memory=memory, reference=reference
    )
    assert scorer.spec().reference == reference and scorer.spec().memory_k == 5


def test_knn_or_local_takes_whichever_part_is_further_from_normal() -> None:
    generator = build_generator("naive", 32, 1).eval()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        code = generator.encoder(x)
        residual = residual_map(x, generator.decoder(code))
    pixels = pixel_reference(residual)
    parts = {"l2": (0.0, 1.0), "knn_latent": (0.0, 1.0)}
    with pytest.raises(ValueError, match="validation reference"):
        AnomalyScorer(generator, "knn_or_local", memory=code.flatten(1)[:3].repeat(2, 1), reference=parts)

    memory = torch.randn(10, 100)

    def score(local: tuple[float, float], summed: tuple[float, float]) -> torch.Tensor:
        reference = parts | {"local_z": local, "l2+knn_latent": summed}
        scorer = AnomalyScorer(generator, "knn_or_local", memory=memory, reference=reference, pixels=pixels)
        with torch.no_grad():
            return scorer(x)[0]

    alone = local_z(residual, pixels)
    # With the summed part pushed far below, the score is the standardised local part, and back.
    torch.testing.assert_close(score((1.0, 2.0), (1e9, 1.0)), (alone - 1.0) / 2.0)
    with torch.no_grad():
        code_part = anomaly_score(x, generator.decoder(code)) + latent_knn(code.flatten(1), memory)
    torch.testing.assert_close(score((1e9, 1.0), (3.0, 4.0)), (code_part - 3.0) / 4.0)


def test_latent_knn_matches_pairwise_distances() -> None:
    codes, memory = torch.randn(7, 100), torch.randn(30, 100)
    expected = torch.cdist(codes, memory, compute_mode="donot_use_mm_for_euclid_dist")
    expected = expected.sort(dim=1).values[:, :5].mean(dim=1)
    torch.testing.assert_close(latent_knn(codes, memory, 5), expected, rtol=1e-4, atol=1e-4)
