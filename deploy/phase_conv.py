"""The naive decoder's transposed convolutions rewritten as ordinary ones, for INT8 on CPUs.

A ``ConvTranspose2d`` with kernel 4, stride 2 and padding 1 computes each of the four output
phases (even/odd row × even/odd column) from a 2x2 window of its input. So it equals one 2x2
convolution with padding 1 and four times the output channels (one group per phase), whose
(H + 1) x (W + 1) output each phase reads at its own offset. With the phases' groups laid out in
swapped order (odd phases first), interleaving the four groups puts every phase at its place
shifted by one pixel, and a single crop of that border finishes it. Same multiply-adds, same
result to float rounding, but in ops that ONNX Runtime runs in INT8 (QLinearConv, then a
Transpose and one Slice on uint8); its transposed convolution stays in float32 even in a
quantised graph.

The interleaving is written channels-last: ONNX Runtime runs its 8-bit convolutions on NHWC
data and cancels the layout transposes it would put around them against the ones written here,
so each pixel moves once, as a block of all its channels (a DepthToSpace on NCHW data, and the
two layout transposes around it, move one byte at a time).

What follows the transposed convolution in a Sequential moves in front of the interleaving, so
that in an INT8 graph everything from the convolution to the next one stays in 8 bits: a BatchNorm
is folded into the phase convolution's weights and bias (ONNX Runtime would fold it into a
ConvTranspose, but not across the interleaving, where it would run in float32 between a dequantise
and a quantise), and a ReLU or LeakyReLU after it is applied before the interleaving, which only
moves pixels (ONNX Runtime then fuses it into the 8-bit convolution).
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)
"""Element-wise activations that may be applied before the interleaving instead of after it."""


class PhaseConvTranspose(nn.Module):
    """Drop-in equivalent of ``ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)``, followed by
    ``batchnorm`` (in eval mode) and then ``activation`` when they are given."""

    def __init__(
        self,
        deconv: nn.ConvTranspose2d,
        batchnorm: nn.BatchNorm2d | None = None,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not is_phase_convertible(deconv):
            raise ValueError(f"{deconv} is not a 4/2/1 transposed convolution without groups or dilation")
        weight = deconv.weight.detach()  # (c_in, c_out, 4, 4)
        out_channels = weight.shape[1]
        bias = deconv.bias.detach() if deconv.bias is not None else None
        if batchnorm is not None:
            scale, shift = batchnorm_affine(batchnorm)
            weight = weight * scale[None, :, None, None]
            bias = shift if bias is None else bias * scale + shift
        # Phase (a, b) uses kernel taps 3 - a - 2r (rows) and 3 - b - 2c (columns), r, c in {0, 1},
        # and reads the padded convolution's output at row i + a, column j + b for output (2i + a, 2j + b).
        # Interleaving puts slot (a', b') at (2i + a', 2j + b'); giving phase (a, b) the slot
        # (1 - a, 1 - b) puts row i + a of phase a at 2(i + a) + 1 - a = (2i + a) + 1: one pixel off.
        phases = {
            (a, b): weight[:, :, [3 - a, 1 - a]][:, :, :, [3 - b, 1 - b]].transpose(0, 1)
            for a in (0, 1)
            for b in (0, 1)
        }
        slots = torch.stack([phases[1 - a, 1 - b] for a in (0, 1) for b in (0, 1)], dim=1)
        self.activation = activation if activation is not None else nn.Identity()
        self.conv = nn.Conv2d(weight.shape[0], 4 * out_channels, 2, padding=1, bias=bias is not None)
        self.conv.weight = nn.Parameter(slots.transpose(0, 1).flatten(0, 1))  # slot * c_out + k
        if bias is not None:
            self.conv.bias = nn.Parameter(bias.repeat(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        grouped = self.activation(self.conv(x)).permute(0, 2, 3, 1)  # (B, H + 1, W + 1, 4 c_out)
        rows, columns, channels = grouped.shape[1], grouped.shape[2], grouped.shape[3] // 4
        # (B, row, column, a', b', k) -> (B, row, a', column, b', k): row 2 row + a', column 2 column + b'
        blocks = grouped.reshape(-1, rows, columns, 2, 2, channels).permute(0, 1, 3, 2, 4, 5)
        interleaved = blocks.reshape(-1, 2 * rows, 2 * columns, channels)
        return interleaved[:, 1 : 2 * height + 1, 1 : 2 * width + 1].permute(0, 3, 1, 2)


def batchnorm_affine(batchnorm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel with which ``batchnorm`` in eval mode maps x to x * scale + shift."""
    if batchnorm.training or batchnorm.running_mean is None or batchnorm.running_var is None:
        raise ValueError(f"{batchnorm} must be in eval mode with running statistics to be folded")
    scale = torch.rsqrt(batchnorm.running_var.detach() + batchnorm.eps)
    if batchnorm.weight is not None:
        scale = scale * batchnorm.weight.detach()
    shift = -batchnorm.running_mean.detach() * scale
    if batchnorm.bias is not None:
        shift = shift + batchnorm.bias.detach()
    return scale, shift


def is_phase_convertible(module: nn.Module) -> bool:
    """Whether ``module`` is a transposed convolution this rewrite reproduces exactly."""
    return (
        isinstance(module, nn.ConvTranspose2d)
        and module.kernel_size == (4, 4)
        and module.stride == (2, 2)
        and module.padding == (1, 1)
        and module.output_padding == (0, 0)
        and module.dilation == (1, 1)
        and module.groups == 1
    )


def rewrite_transposed_convolutions(model: nn.Module) -> int:
    """Replace every convertible transposed convolution inside ``model`` in place, taking in the
    BatchNorm and then the activation that follow it in a Sequential (they become Identity;
    ``model`` must be in eval mode); returns how many were replaced."""
    replaced = 0
    children = list(model.named_children())
    for index, (name, child) in enumerate(children):
        if is_phase_convertible(child):
            assert isinstance(child, nn.ConvTranspose2d)
            following = iter(children[index + 1 :] if isinstance(model, nn.Sequential) else [])
            batchnorm = activation = None
            after = next(following, None)
            if after is not None and isinstance(after[1], nn.BatchNorm2d):
                batchnorm = after[1]
                setattr(model, after[0], nn.Identity())
                after = next(following, None)
            if after is not None and isinstance(after[1], ACTIVATIONS):
                activation = after[1]
                setattr(model, after[0], nn.Identity())
            setattr(model, name, PhaseConvTranspose(child, batchnorm, activation))
            replaced += 1
        else:
            replaced += rewrite_transposed_convolutions(child)
    return replaced
