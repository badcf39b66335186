"""Convolutional building blocks of DQ-AE, as in the official code (spec section 3).

- ``ResBlock``: ReLU, 3x3 conv, ReLU, 1x1 conv, plus the skip connection.
- ``Encoder``: downsample by 2 or 4 with 4x4 stride-2 convs, then residual blocks.
- ``Decoder``: residual blocks, then upsample by 1, 2 or 4 with 4x4 stride-2 transposed convs.
"""

from __future__ import annotations

from torch import Tensor, nn


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))): (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, res_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, res_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(res_channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def _res_stack(channels: int, res_channels: int, res_blocks: int) -> list[nn.Module]:
    return [ResBlock(channels, res_channels) for _ in range(res_blocks)]


class Encoder(nn.Sequential):
    """(B, C_in, H, W) -> (B, channels, H/stride, W/stride), stride 2 or 4."""

    def __init__(self, in_channels: int, channels: int, res_blocks: int, res_channels: int, stride: int) -> None:
        if stride == 4:
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, channels // 2, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels // 2, channels, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1),
            ]
        elif stride == 2:
            layers = [
                nn.Conv2d(in_channels, channels // 2, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels // 2, channels, 3, padding=1),
            ]
        else:
            raise ValueError(f"Encoder stride must be 2 or 4, got {stride}")
        super().__init__(*layers, *_res_stack(channels, res_channels, res_blocks), nn.ReLU())


class Decoder(nn.Sequential):
    """(B, C_in, H, W) -> (B, out_channels, H*stride, W*stride), stride 1, 2 or 4.

    With stride 1 there is no upsampling layer and ``out_channels`` must equal ``channels``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, channels: int, res_blocks: int, res_channels: int, stride: int
    ) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1)]
        layers += _res_stack(channels, res_channels, res_blocks)
        layers.append(nn.ReLU(inplace=True))
        if stride == 4:
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.ConvTranspose2d(channels // 2, out_channels, 4, stride=2, padding=1),
            ]
        elif stride == 2:
            layers.append(nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1))
        elif stride == 1:
            if out_channels != channels:
                raise ValueError(f"a stride-1 Decoder outputs its {channels} channels, got out_channels={out_channels}")
        else:
            raise ValueError(f"Decoder stride must be 1, 2 or 4, got {stride}")
        super().__init__(*layers)
