"""Generated H&E-like tiles of the three classes, patient by patient, for tests and examples.

:func:`make_synthetic_tiles` returns ``(X, y, groups)`` as
:func:`~hiercls.data.datasets.load_osteosarcoma_ut` does, with RGB arrays in the ``image``
column instead of file paths; it is also importable from :mod:`hiercls.data.datasets`.
"""

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from ..validation import check_number
from .images import IMAGE_COLUMN

__all__ = ["make_synthetic_tiles"]

# Optical densities (R, G, B) of one unit of stain, after Ruifrok & Johnston (2001).
_HEMATOXYLIN = np.array([0.65, 0.70, 0.29])
_EOSIN = np.array([0.07, 0.99, 0.11])


def _check_positive_int(value, name, minimum=1):
    return check_number(value, name, integer=True, low=minimum)


def _lowpass(fields, sigma, *, sigma_across=None, angle=None):
    """Gaussian-blur each of ``fields`` (n, s, s) with its own sigma (pixels), via FFT.

    With ``sigma_across`` and ``angle`` the blur is elongated (fibres along ``angle``).
    """
    n, size, _ = fields.shape
    fy = np.fft.fftfreq(size)[None, :, None]
    fx = np.fft.rfftfreq(size)[None, None, :]
    sigma = np.asarray(sigma, dtype=float).reshape(n, 1, 1)
    if sigma_across is None:
        power = sigma ** 2 * (fy ** 2 + fx ** 2)
    else:
        across = np.asarray(sigma_across, dtype=float).reshape(n, 1, 1)
        cos, sin = np.cos(angle).reshape(n, 1, 1), np.sin(angle).reshape(n, 1, 1)
        along_f = fy * cos + fx * sin
        across_f = -fy * sin + fx * cos
        power = sigma ** 2 * along_f ** 2 + across ** 2 * across_f ** 2
    kernel = np.exp(-2.0 * np.pi ** 2 * power).astype(np.float32)
    return np.fft.irfft2(np.fft.rfft2(fields.astype(np.float32, copy=False)) * kernel, s=(size, size))


def _standardize(fields):
    centred = fields - fields.mean(axis=(1, 2), keepdims=True)
    return centred / (centred.std(axis=(1, 2), keepdims=True) + 1e-12)


def _stamp(canvas, tile_index, cy, cx, ry, rx, angle, amplitude, edge):
    """Max-paint soft ellipses onto ``canvas`` (n, s, s), all blobs at once.

    Each blob k lies on tile ``tile_index[k]`` at (``cy``, ``cx``) with radii (``ry``,
    ``rx``) turned by ``angle``, peak ``amplitude`` and a soft edge ``edge`` px wide.
    """
    if tile_index.size == 0:
        return canvas
    size = canvas.shape[1]
    half = int(np.ceil(max(ry.max(), rx.max()) + 2 * edge)) + 1
    offsets = np.arange(-half, half + 1)
    top = np.floor(cy).astype(np.int64)
    left = np.floor(cx).astype(np.int64)
    rows = top[:, None, None] + offsets[None, :, None]          # (k, w, 1)
    cols = left[:, None, None] + offsets[None, None, :]         # (k, 1, w)
    dy = rows + 0.5 - cy[:, None, None]
    dx = cols + 0.5 - cx[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (dy * cos + dx * sin) / ry[:, None, None]
    v = (-dy * sin + dx * cos) / rx[:, None, None]
    radius = np.sqrt(u ** 2 + v ** 2)
    scale = np.minimum(ry, rx)[:, None, None] / edge
    value = amplitude[:, None, None] / (1.0 + np.exp(np.clip((radius - 1.0) * scale, -30, 30)))
    rows, cols = np.broadcast_arrays(rows, cols)
    value = np.broadcast_to(value, rows.shape)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size) & (value > 1e-3)
    which = np.broadcast_to(tile_index[:, None, None], rows.shape)
    np.maximum.at(canvas, (which[inside], rows[inside], cols[inside]), value[inside])
    return canvas


def _blobs(rng, counts, size, radius_range, amplitude_range, elongation_range):
    """Random blob parameters for ``counts[i]`` blobs on tile i (flat arrays)."""
    tile_index = np.repeat(np.arange(counts.size), counts)
    k = tile_index.size
    radius = rng.uniform(*radius_range, size=k)
    elongation = rng.uniform(*elongation_range, size=k)
    return {
        "tile_index": tile_index,
        "cy": rng.uniform(0, size, size=k),
        "cx": rng.uniform(0, size, size=k),
        "ry": radius * elongation,
        "rx": radius / elongation,
        "angle": rng.uniform(0, np.pi, size=k),
        "amplitude": rng.uniform(*amplitude_range, size=k),
    }


def make_synthetic_tiles(n_tiles=240, *, n_patients=4, size=64, random_state=0):
    """Generate small H&E-like tiles of the three classes, for tests and examples.

    Tiles are drawn in stain space (hematoxylin and eosin densities, turned into RGB by
    Beer-Lambert with the usual H&E stain vectors):

    - Non-Tumor: stroma with fibrous eosin, sparse small nuclei and white fat holes;
    - Non-Viable-Tumor: pale, washed-out eosin with a few faint "ghost" nuclei;
    - Viable-Tumor: dense, large, dark nuclei.

    Densities, nucleus sizes and stain amounts are random per tile and overlap between
    the classes; each patient has its own stain vectors, stain strengths and brightness
    (so a patient-level split is harder than a random one); every tile gets a random blur
    and pixel noise. A small model learns the classes well above chance but not perfectly.

    Parameters
    ----------
    n_tiles : int, default=240
        Number of tiles. Tiles are dealt to patients in turn and, within a patient, to
        the classes in turn, so classes are balanced and every patient has all three
        classes when ``n_tiles >= 3 * n_patients``.
    n_patients : int, default=4
        Number of patients.
    size : int, default=64
        Tile side in pixels (at least 16); structures scale with it.
    random_state : int, RandomState instance or None, default=0
        Seed; the same seed gives the same tiles.

    Returns
    -------
    X : pandas.DataFrame
        Columns ``image`` (object: one (size, size, 3) uint8 array per tile), ``tile``
        (``"synthetic-0000"``, ...) and ``patient``.
    y : pandas.Series
        Class codes 0, 1, 2 (int64), named ``"label"``.
    groups : pandas.Series
        ``"patient-1"``, ``"patient-2"``, ..., named ``"patient"``.

    Examples
    --------
    >>> from hiercls.data.datasets import make_synthetic_tiles
    >>> X, y, groups = make_synthetic_tiles(30, n_patients=2, size=32)
    >>> X["image"].iloc[0].shape, X["image"].iloc[0].dtype.name
    ((32, 32, 3), 'uint8')
    >>> y.value_counts().sort_index().tolist(), sorted(groups.unique())
    ([10, 10, 10], ['patient-1', 'patient-2'])
    """
    n_tiles = _check_positive_int(n_tiles, "n_tiles")
    n_patients = _check_positive_int(n_patients, "n_patients")
    size = _check_positive_int(size, "size", minimum=16)
    # A Generator seeded from the scikit-learn style random_state: its normals are fast.
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    rng = np.random.default_rng(seed)
    scale = size / 64.0
    area = scale ** 2

    # Deal tiles to patients, then to classes within each patient; shuffle the order.
    slot = np.arange(n_tiles)
    patient = slot % n_patients
    label = (slot // n_patients) % 3
    order = rng.permutation(n_tiles)
    patient, label = patient[order], label[order]
    is_nt, is_nvt = (label == 0), (label == 1)

    # Per-patient staining: stain vectors, stain strengths and brightness.
    h_vectors = np.abs(_HEMATOXYLIN + rng.normal(0, 0.06, size=(n_patients, 3)))
    e_vectors = np.abs(_EOSIN + rng.normal(0, 0.06, size=(n_patients, 3)))
    h_vectors /= np.linalg.norm(h_vectors, axis=1, keepdims=True)
    e_vectors /= np.linalg.norm(e_vectors, axis=1, keepdims=True)
    h_gain = rng.uniform(0.7, 1.35, size=n_patients)[patient]
    e_gain = rng.uniform(0.7, 1.35, size=n_patients)[patient]
    brightness = rng.uniform(215, 250, size=n_patients)[patient]

    # Eosin: background level by class (overlapping), low-frequency texture, fibres in stroma.
    e_level = np.select([is_nt, is_nvt], [rng.uniform(0.18, 0.42, n_tiles),
                                          rng.uniform(0.10, 0.30, n_tiles)],
                        rng.uniform(0.15, 0.38, n_tiles))
    blotches = _standardize(_lowpass(rng.standard_normal((n_tiles, size, size), dtype=np.float32),
                                     rng.uniform(2.0, 5.0, n_tiles) * scale))
    fibre_angle = rng.uniform(0, np.pi, n_tiles)
    fibres = _standardize(_lowpass(rng.standard_normal((n_tiles, size, size), dtype=np.float32),
                                   rng.uniform(4.0, 8.0, n_tiles) * scale,
                                   sigma_across=np.full(n_tiles, 0.8 * scale), angle=fibre_angle))
    fibre_weight = np.where(is_nt, rng.uniform(0.15, 0.4, n_tiles), rng.uniform(0.0, 0.2, n_tiles))
    eosin = e_level[:, None, None] * (1.0 + 0.25 * blotches + fibre_weight[:, None, None] * fibres)
    hematoxylin = np.broadcast_to(rng.uniform(0.0, 0.08, n_tiles)[:, None, None],
                                  eosin.shape).copy()

    # Nuclei: how many (overlapping log-normal densities), how big, how dark.
    density = np.exp(rng.normal(0.0, 0.7, n_tiles))
    mean_count = np.select([is_nt, is_nvt], [8.0, 6.0], 20.0) * density * area
    counts = rng.poisson(mean_count)
    # (radius range at 64 px, darkness range) of the nuclei of each class.
    nucleus_look = {0: ((1.3, 3.0), (0.4, 1.0)), 1: ((1.6, 3.4), (0.12, 0.55)),
                    2: ((1.8, 4.0), (0.55, 1.3))}
    nuclei = {key: [] for key in ("tile_index", "cy", "cx", "ry", "rx", "angle", "amplitude")}
    for code, (radius, darkness) in nucleus_look.items():
        tiles_of_class = np.flatnonzero(label == code)
        found = _blobs(rng, counts[tiles_of_class], size, (radius[0] * scale, radius[1] * scale),
                       darkness, (0.75, 1.35))
        found["tile_index"] = tiles_of_class[found["tile_index"]]
        for key, parts in nuclei.items():
            parts.append(found[key])
    nuclei = {key: np.concatenate(parts) for key, parts in nuclei.items()}
    _stamp(hematoxylin, edge=0.7, **nuclei)

    # Fat holes and clefts: white, mostly in non-tumor stroma.
    hole_counts = rng.poisson(np.where(is_nt, 1.8, 0.35))
    holes = _blobs(rng, hole_counts, size, (4.0 * scale, 11.0 * scale), (0.85, 1.0), (0.8, 1.25))
    fat = _stamp(np.zeros_like(eosin), edge=1.0, **holes)
    eosin *= 1.0 - fat
    hematoxylin *= 1.0 - fat

    # Focus: a random blur per tile; then stain densities to RGB, and pixel noise.
    focus = rng.uniform(0.3, 1.3, n_tiles) * scale
    eosin = np.clip(_lowpass(eosin, focus), 0.0, None)
    hematoxylin = np.clip(_lowpass(hematoxylin, focus), 0.0, None)
    density_rgb = ((hematoxylin * h_gain[:, None, None])[..., None] * h_vectors[patient][:, None, None, :]
                   + (eosin * e_gain[:, None, None])[..., None] * e_vectors[patient][:, None, None, :])
    rgb = (brightness[:, None, None, None] * np.exp(-np.log(10.0) * density_rgb)).astype(np.float32)
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * rng.uniform(2.0, 7.0, n_tiles)[:, None, None, None]
    images = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)

    image_column = pd.Series([image for image in images], dtype=object)
    X = pd.DataFrame({
        IMAGE_COLUMN: image_column,
        "tile": [f"synthetic-{i:04d}" for i in range(n_tiles)],
        "patient": [f"patient-{p + 1}" for p in patient],
    })
    y = pd.Series(label.astype(np.int64), name="label")
    groups = X["patient"].rename("patient").copy()
    return X, y, groups
