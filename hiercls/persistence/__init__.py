"""Model files: a fitted pipeline, with its necrosis quantifier, saved without pickle.

- :mod:`~hiercls.persistence.model_files`: :func:`save_model` and :func:`load_model`, the
  ``.hiercls`` archive (a JSON manifest and the network's state dicts);
- :mod:`~hiercls.persistence.codec`: the JSON encoding of parameter values and the
  allow-list of the classes a file may name (:func:`allowed_names`).

A layer above :mod:`hiercls.estimator` and :mod:`hiercls.evaluation`: a model file holds
the pipeline of the one and the quantifier of the other.
"""

from ..exceptions import ModelFileError
from .codec import allowed_names
from .model_files import FORMAT, MODEL_SUFFIX, load_model, save_model

__all__ = ["FORMAT", "MODEL_SUFFIX", "ModelFileError", "allowed_names", "load_model",
           "save_model"]
