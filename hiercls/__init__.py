"""hiercls: hierarchical image + radiomics fusion for osteosarcoma H&E tiles.

The package's pieces, one concept per module:

- :mod:`hiercls.radiomics`: what a tile's radiomic vector is (``RadiomicsTransformer``);
- :mod:`hiercls.model` and :mod:`hiercls.loss`: what learns (the gated fusion network and
  the hierarchical loss);
- :mod:`hiercls.classifier`: how it is wrapped for scikit-learn (``HierarchicalFusionClassifier``);
- :mod:`hiercls.pipeline`: the three steps as one Pipeline (``make_fusion_pipeline``);
- :mod:`hiercls.metrics` and :mod:`hiercls.evaluation`: how it is scored, by patient;
- :mod:`hiercls.necrosis`, :mod:`hiercls.plots`, :mod:`hiercls.report`: the clinical answer
  (necrosis per patient) and what people look at;
- :mod:`hiercls.datasets`: where tiles come from; :mod:`hiercls.cli`: the ``hiercls`` command.
"""

from . import datasets, metrics
from .classifier import HierarchicalFusionClassifier
from .labels import CLASS_NAMES
from .necrosis import necrosis_report
from .pipeline import make_fusion_pipeline
from .radiomics import RadiomicsTransformer

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "HierarchicalFusionClassifier",
    "RadiomicsTransformer",
    "datasets",
    "make_fusion_pipeline",
    "metrics",
    "necrosis_report",
]
