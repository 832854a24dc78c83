"""Tiles into counts: each tile's necrotic and tumor mass, per group, and its bootstrap.

The arithmetic under :func:`~hiercls.evaluation.necrosis.necrosis_from_probabilities`:
expected (probability) or argmax counts per tile, the groups as integer codes, a ratio
that is NaN where there is no tumor to divide by, and resamples of a group's tiles (and,
for an ensemble, of its members) for the interval.
"""

import numpy as np
import pandas as pd

from ...data.labels import CLASS_NAMES, check_probabilities
from ...validation import check_groups

# Bootstrap replicates are drawn in chunks of at most this many resampled tiles, so memory
# stays bounded for whole-slide sized groups.
_BOOTSTRAP_CHUNK = 2_000_000

_NEC, _VIA = 1, 2  # column codes of Non-Viable-Tumor (necrosis) and Viable-Tumor



def _check_member_proba(member_proba, n_tiles):
    """Each member's probabilities as a float array (n_members, n_tiles, 3)."""
    try:
        m = np.asarray(member_proba, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("member_proba must be numeric probabilities of shape "
                         "(n_members, n_tiles, 3)") from None
    if m.ndim != 3 or m.shape[0] == 0 or m.shape[1:] != (n_tiles, len(CLASS_NAMES)):
        raise ValueError(
            f"member_proba must have shape (n_members, {n_tiles}, {len(CLASS_NAMES)}): each "
            f"member's probabilities of the same tiles as proba; got shape {m.shape}")
    # Each member's rows obey the rules of any probabilities.
    check_probabilities(m.reshape(-1, m.shape[-1]), name="member_proba")
    return m


def _tile_counts(p, fraction, tumor_threshold):
    """Each tile's contribution to the necrotic and to the tumor count, from probabilities
    ``p`` of shape (..., 3)."""
    if fraction == "expected":
        necrotic, tumor = p[..., _NEC], p[..., _NEC] + p[..., _VIA]
    else:
        predicted = p.argmax(axis=-1)
        necrotic, tumor = predicted == _NEC, predicted != 0
    if tumor_threshold is not None:
        kept = p[..., _NEC] + p[..., _VIA] >= tumor_threshold
        necrotic, tumor = necrotic * kept, tumor * kept
    return np.asarray(necrotic, dtype=float), np.asarray(tumor, dtype=float)


def _check_groups(groups, n_samples):
    """Integer codes of the groups, their sorted values and the index name to use."""
    name = groups.name if isinstance(groups, pd.Series) and isinstance(groups.name, str) else "group"
    codes, uniques = check_groups(groups, n_samples, unit="patient")
    return codes, pd.Index(uniques, name=name)


def _ratio(numerator, denominator, minimum):
    """numerator / denominator, NaN where the denominator is below ``minimum``."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    ok = denominator >= minimum
    np.divide(numerator, denominator, out=out, where=ok)
    return out


def _bootstrap_fractions(necrotic, tumor, n_bootstrap, rng):
    """Necrotic fraction of ``n_bootstrap`` resamples (with replacement) of the tiles.

    ``necrotic`` and ``tumor`` are each tile's counts, of shape (n_tiles,), or of shape
    (n_members, n_tiles) for an ensemble: then each replicate also draws one member, whose
    counts it sums. A resample with no tumor mass at all has no fraction (NaN).
    """
    members = necrotic.ndim == 2
    n = necrotic.shape[-1]
    replicates = np.empty(n_bootstrap)
    per_chunk = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, n_bootstrap, per_chunk):
        stop = min(start + per_chunk, n_bootstrap)
        draw = rng.randint(0, n, size=(stop - start, n))
        if members:
            member = rng.randint(0, necrotic.shape[0], size=(stop - start, 1))
            nec, tum = necrotic[member, draw], tumor[member, draw]
        else:
            nec, tum = necrotic[draw], tumor[draw]
        replicates[start:stop] = _ratio(nec.sum(axis=1), tum.sum(axis=1), np.finfo(float).tiny)
    return replicates
