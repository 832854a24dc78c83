"""The 29 radiomic features of the method, in a fixed column order."""

#: All 19 PyRadiomics first-order features, StandardDeviation (deprecated there) included.
FIRSTORDER_FEATURES = (
    "10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis",
    "Maximum", "MeanAbsoluteDeviation", "Mean", "Median", "Minimum", "Range",
    "RobustMeanAbsoluteDeviation", "RootMeanSquared", "Skewness", "StandardDeviation",
    "TotalEnergy", "Uniformity", "Variance",
)

#: All 10 PyRadiomics shape2D features, SphericalDisproportion (deprecated there) included.
SHAPE2D_FEATURES = (
    "Elongation", "MajorAxisLength", "MaximumDiameter", "MeshSurface", "MinorAxisLength",
    "Perimeter", "PerimeterSurfaceRatio", "PixelSurface", "SphericalDisproportion", "Sphericity",
)

#: Output column names, e.g. ``firstorder_Mean`` and ``shape2D_Perimeter``.
FEATURE_NAMES = tuple(f"firstorder_{name}" for name in FIRSTORDER_FEATURES) + tuple(
    f"shape2D_{name}" for name in SHAPE2D_FEATURES
)

#: A column is radiomic when its name ends like one of :data:`FEATURE_NAMES`, optionally
#: after a region prefix (``tissue__firstorder_Mean``).
RADIOMIC_COLUMN_PATTERN = r"^(?:\w+__)?(?:firstorder|shape2D)_[A-Za-z0-9]+$"
