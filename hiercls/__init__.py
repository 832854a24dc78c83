"""hiercls: hierarchical image + radiomics fusion for osteosarcoma H&E tiles.

The folders are the layers, each using only those above it in this list:

- :mod:`hiercls.exceptions`, :mod:`hiercls.validation`: the package's errors and
  warnings, and the one check of a number;
- :mod:`hiercls.data`: where tiles come from and what a label means (the TCIA loader,
  tile tables, decoding, the class hierarchy);
- :mod:`hiercls.nn`: what learns, in plain PyTorch (backbones, the gated fusion network,
  the hierarchical loss, augmentation, seeding);
- :mod:`hiercls.features`: what is computed from a tile before learning (radiomics, stain
  normalization, resolution, frozen backbone features and their cache);
- :mod:`hiercls.estimator`: how it is wrapped for scikit-learn (``HierarchicalFusionClassifier``,
  its parameters, ``make_fusion_pipeline``);
- :mod:`hiercls.evaluation`: how it is scored by patient, and the clinical answer (necrosis);
- :mod:`hiercls.persistence`: model files (the pipeline and its necrosis quantifier);
- :mod:`hiercls.reporting`: what people look at (figures, HTML reports);
- :mod:`hiercls.slides`: the same for whole slides (tiling, prediction, maps);
- :mod:`hiercls.cli`: the ``hiercls`` command, thin handlers over the above.

The names below are importable from ``hiercls`` itself, loaded on first use.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("hiercls")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:  # what static tools (type checkers, the API docs) see; see _LAZY
    from . import exceptions, slides  # noqa: F401
    from .data import datasets  # noqa: F401
    from .data.images import UnreadableTileError, check_tiles  # noqa: F401
    from .data.labels import CLASS_NAMES  # noqa: F401
    from .estimator.classifier import HierarchicalFusionClassifier  # noqa: F401
    from .estimator.pipeline import make_fusion_pipeline  # noqa: F401
    from .evaluation import metrics  # noqa: F401
    from .evaluation.necrosis import necrosis_report  # noqa: F401
    from .features import resolution  # noqa: F401
    from .features.radiomics import RadiomicsTransformer  # noqa: F401
    from .features.stain_normalization import StainNormalizer  # noqa: F401
    from .persistence import load_model, save_model  # noqa: F401
    from .slides import predict_slide  # noqa: F401

# Imported on first use (PEP 562), so that ``import hiercls.features.radiomics`` (in a
# radiomics worker process, say) does not pay for torch, skorch and timm.
_LAZY = {
    "CLASS_NAMES": ".data.labels",
    "HierarchicalFusionClassifier": ".estimator.classifier",
    "RadiomicsTransformer": ".features.radiomics",
    "StainNormalizer": ".features.stain_normalization",
    "UnreadableTileError": ".exceptions",
    "check_tiles": ".data.images",
    "load_model": ".persistence",
    "make_fusion_pipeline": ".estimator.pipeline",
    "necrosis_report": ".evaluation.necrosis",
    "predict_slide": ".slides",
    "save_model": ".persistence",
}

#: Submodules that are attributes of the package (``hiercls.metrics.paper_scorers()``).
_SUBMODULES = {"datasets": ".data.datasets", "exceptions": ".exceptions",
               "metrics": ".evaluation.metrics", "resolution": ".features.resolution",
               "slides": ".slides"}

__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name], __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
