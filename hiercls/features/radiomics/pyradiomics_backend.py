"""The reference backend: PyRadiomics' own feature extractor."""

import logging

import numpy as np

from .names import FIRSTORDER_FEATURES, SHAPE2D_FEATURES

#: Settings handed to PyRadiomics besides binWidth. The tile is one 2D slice with unit
#: pixel spacing; the mask label is 1.
PYRADIOMICS_SETTINGS = {"force2D": True, "force2Ddimension": 0, "label": 1, "voxelArrayShift": 0}


def _extractor(bin_width):
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=bin_width, **PYRADIOMICS_SETTINGS)
    extractor.disableAllFeatures()
    # Naming every feature enables the deprecated StandardDeviation and
    # SphericalDisproportion too, which enabling the classes would leave out.
    extractor.enableFeaturesByName(
        firstorder=list(FIRSTORDER_FEATURES), shape2D=list(SHAPE2D_FEATURES)
    )
    return extractor


def extract_pyradiomics(channel, region, *, bin_width=25.0, spacing=1.0):
    """The 29 features of one tile, computed by PyRadiomics.

    Parameters
    ----------
    channel : ndarray of shape (H, W), float
    region : ndarray of shape (H, W), bool
    bin_width : float, default=25.0
    spacing : float, default=1.0
        The pixel spacing given to PyRadiomics (both axes).

    Returns
    -------
    features : ndarray of shape (29,), float64, in :data:`~hiercls.features.radiomics.names.FEATURE_NAMES` order.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(channel, dtype=np.float64))
    mask = sitk.GetImageFromArray(np.asarray(region, dtype=np.uint8))
    if spacing != 1.0:
        image.SetSpacing((float(spacing), float(spacing)))
        mask.SetSpacing((float(spacing), float(spacing)))
    result = _extractor(bin_width).execute(image, mask)
    values = [result[f"original_firstorder_{name}"] for name in FIRSTORDER_FEATURES]
    values += [result[f"original_shape2D_{name}"] for name in SHAPE2D_FEATURES]
    return np.array([float(v) for v in values], dtype=np.float64)
