"""The fast backend: PyRadiomics' 29 features, recomputed with vectorized numpy.

Every feature follows PyRadiomics' own definition (``radiomics.firstorder``,
``radiomics.shape2D`` and the marching-squares code of its C extension) for a 2D
image with unit pixel spacing, ``voxelArrayShift=0`` and a fixed ``binWidth``, as
:func:`~hiercls.features.radiomics.pyradiomics_backend.extract_pyradiomics` configures it. The
results agree with that reference to floating-point rounding (see
``tests/test_radiomics_fast.py`` and ``benchmarks/radiomics_speed.py``). What is
faster:

- the maximum diameter is the largest distance between vertices of the *convex hull*
  of the mesh vertices (the farthest pair of a point set always lies on its hull),
  not PyRadiomics' comparison of every pair of perimeter points;
- the mesh surface and perimeter come from counting the 16 marching-squares cases
  over the whole mask at once: each case contributes a fixed area and fixed line
  lengths, so no mesh is built;
- the principal axes come from exact integer moment sums of the pixel coordinates;
- first-order statistics share one deviation array and one sort, which gives the
  percentiles, the median, the robust subset and the histogram (a binary search of
  the few bin edges) without partitioning or digitizing again.

Behaviour at the edges of the domain (the same as PyRadiomics' extractor, unless noted):

- an empty region, a one-pixel region, or a region whose pixels all lie in one row or
  one column raises :class:`ValueError` (PyRadiomics refuses these masks: "mask only
  contains 1 segmented voxel" / "mask has too few dimensions");
- a constant region gives Variance 0 and Skewness and Kurtosis 0 when PyRadiomics' mean
  of the values is exact; PyRadiomics has no explicit flat-region branch that survives
  (its ``m3[m2 == 0] = 0`` runs after ``m2`` was set to 1), so when the rounded mean
  differs from the constant every deviation is the same tiny number and it returns
  Skewness +-1 and Kurtosis 1. We reproduce its arithmetic, so we return the same;
- RobustMeanAbsoluteDeviation is NaN when no value lies between the 10th and 90th
  percentiles (a two-pixel region with two different values), as in PyRadiomics;
- pixels on a straight line (e.g. a diagonal) have a zero minor eigenvalue: we compute
  it exactly (MinorAxisLength and Elongation 0), where PyRadiomics' floating-point
  covariance may leave rounding noise of order 1e-16 relative to the major eigenvalue;
- non-finite channel values inside the region raise :class:`ValueError` (PyRadiomics
  would silently skip NaNs in some features and not in others).
"""

import math

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from .names import FEATURE_NAMES, FIRSTORDER_FEATURES, SHAPE2D_FEATURES

#: np.spacing(1): PyRadiomics' epsilon inside the entropy's logarithm.
_EPS = float(np.spacing(1))

_FIRST_INDEX = {name: i for i, name in enumerate(FIRSTORDER_FEATURES)}
_SHAPE_INDEX = {name: len(FIRSTORDER_FEATURES) + i for i, name in enumerate(SHAPE2D_FEATURES)}


def _square_case_tables():
    """Area and line lengths of each marching-squares case.

    A case is the 4-bit index PyRadiomics' C code gives a 2x2 square of pixels: bit 0
    top-left, bit 1 top-right, bit 2 bottom-right, bit 3 bottom-left. Its lines join
    midpoints of the square's edges, so a line is either straight across (length 1) or
    cuts a corner (length sqrt(1/2)). The signed cross products that PyRadiomics sums
    for the mesh surface add up, over the closed contours, to the area enclosed, which
    is the sum of these per-square areas: a full square 1, one corner in 1/8, two
    adjacent corners 1/2, three corners 7/8, and the two diagonal (saddle) cases 1/4
    (PyRadiomics' line table cuts the two inside corners off separately).
    """
    area = np.zeros(16)
    straight = np.zeros(16)
    diagonal = np.zeros(16)
    for case in range(1, 16):
        inside = bin(case).count("1")
        if case in (5, 10):
            area[case], diagonal[case] = 0.25, 2
        elif inside == 1:
            area[case], diagonal[case] = 0.125, 1
        elif inside == 2:
            area[case], straight[case] = 0.5, 1
        elif inside == 3:
            area[case], diagonal[case] = 0.875, 1
        else:
            area[case] = 1.0
    return area, straight, diagonal


_CASE_AREA, _CASE_STRAIGHT, _CASE_DIAGONAL = _square_case_tables()


def _check_inputs(channel, region, bin_width):
    channel = np.asarray(channel, dtype=np.float64)
    region = np.asarray(region, dtype=bool)
    if channel.ndim != 2:
        raise ValueError(f"channel must be a 2D array; got shape {channel.shape}")
    if region.shape != channel.shape:
        raise ValueError(
            f"region shape {region.shape} does not match channel shape {channel.shape}"
        )
    bin_width = float(bin_width)
    if not (math.isfinite(bin_width) and bin_width > 0):
        raise ValueError(f"bin_width must be a positive finite number; got {bin_width!r}")
    rows = np.flatnonzero(region.any(axis=1))
    columns = np.flatnonzero(region.any(axis=0))
    if rows.size == 0:
        raise ValueError("region is empty: no pixel to describe")
    # PyRadiomics' checkMask (minimumROIDimensions=2) refuses these, so do we.
    if rows.size == 1 and columns.size == 1:
        raise ValueError("region has a single pixel; PyRadiomics cannot describe it either")
    if rows[-1] == rows[0] or columns[-1] == columns[0]:
        raise ValueError(
            "region lies in a single row or column; PyRadiomics needs a 2D region "
            "(minimumROIDimensions=2)"
        )
    # Cropping to the bounding box changes no feature (PyRadiomics crops too) and saves
    # work on small regions.
    window = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))
    return channel[window], region[window], bin_width


def _firstorder(values, bin_width, out):
    """Fill the 19 first-order features of ``values`` (1D float64, finite) into ``out``."""
    n = values.size
    # np.mean sums pairwise over the contiguous values, as numpy.nanmean does on
    # PyRadiomics' (1, N) array: the same rounding, which decides Skewness and Kurtosis
    # of a constant region (see the module docstring).
    mean = values.mean()
    deviation = values - mean
    squared = deviation * deviation
    variance = squared.mean()
    third = (squared * deviation).mean()
    fourth = (squared * squared).mean()
    std = np.sqrt(variance)
    # PyRadiomics replaces a zero second moment by 1 (flat region) and divides anyway.
    m2 = variance if variance != 0 else 1.0
    # voxelArrayShift = 0. Not np.dot: a threaded BLAS call costs more than it saves.
    energy = (values * values).sum()

    # One sort serves the percentiles, the median, the robust subset and the histogram.
    ordered = np.sort(values)
    minimum, maximum = ordered[0], ordered[-1]
    p10, p25, p75, p90 = _linear_percentiles(ordered, _PERCENTILES)
    half = n // 2
    median = ordered[half] if n % 2 else (ordered[half - 1] + ordered[half]) / 2
    # The values within [P10, P90], both included, are a slice of the sorted values.
    inner = ordered[np.searchsorted(ordered, p10, "left") : np.searchsorted(ordered, p90, "right")]
    robust_mad = np.abs(inner - inner.mean()).mean() if inner.size else np.nan

    counts = _bin_counts(ordered, bin_width)
    p = counts / n

    f = _FIRST_INDEX
    out[f["10Percentile"]] = p10
    out[f["90Percentile"]] = p90
    out[f["Energy"]] = energy
    out[f["TotalEnergy"]] = energy  # times the pixel area, 1 x 1
    out[f["Entropy"]] = -np.sum(p * np.log2(p + _EPS))
    out[f["Uniformity"]] = np.sum(p * p)
    out[f["InterquartileRange"]] = p75 - p25
    out[f["Kurtosis"]] = fourth / m2**2
    out[f["Skewness"]] = third / m2**1.5
    out[f["Maximum"]] = maximum
    out[f["Minimum"]] = minimum
    out[f["Range"]] = maximum - minimum
    out[f["Mean"]] = mean
    out[f["Median"]] = median
    out[f["MeanAbsoluteDeviation"]] = np.abs(deviation).mean()
    out[f["RobustMeanAbsoluteDeviation"]] = robust_mad
    out[f["RootMeanSquared"]] = np.sqrt(energy / n)
    out[f["StandardDeviation"]] = std
    out[f["Variance"]] = std**2  # PyRadiomics squares numpy's standard deviation


#: The percentiles PyRadiomics reports (10, 25, 75, 90), as fractions.
_PERCENTILES = np.array([10.0, 25.0, 75.0, 90.0]) / 100


def _linear_percentiles(ordered, fractions):
    """Percentiles of sorted values by numpy's default ("linear") method.

    PyRadiomics calls ``numpy.nanpercentile``; its result is the interpolation between
    the order statistics around the virtual index ``(n - 1) * q``, which we take from
    the sorted values instead of partitioning again. The arithmetic (including the
    interpolation from the upper neighbour when the weight is at least 1/2) follows
    numpy's so that the values are the same to the bit: RobustMeanAbsoluteDeviation
    keeps the values equal to P10 or P90, so a last-bit difference could change it.
    """
    n = ordered.size
    virtual = (n - 1) * fractions
    below = np.floor(virtual).astype(np.intp)
    above = below + 1
    at_top = virtual >= n - 1
    below[at_top] = above[at_top] = n - 1
    weight = virtual - below
    low, high = ordered[below], ordered[above]
    step = high - low
    return np.where(weight >= 0.5, high - step * (1 - weight), low + step * weight)


def _bin_counts(ordered, bin_width):
    """Pixel counts of the non-empty bins of PyRadiomics' fixed-bin-width discretization.

    The edges are those of ``radiomics.imageoperations.getBinEdges``: multiples of the
    bin width from the one at or below the minimum, up to the maximum plus two widths,
    with half-open bins ``[lower, upper)`` as ``numpy.digitize`` assigns them.
    ``ordered`` holds the values sorted.
    """
    minimum, maximum = ordered[0], ordered[-1]
    low = minimum - (minimum % bin_width)
    edges = np.arange(low, maximum + 2 * bin_width, bin_width)
    if len(edges) == 1:  # PyRadiomics' guard for a flat region on a bin edge
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    # Number of values below each edge; bin i of numpy.digitize holds those in
    # [edge i-1, edge i), bin 0 those below the first edge, the last bin the rest.
    below = np.searchsorted(ordered, edges, side="left")
    counts = np.diff(np.concatenate(([0], below, [ordered.size])))
    return counts[counts > 0]


def _shape2d(region, out):
    """Fill the 10 shape2D features of a boolean ``region`` (cropped, valid) into ``out``."""
    padded = np.pad(region, 1).view(np.uint8)
    n_pixels = int(np.count_nonzero(region))

    # Marching squares over the whole mask at once: the case index of every 2x2 square.
    top, bottom = padded[:-1], padded[1:]
    case = top[:, :-1] | (top[:, 1:] << 1) | (bottom[:, 1:] << 2) | (bottom[:, :-1] << 3)
    n_case = np.bincount(case.ravel(), minlength=16).astype(np.float64)
    surface = float(n_case @ _CASE_AREA)
    perimeter = float(n_case @ _CASE_STRAIGHT) + float(n_case @ _CASE_DIAGONAL) * math.sqrt(0.5)
    diameter = _mesh_diameter(region)

    major, minor = _axis_eigenvalues(region, n_pixels)
    sphericity = (2 * np.sqrt(np.pi * surface)) / perimeter

    s = _SHAPE_INDEX
    out[s["MeshSurface"]] = surface
    out[s["PixelSurface"]] = n_pixels * 1.0  # unit pixel spacing
    out[s["Perimeter"]] = perimeter
    out[s["PerimeterSurfaceRatio"]] = perimeter / surface
    out[s["Sphericity"]] = sphericity
    out[s["SphericalDisproportion"]] = 1.0 / sphericity
    out[s["MaximumDiameter"]] = diameter
    out[s["MajorAxisLength"]] = math.sqrt(major) * 4
    out[s["MinorAxisLength"]] = math.sqrt(minor) * 4
    out[s["Elongation"]] = math.sqrt(minor / major) if major > 0 else np.nan


def _mesh_diameter(region):
    """Largest distance between two vertices of PyRadiomics' marching-squares mesh.

    The mesh vertices are the midpoints between 4-neighbour pixels of which exactly one
    is in the region. In doubled coordinates (pixel centres at even numbers) they are
    integers, so every squared distance is exact, as in PyRadiomics' C code.

    The farthest pair lies on the convex hull, and a hull vertex must be extreme on its
    line of vertices: a vertex between horizontal neighbours (on an even row) must be
    the first or last of its row, which is just left of the row's first pixel or right
    of its last; likewise a vertex between vertical neighbours must be just above the
    first pixel or below the last pixel of its column. Those at most 2 (H + W)
    candidates go to the hull, and only the hull's vertices are compared pairwise.
    """
    height, width = region.shape
    rows = np.flatnonzero(region.any(axis=1))
    columns = np.flatnonzero(region.any(axis=0))
    # argmax over the whole array (views, no copies), then keep the non-empty lines.
    first_column = region.argmax(axis=1)[rows]
    last_column = width - 1 - region[:, ::-1].argmax(axis=1)[rows]
    first_row = region.argmax(axis=0)[columns]
    last_row = height - 1 - region[::-1].argmax(axis=0)[columns]
    points = np.concatenate(
        (
            np.column_stack((2 * rows, 2 * first_column - 1)),
            np.column_stack((2 * rows, 2 * last_column + 1)),
            np.column_stack((2 * first_row - 1, 2 * columns)),
            np.column_stack((2 * last_row + 1, 2 * columns)),
        )
    ).astype(np.int64)
    try:
        points = points[ConvexHull(points).vertices]
    except QhullError:  # collinear or too few points: keep all candidates
        points = np.unique(points, axis=0)
    largest = 0
    for start in range(0, len(points), 512):  # bounded memory on huge hulls
        delta = points[start : start + 512, None, :] - points[None, :, :]
        largest = max(largest, int((delta * delta).sum(axis=2).max()))
    return math.sqrt(largest / 4.0)


def _axis_eigenvalues(region, n_pixels):
    """Eigenvalues (major, minor) of PyRadiomics' pixel-coordinate covariance.

    PyRadiomics centres the (row, column) coordinates of the region's pixels (times
    the unit spacing), divides them by sqrt(N) and takes ``X.T @ X``: the population
    covariance. Its entries are (N * sum(a*b) - sum(a) * sum(b)) / N**2; the integer
    numerators are exact in Python integers, so the eigenvalues carry one rounding.
    """
    row_counts = np.count_nonzero(region, axis=1).astype(np.int64)
    column_counts = np.count_nonzero(region, axis=0).astype(np.int64)
    r = np.arange(region.shape[0], dtype=np.int64)
    c = np.arange(region.shape[1], dtype=np.int64)
    sum_r, sum_c = int(row_counts @ r), int(column_counts @ c)
    sum_rr, sum_cc = int(row_counts @ (r * r)), int(column_counts @ (c * c))
    # Integer einsum (no BLAS threads): sum of column indices in each row.
    column_sums = np.einsum("ij,j->i", region.view(np.uint8), c)
    sum_rc = int(column_sums @ r)
    n = n_pixels
    a = n * sum_rr - sum_r * sum_r
    b = n * sum_rc - sum_r * sum_c
    d = n * sum_cc - sum_c * sum_c
    root = math.sqrt((a - d) ** 2 + 4 * b * b)
    trace_plus = a + d + root
    major = trace_plus / (2 * n * n)
    # The product of the eigenvalues is the determinant: no cancellation for the minor.
    minor = (2 * (a * d - b * b)) / (n * n * trace_plus) if trace_plus > 0 else 0.0
    return major, minor


def _apply_spacing(features, spacing):
    """PyRadiomics' features at an isotropic pixel ``spacing`` from those at unit spacing:
    areas scale by spacing**2, lengths by spacing, TotalEnergy by the pixel's area, and
    the ratios of like quantities not at all."""
    s = _SHAPE_INDEX
    area = spacing * spacing
    for name in ("MeshSurface", "PixelSurface"):
        features[s[name]] *= area
    for name in ("Perimeter", "MaximumDiameter", "MajorAxisLength", "MinorAxisLength"):
        features[s[name]] *= spacing
    features[s["PerimeterSurfaceRatio"]] /= spacing
    features[_FIRST_INDEX["TotalEnergy"]] *= area


def extract_fast(channel, region, *, bin_width=25.0, spacing=1.0):
    """The 29 features of one tile, computed as PyRadiomics does, without PyRadiomics.

    Parameters
    ----------
    channel : ndarray of shape (H, W)
        Intensities, converted to float64. Any finite values, negative ones included.
    region : ndarray of shape (H, W), bool
        The region described. It must span at least two rows and two columns (hence
        at least two pixels), as PyRadiomics requires. Non-boolean masks count every
        nonzero value as inside (the reference counts only the label 1).
    bin_width : float, default=25.0
        PyRadiomics' ``binWidth``: the histogram bin width of Entropy and Uniformity.
    spacing : float, default=1.0
        The physical size of a (square) pixel, e.g. micrometres; PyRadiomics' image
        spacing. 1.0 counts the shape features in pixels.

    Returns
    -------
    features : ndarray of shape (29,), float64
        In :data:`~hiercls.features.radiomics.names.FEATURE_NAMES` order, equal to
        :func:`~hiercls.features.radiomics.pyradiomics_backend.extract_pyradiomics` up to
        floating-point rounding.

    Raises
    ------
    ValueError
        If the shapes differ or are not 2D, ``bin_width`` is not positive, the region
        is empty, a single pixel, or within one row or column, or the channel has
        non-finite values inside the region.
    """
    channel, region, bin_width = _check_inputs(channel, region, bin_width)
    whole = bool(region.all())
    # A whole-window region needs no gather: ravel gives the same values in the same
    # (row-major) order as PyRadiomics' boolean indexing.
    values = np.ascontiguousarray(channel).ravel() if whole else channel[region]
    if not np.isfinite(values).all():
        raise ValueError("channel has non-finite values inside the region")
    features = np.empty(len(FEATURE_NAMES), dtype=np.float64)
    _firstorder(values, bin_width, features)
    _shape2d(region, features)
    if spacing != 1.0:
        if not (isinstance(spacing, (int, float, np.number)) and math.isfinite(spacing)
                and spacing > 0):
            raise ValueError(f"spacing must be a positive number; got {spacing!r}")
        _apply_spacing(features, float(spacing))
    return features


def extract_fast_batch(channels, regions, *, bin_width=25.0):
    """:func:`extract_fast` over several tiles.

    Parameters
    ----------
    channels : sequence of ndarray of shape (H_i, W_i)
    regions : sequence of ndarray of shape (H_i, W_i)
        One region per channel; the tiles may differ in size.
    bin_width : float, default=25.0

    Returns
    -------
    features : ndarray of shape (n_tiles, 29), float64

    Notes
    -----
    A plain loop: the work per tile is already vectorized, and the transformer spreads
    tiles over processes with joblib.
    """
    channels, regions = list(channels), list(regions)
    if len(channels) != len(regions):
        raise ValueError(f"got {len(channels)} channels but {len(regions)} regions")
    out = np.empty((len(channels), len(FEATURE_NAMES)), dtype=np.float64)
    for i, (channel, region) in enumerate(zip(channels, regions)):
        out[i] = extract_fast(channel, region, bin_width=bin_width)
    return out
