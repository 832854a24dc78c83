"""Stain augmentation: random jitter of a tile's hematoxylin, eosin and DAB densities.

Scanners, labs and staining batches differ in how much hematoxylin and eosin a slide
takes up, and a patient-level split meets exactly that shift. Jittering each stain's
optical density (Tellez et al., 2018, "HED" augmentation) teaches the network to ignore
it. The colour deconvolution is Ruifrok and Johnston's (the stain vectors of
:func:`skimage.color.rgb2hed`), on optical densities ``-ln(intensity)`` as Tellez et al.
define them, so ``sigma`` means what it means there (0.05 is "HED-light"). skimage's
``rgb2hed`` divides these densities by ``-ln(1e-6)``; a shift in its units would be ~14
times stronger.
"""

import torch
from skimage.color import hed_from_rgb, rgb_from_hed

# The darkest intensity allowed, so that the density of a black pixel stays finite.
_MIN_INTENSITY = 1e-6


def hed_jitter(rgb, sigma, generator=None, *, mean=None, std=None):
    """Scale and shift each stain density of each image by random factors.

    For each image and stain ``s``: ``d_s' = d_s * a_s + b_s`` with
    ``a_s ~ U(1 - sigma, 1 + sigma)`` and ``b_s ~ U(-sigma, sigma)``.

    Parameters
    ----------
    rgb : Tensor of shape (n, 3, H, W)
        Images with values in [0, 1], or normalized ones when ``mean`` and ``std`` are given.
    sigma : float
        Strength of the jitter; 0 returns ``rgb`` unchanged.
    generator : torch.Generator, optional
        Source of the random factors (torch's global generator when None).
    mean, std : Tensor broadcastable to (n, 3, H, W), optional
        The per-channel normalization of ``rgb``: undone before the jitter and applied
        again after it.

    Returns
    -------
    jittered : Tensor of shape (n, 3, H, W)
        Values in [0, 1], or normalized as the input was.

    Examples
    --------
    >>> import torch
    >>> tiles = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> out = hed_jitter(tiles, 0.05, torch.Generator().manual_seed(1))
    >>> out.shape, bool(out.min() >= 0 and out.max() <= 1), bool(torch.equal(out, tiles))
    (torch.Size([2, 3, 8, 8]), True, False)
    >>> again = hed_jitter(tiles, 0.05, torch.Generator().manual_seed(1))
    >>> bool(torch.equal(out, again))  # the same generator seed, the same jitter
    True
    >>> hed_jitter(tiles, 0.0) is tiles
    True
    """
    if sigma <= 0 or rgb.shape[0] == 0:
        return rgb
    if mean is not None:
        mean, std = mean.to(rgb), std.to(rgb)
        return (hed_jitter(rgb * std + mean, sigma, generator) - mean) / std
    n = rgb.shape[0]
    to_hed = torch.as_tensor(hed_from_rgb, dtype=rgb.dtype, device=rgb.device)
    to_rgb = torch.as_tensor(rgb_from_hed, dtype=rgb.dtype, device=rgb.device)
    density = -torch.log(rgb.clamp_min(_MIN_INTENSITY))  # (n, 3, H, W)
    # Unclamped, the deconvolution is linear and invertible: no jitter, no change.
    stains = torch.einsum("nchw,cs->nshw", density, to_hed)
    uniform = torch.rand((2, n, 3, 1, 1), generator=generator, device=rgb.device, dtype=rgb.dtype)
    scale = 1.0 + (2.0 * uniform[0] - 1.0) * sigma
    shift = (2.0 * uniform[1] - 1.0) * sigma
    stains = stains * scale + shift
    density = torch.einsum("nshw,sc->nchw", stains, to_rgb)
    return torch.exp(-density).clamp(0.0, 1.0)
