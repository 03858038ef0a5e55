"""Networks from an allow-list (SegResNet, UNet, DynUNet), built from the config."""

from __future__ import annotations

import math

from monai.networks.nets.dynunet import DynUNet
from monai.networks.nets.segresnet import SegResNet
from monai.networks.nets.unet import UNet
from torch import nn

from radserve.training.config import DynUNetConfig, NetworkConfig, SegResNetConfig, UNetConfig

ALLOWED_NETWORKS = ("SegResNet", "UNet", "DynUNet")


def build_network(config: NetworkConfig, *, out_channels: int) -> nn.Module:
    """A 3D network with one input channel and ``out_channels`` logit channels."""
    if isinstance(config, SegResNetConfig):
        return SegResNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=out_channels,
            init_filters=config.init_filters,
            blocks_down=config.blocks_down,
            blocks_up=config.blocks_up,
            dropout_prob=config.dropout_prob,
        )
    if isinstance(config, UNetConfig):
        return UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=out_channels,
            channels=config.channels,
            strides=config.strides,
            num_res_units=config.num_res_units,
            dropout=config.dropout,
        )
    if isinstance(config, DynUNetConfig):
        return DynUNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=out_channels,
            kernel_size=[list(k) for k in config.kernel_size],
            strides=[list(s) for s in config.strides],
            upsample_kernel_size=[list(s) for s in config.strides[1:]],
            filters=list(config.filters) if config.filters is not None else None,
            norm_name=config.norm_name,
        )
    raise ValueError(f"network must be one of {ALLOWED_NETWORKS}")  # pragma: no cover


def size_divisor(config: NetworkConfig) -> tuple[int, int, int]:
    """What each spatial size must be a multiple of for the network to run."""
    if isinstance(config, SegResNetConfig):
        factor = 2 ** (len(config.blocks_down) - 1)
        return (factor, factor, factor)
    if isinstance(config, UNetConfig):
        factor = math.prod(config.strides)
        return (factor, factor, factor)
    x, y, z = (math.prod(s[axis] for s in config.strides) for axis in range(3))
    return (x, y, z)


def count_parameters(network: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)
