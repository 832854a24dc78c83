"""hiercls: hierarchical image + radiomics fusion for osteosarcoma H&E tiles.

The folders are the layers, each using only those above it in this list:

- :mod:`hiercls.data`: where tiles come from and what a label means (the TCIA loader,
  tile tables, decoding, the class hierarchy);
- :mod:`hiercls.features`: what is computed from a tile before learning (radiomics, stain
  normalization, resolution, frozen backbone features and their cache);
- :mod:`hiercls.nn`: what learns, in plain PyTorch (backbones, the gated fusion network,
  the hierarchical loss, augmentation);
- :mod:`hiercls.estimator`: how it is wrapped for scikit-learn (``HierarchicalFusionClassifier``,
  ``make_fusion_pipeline``, model files);
- :mod:`hiercls.evaluation`: how it is scored by patient, and the clinical answer (necrosis);
- :mod:`hiercls.reporting`: what people look at (figures, HTML reports);
- :mod:`hiercls.slides`: the same for whole slides (tiling, prediction, maps);
- :mod:`hiercls.cli`: the ``hiercls`` command, thin handlers over the above.

The names below are importable from ``hiercls`` itself; the module paths of earlier
releases (``hiercls.classifier``, ``hiercls.metrics``, ...) keep working as aliases of
their new homes (see :data:`MOVED_MODULES`); ``hiercls.evaluation`` is now the package
that exports what the module of that name did.
"""

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # what static tools (type checkers, the API docs) see; see _LAZY
    from . import slides  # noqa: F401
    from .data import datasets  # noqa: F401
    from .data.images import UnreadableTileError, check_tiles  # noqa: F401
    from .data.labels import CLASS_NAMES  # noqa: F401
    from .estimator.classifier import HierarchicalFusionClassifier  # noqa: F401
    from .estimator.persistence import load_model, save_model  # noqa: F401
    from .estimator.pipeline import make_fusion_pipeline  # noqa: F401
    from .evaluation import metrics  # noqa: F401
    from .evaluation.necrosis import necrosis_report  # noqa: F401
    from .features import resolution  # noqa: F401
    from .features.radiomics import RadiomicsTransformer  # noqa: F401
    from .features.stain_normalization import StainNormalizer  # noqa: F401
    from .slides import predict_slide  # noqa: F401

# Imported on first use (PEP 562), so that ``import hiercls.features.radiomics`` (in a
# radiomics worker process, say) does not pay for torch, skorch and timm.
_LAZY = {
    "CLASS_NAMES": ".data.labels",
    "HierarchicalFusionClassifier": ".estimator.classifier",
    "RadiomicsTransformer": ".features.radiomics",
    "StainNormalizer": ".features.stain_normalization",
    "UnreadableTileError": ".data.images",
    "check_tiles": ".data.images",
    "load_model": ".estimator.persistence",
    "make_fusion_pipeline": ".estimator.pipeline",
    "necrosis_report": ".evaluation.necrosis",
    "predict_slide": ".slides",
    "save_model": ".estimator.persistence",
}

#: Module paths of releases before the layered layout -> where that code lives now.
MOVED_MODULES = {
    "augmentation": "nn.augmentation", "backbones": "nn.backbones", "cache": "features.cache",
    "callbacks": "estimator.callbacks", "classifier": "estimator.classifier",
    "datasets": "data.datasets",
    "frozen_features": "features.frozen", "images": "data.images", "labels": "data.labels",
    "loss": "nn.loss", "metrics": "evaluation.metrics", "model": "nn.fusion",
    "necrosis": "evaluation.necrosis", "persistence": "estimator.persistence",
    "pipeline": "estimator.pipeline", "plots": "reporting.plots", "radiomics": "features.radiomics",
    "report": "reporting.html", "resolution": "features.resolution", "splits": "estimator.splits",
    "stain": "nn.stain_jitter", "tile_dataset": "estimator.tile_dataset",
}
# Of those, the ones that are also attributes of the package (``hiercls.metrics.X``).
_SUBMODULES = ("datasets", "metrics", "resolution", "slides")

__all__ = sorted([*_LAZY, *_SUBMODULES])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name == "slides":
        value = importlib.import_module(".slides", __name__)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import hiercls.classifier`` gives the module ``hiercls.estimator.classifier`` itself.

    The same module object under both names, so that ``isinstance`` checks, pickles and
    model files written by earlier releases (which name the old paths) keep working.
    """

    def find_spec(self, fullname, path=None, target=None):
        prefix = f"{__name__}."
        if not fullname.startswith(prefix):
            return None
        head, _, rest = fullname[len(prefix):].partition(".")
        if head not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        head, _, rest = spec.name[len(__name__) + 1:].partition(".")
        target = f"{__name__}.{MOVED_MODULES[head]}" + (f".{rest}" if rest else "")
        return importlib.import_module(target)

    def exec_module(self, module):
        # Executed already under its own name; importlib then records the alias.
        pass


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    # First, so that submodules of a moved package (``hiercls.radiomics.names``) are
    # aliased too rather than executed a second time under the old name.
    sys.meta_path.insert(0, _MovedModuleFinder())
