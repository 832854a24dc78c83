"""Label-preserving augmentation of a batch of tiles, as a module active in training only."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .stain_jitter import hed_jitter


class TileAugmentation(nn.Module):
    """Random horizontal flips, small rotations and optional stain jitter of normalized tiles.

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
    stain_jitter : float, default=0.0
        Strength of the random H&E density jitter (:func:`hiercls.nn.stain_jitter.hed_jitter`);
        0 turns it off.
    mean, std : sequence of 3 floats, default=(0.5, 0.5, 0.5)
        The normalization of the incoming tiles, undone for the stain jitter.
    """

    def __init__(self, max_rotation=15.0, flip_probability=0.5, stain_jitter=0.0,
                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        super().__init__()
        self.max_rotation = max_rotation
        self.flip_probability = flip_probability
        self.stain_jitter = stain_jitter
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, images):
        if not self.training or images.shape[0] == 0:
            return images
        n = images.shape[0]
        if self.stain_jitter > 0:
            images = hed_jitter(images, self.stain_jitter, mean=self.mean, std=self.std)
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
