"""Label-preserving augmentation of a batch of tiles, as a module active in training only."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class TileAugmentation(nn.Module):
    """Random horizontal flips and small rotations of a batch of normalized tiles.

    It runs on the batch where the batch lives (CPU or GPU) and draws from torch's
    random generator, so a fit seeded through ``random_state`` is reproducible. In eval
    mode it is the identity.

    Parameters
    ----------
    max_rotation : float, default=15.0
        Rotations are drawn uniformly from [-max_rotation, max_rotation] degrees; the
        corners a rotation uncovers are filled by reflection, so no black triangles
        reach the network.
    flip_probability : float, default=0.5
        Probability of a horizontal flip per tile.
    """

    def __init__(self, max_rotation=15.0, flip_probability=0.5):
        super().__init__()
        self.max_rotation = max_rotation
        self.flip_probability = flip_probability

    def forward(self, images):
        if not self.training or images.shape[0] == 0:
            return images
        n = images.shape[0]
        flips = torch.rand(n, device=images.device) < self.flip_probability
        images = torch.where(flips[:, None, None, None], images.flip(-1), images)
        if self.max_rotation <= 0:
            return images
        angles = (torch.rand(n, device=images.device) * 2 - 1) * math.radians(self.max_rotation)
        cos, sin = torch.cos(angles), torch.sin(angles)
        zeros = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
