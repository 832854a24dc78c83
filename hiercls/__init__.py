"""hiercls: hierarchical image + radiomics fusion for osteosarcoma H&E tiles.

The package's pieces, one concept per module:

- :mod:`hiercls.radiomics`: what a tile's radiomic vector is (``RadiomicsTransformer``);
- :mod:`hiercls.model` and :mod:`hiercls.loss`: what learns (the gated fusion network and
  the hierarchical loss);
- :mod:`hiercls.classifier`: how it is wrapped for scikit-learn (``HierarchicalFusionClassifier``);
- :mod:`hiercls.resolution`: the physical size of a pixel (``TileResampler``, the TCIA figures);
- :mod:`hiercls.pipeline`: the four steps as one Pipeline (``make_fusion_pipeline``);
- :mod:`hiercls.metrics` and :mod:`hiercls.evaluation`: how it is scored, by patient;
- :mod:`hiercls.necrosis`, :mod:`hiercls.plots`, :mod:`hiercls.report`: the clinical answer
  (necrosis per patient) and what people look at;
- :mod:`hiercls.persistence`: model files that load without running code from the file
  (``save_model``, ``load_model``);
- :mod:`hiercls.datasets`: where tiles come from; :mod:`hiercls.slides`: tiles, predictions
  and maps of whole slides; :mod:`hiercls.cli`: the ``hiercls`` command.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what static tools (type checkers, the API docs) see; see _LAZY
    from . import datasets, metrics, resolution, slides  # noqa: F401
    from .classifier import HierarchicalFusionClassifier  # noqa: F401
    from .labels import CLASS_NAMES  # noqa: F401
    from .necrosis import necrosis_report  # noqa: F401
    from .persistence import load_model, save_model  # noqa: F401
    from .pipeline import make_fusion_pipeline  # noqa: F401
    from .slides import predict_slide  # noqa: F401
    from .images import UnreadableTileError, check_tiles  # noqa: F401
    from .radiomics import RadiomicsTransformer  # noqa: F401

# Imported on first use (PEP 562), so that ``import hiercls.radiomics`` (in a radiomics
# worker process, say) does not pay for torch, skorch and timm.
_LAZY = {
    "CLASS_NAMES": ".labels",
    "HierarchicalFusionClassifier": ".classifier",
    "RadiomicsTransformer": ".radiomics",
    "UnreadableTileError": ".images",
    "check_tiles": ".images",
    "load_model": ".persistence",
    "make_fusion_pipeline": ".pipeline",
    "necrosis_report": ".necrosis",
    "predict_slide": ".slides",
    "save_model": ".persistence",
}
_SUBMODULES = ("datasets", "metrics", "resolution", "slides")

__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
