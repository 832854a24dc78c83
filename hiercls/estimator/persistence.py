"""Model files whose loading runs no code from the file: :func:`save_model`, :func:`load_model`.

A pickle (``joblib.dump``, ``pickle.dump``) can execute arbitrary code when it is loaded,
so a pickled model is only as safe as its sender (scikit-learn's "Model persistence"
page says the same). A ``.hiercls`` file holds only data:

- ``hiercls-model.json``: the pipeline's parameters and fitted statistics as plain JSON
  (the resolution, the stain normalization's target, the radiomics settings, the scaler's
  mean and scale, the classifier's parameters, ``classes_``, ``radiomic_columns_``,
  ``class_weights_``, ``data_config_``);
- ``module.pt`` and ``criterion.pt``: the network's and the loss's state dicts (the
  weights, the learned log-variances), written with ``torch.save`` and read with
  ``torch.load(weights_only=True)``, which accepts tensors and plain containers only.

The file is a zip archive of those three members. Parameters that are classes or objects
(``module=FusionNet``, ``criterion=HierarchicalLoss``, ``optimizer=AdamW``,
``train_split=GroupedValidSplit(0.2)``, skorch callbacks, ...) are written as names from
:func:`allowed_names`, an explicit allow-list; saving anything else fails with an error naming
the parameter, and loading a name outside the list is refused. :func:`load_model` rebuilds
the pipeline with :func:`~hiercls.make_fusion_pipeline` and the steps' public parameters,
builds the backbone with random weights (nothing is downloaded or read from where the
weights first came from) and loads the saved ones, so its ``predict_proba`` equals the
saved pipeline's bit for bit on the same device.

What is not kept: the training history and the optimizer's state (a refit starts afresh).
"""

import inspect
import io
import json
import math
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import timm
import torch
from torch.torch_version import TorchVersion
from ..exceptions import ModelFileError  # noqa: F401  (its home before)

__all__ = ["FORMAT", "MODEL_SUFFIX", "ModelFileError", "allowed_names", "load_model", "save_model"]

#: Name of the format, recorded in the file.
FORMAT = "hiercls-model"
#: Version of the format this module writes. Version 3 added the ``stain`` step; an
#: earlier hiercls refuses such a file rather than predict without its normalization.
FORMAT_VERSION = 3
#: The versions this module reads: version 2 files (no ``stain`` step) load with the
#: step off (``StainNormalizer(method=None)``), which is what they computed.
READ_VERSIONS = (2, 3)
#: The suffix of a model file (``hiercls fit --model model.hiercls``).
MODEL_SUFFIX = ".hiercls"

_MANIFEST = "hiercls-model.json"
_STATE_FILES = {"module": "module.pt", "criterion": "criterion.pt"}


_TORCH_VERSION = TorchVersion(torch.__version__)



#: The module paths of releases before the layered layout that model files may name.
_OLD_MODULE_PATHS = {"model": "nn.fusion", "loss": "nn.loss", "splits": "estimator.splits"}


def _allowed():
    import skorch.callbacks
    import skorch.dataset
    import skorch.utils
    from torch.utils.data import DataLoader

    from ..nn.loss import FlatLoss, HierarchicalLoss
    from ..nn.fusion import FusionNet
    from .splits import GroupedValidSplit

    names = {
        "hiercls.nn.fusion.FusionNet": FusionNet,
        "hiercls.nn.loss.HierarchicalLoss": HierarchicalLoss,
        "hiercls.nn.loss.FlatLoss": FlatLoss,
        "hiercls.estimator.splits.GroupedValidSplit": GroupedValidSplit,
        "skorch.dataset.Dataset": skorch.dataset.Dataset,
        "skorch.dataset.ValidSplit": skorch.dataset.ValidSplit,
        "torch.utils.data.DataLoader": DataLoader,
    }
    for optimizer in ("Adam", "AdamW", "SGD", "RMSprop"):
        names[f"torch.optim.{optimizer}"] = getattr(torch.optim, optimizer)
    for scheduler in ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
                      "ReduceLROnPlateau", "OneCycleLR", "LinearLR"):
        names[f"torch.optim.lr_scheduler.{scheduler}"] = getattr(torch.optim.lr_scheduler,
                                                                 scheduler)
    for callback in ("EarlyStopping", "LRScheduler", "GradientNormClipping", "ProgressBar",
                     "EpochScoring"):
        names[f"skorch.callbacks.{callback}"] = getattr(skorch.callbacks, callback)
    # Defaults of skorch's callbacks (sink, target_extractor).
    names["builtins.print"] = print
    names["skorch.utils.to_numpy"] = skorch.utils.to_numpy
    # Files written before the layered layout name the old module paths; saving uses
    # the first name of an object, the new one.
    for old, new in _OLD_MODULE_PATHS.items():
        for name, obj in list(names.items()):
            if name.startswith(f"hiercls.{new}."):
                names.setdefault(f"hiercls.{old}.{name[len(f'hiercls.{new}.'):]}", obj)
    return names


#: Allow-listed names a file may refer to but never call: functions, and classes whose
#: construction from the file's arguments is never needed (skorch takes them as classes).
_REFERENCE_ONLY = frozenset({"builtins.print", "skorch.utils.to_numpy", "skorch.dataset.Dataset",
                             "torch.utils.data.DataLoader"})


_ALLOWED = {}


def allowed_names():
    """The allow-list: the classes a model file may name, by qualified name.

    A parameter may be one of these classes (``optimizer=torch.optim.AdamW``) or an object
    of one, rebuilt from its constructor parameters (``train_split=GroupedValidSplit(0.2)``,
    ``callbacks=[LRScheduler(...)]``), whose values follow the same rules.

    Returns
    -------
    names : dict of str to type
    """
    if not _ALLOWED:
        _ALLOWED.update(_allowed())
    return dict(_ALLOWED)


# --- encoding parameters as plain JSON -----------------------------------------------

def _name_of(obj):
    allowed_names()
    for name, allowed in _ALLOWED.items():
        if allowed is obj:
            return name
    return None


def _encode(value, where):
    """``value`` as JSON data; classes and objects only from the allow-list."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, os.PathLike):  # pretrained=Path(...), cache=Path(...)
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufU" and not (
                value.dtype.kind == "O" and all(isinstance(v, str) for v in value.ravel())):
            raise ValueError(f"cannot save {where}: an array of dtype {value.dtype} "
                             "(expected numbers or strings)")
        return {"ndarray": [_encode(v, where) for v in value.tolist()],
                "dtype": value.dtype.str if value.dtype.kind != "O" else "object"}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"cannot save {where}: a dict with keys that are not strings")
        return {"dict": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if _name_of(value) is not None:  # an allow-listed class or function itself
        return {"class": _name_of(value)}
    if isinstance(value, type):
        name = _name_of(value)
        if name is None:
            raise ValueError(f"cannot save {where}: the class {value.__module__}."
                             f"{value.__qualname__} is not in hiercls.estimator.persistence's allow-list "
                             f"({', '.join(sorted(allowed_names()))}); save the pipeline with "
                             "joblib instead (loading that runs code from the file)")
        return {"class": name}
    name = _name_of(type(value))
    if name is None:
        raise ValueError(f"cannot save {where}: {value!r} (a {type(value).__module__}."
                         f"{type(value).__qualname__}) is not in hiercls.estimator.persistence's "
                         "allow-list; save the pipeline with joblib instead (loading that "
                         "runs code from the file)")
    return {"object": name, "params": {k: _encode(v, f"{where}.{k}")
                                       for k, v in _constructor_params(value).items()}}


def _constructor_params(obj):
    # The scikit-learn convention: every constructor argument is stored under its name.
    params = {}
    for name, parameter in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        params[name] = getattr(obj, name)
    if hasattr(obj, "kwargs") and isinstance(obj.kwargs, dict):  # skorch's LRScheduler
        params.update(obj.kwargs)
    return params


def _decode(data, where):
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [_decode(v, where) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise ModelFileError(f"{where}: unexpected value {data!r}")
    if set(data) == {"tuple"}:
        return tuple(_decode(v, where) for v in _expect(data["tuple"], list, where))
    if set(data) == {"dict"}:
        items = _expect(data["dict"], dict, where).items()
        return {k: _decode(v, f"{where}[{k!r}]") for k, v in items}
    if set(data) == {"float"} and data["float"] in ("nan", "inf", "-inf"):
        return float(data["float"])
    if set(data) == {"ndarray", "dtype"}:
        dtype = data["dtype"]
        if dtype != "object" and np.dtype(dtype).kind not in "biufU":
            raise ModelFileError(f"{where}: an array of dtype {dtype!r}")
        values = _decode(_expect(data["ndarray"], list, where), where)
        return np.asarray(values, dtype=object if dtype == "object" else np.dtype(dtype))
    if set(data) == {"class"}:
        return _lookup(data["class"], where)
    if set(data) == {"object", "params"}:
        cls = _lookup(data["object"], where)
        if data["object"] in _REFERENCE_ONLY or not isinstance(cls, type):
            # Building is calling: only the split and callback classes are built.
            raise ModelFileError(f"{where} asks to call {data['object']!r}, which a model "
                                 "file may name but not call; refusing to load it")
        params = {k: _decode(v, f"{where}.{k}")
                  for k, v in _expect(data["params"], dict, where).items()}
        return cls(**params)
    raise ModelFileError(f"{where}: unexpected value {data!r}")


def _expect(value, kind, where):
    if not isinstance(value, kind):
        raise ModelFileError(f"{where}: expected a {kind.__name__}, got {value!r}")
    return value


def _lookup(name, where):
    allowed_names()
    cls = _ALLOWED.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(f"{where} names {name!r}, which is not in hiercls.estimator.persistence's "
                             "allow-list; refusing to load it")
    return cls


# --- the pipeline's structure --------------------------------------------------------

def _check_structure(pipeline):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from .classifier import HierarchicalFusionClassifier
    from .pipeline import STEP_NAMES, make_radiomics_scaler
    from ..features.radiomics import RadiomicsTransformer
    from ..features.resolution import TileResampler
    from ..features.stain_normalization import StainNormalizer

    if not isinstance(pipeline, Pipeline) or tuple(pipeline.named_steps) != STEP_NAMES:
        raise ValueError(f"save_model saves a pipeline of make_fusion_pipeline, with the steps "
                         f"{STEP_NAMES}; got {pipeline!r}")
    if pipeline.memory is not None:
        raise ValueError(f"cannot save the pipeline's memory={pipeline.memory!r}; expected None")
    resolution, stain, radiomics, scale, classifier = (pipeline.named_steps[name]
                                                       for name in STEP_NAMES)
    for name, step, kind in (("resolution", resolution, TileResampler),
                             ("stain", stain, StainNormalizer),
                             ("radiomics", radiomics, RadiomicsTransformer),
                             ("scale", scale, ColumnTransformer),
                             ("classifier", classifier, HierarchicalFusionClassifier)):
        if type(step) is not kind:
            raise ValueError(f"cannot save the step {name!r}: a {type(step).__name__}; "
                             f"expected a {kind.__name__} as make_fusion_pipeline makes it")
    # The scaler must be make_radiomics_scaler's, up to the StandardScaler's own parameters.
    default = make_radiomics_scaler()
    ours = {k: v for k, v in scale.get_params(deep=False).items() if k != "transformers"}
    theirs = {k: v for k, v in default.get_params(deep=False).items() if k != "transformers"}
    (name, scaler, selector), = (scale.transformers if len(scale.transformers) == 1
                                 else [(None, None, None)])
    (_, _, default_selector), = default.transformers
    # (Its pandas output is make_radiomics_scaler's again after loading.)
    if (ours != theirs or name != "radiomics" or type(scaler) is not StandardScaler
            or type(selector) is not type(default_selector)
            or vars(selector) != vars(default_selector)):
        raise ValueError("cannot save the step 'scale': it is not make_radiomics_scaler()'s "
                         "ColumnTransformer (only its StandardScaler's parameters may differ)")
    return resolution, stain, radiomics, scale, classifier


def _state_dict(module):
    return {key: tensor.detach().cpu().clone() for key, tensor in module.state_dict().items()}


def save_model(pipeline, path):
    """Save a fitted :func:`~hiercls.make_fusion_pipeline` pipeline as a ``.hiercls`` file.

    Loading the file (:func:`load_model`) runs no code from it, unlike a pickle.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Fitted, with the steps ``resolution``, ``stain``, ``radiomics``, ``scale``,
        ``classifier`` of
        :func:`~hiercls.make_fusion_pipeline`.
    path : str or path-like
        The file to write, ending in ``.hiercls``; its folder must exist.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the pipeline is not fitted.
    ValueError
        If ``path`` does not end in ``.hiercls``, the pipeline is not one of
        :func:`~hiercls.make_fusion_pipeline`, or a parameter is a class or object outside
        the allow-list (the error names the parameter).

    See Also
    --------
    load_model : read it back.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from hiercls import load_model, make_fusion_pipeline, save_model
    >>> from hiercls.data.datasets import make_synthetic_tiles
    >>> X, y, groups = make_synthetic_tiles(n_tiles=12, n_patients=2, size=32)
    >>> pipe = make_fusion_pipeline(backbone="test_efficientnet", image_size=32, embed_dim=8,
    ...                             max_epochs=1, train_split=None, verbose=0, random_state=0,
    ...                             radiomics__cache=None).fit(X, y)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.hiercls"
    >>> save_model(pipe, path)
    >>> restored = load_model(path)
    >>> bool((restored.predict_proba(X) == pipe.predict_proba(X)).all())
    True
    """
    from sklearn.utils.validation import check_is_fitted

    path = Path(path)
    if path.suffix.lower() != MODEL_SUFFIX:
        raise ValueError(f"path {str(path)!r} must end in {MODEL_SUFFIX}")
    resolution, stain, radiomics, scale, classifier = _check_structure(pipeline)
    check_is_fitted(resolution, "training_resolution_")
    check_is_fitted(stain, "n_fit_tiles_")
    check_is_fitted(radiomics, "feature_names_in_")
    check_is_fitted(scale, "transformers_")
    classifier.check_is_fitted()
    scaler = scale.named_transformers_["radiomics"]

    def params(step, prefix):
        return {k: _encode(v, f"{prefix}__{k}")
                for k, v in step.get_params(deep=False).items() if not k.startswith("_")}

    def fitted(step, prefix):
        return {k: _encode(v, f"{prefix} {k}") for k, v in step.get_fitted_state().items()}

    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "hiercls": _version(),
        # Each step says what it learned (get_fitted_state); the file encodes it.
        "resolution": {"params": params(resolution, "resolution"),
                       **fitted(resolution, "resolution")},
        "stain": {"params": params(stain, "stain"), **fitted(stain, "stain")},
        "radiomics": {"params": params(radiomics, "radiomics"), **fitted(radiomics, "radiomics")},
        "scale": {
            "params": {k: _encode(v, f"scale__radiomics__{k}")
                       for k, v in scaler.get_params(deep=False).items()},
            "feature_names_in_": [str(c) for c in scale.feature_names_in_],
            "mean_": _encode(scaler.mean_, "scale mean_"),
            "var_": _encode(scaler.var_, "scale var_"),
            "scale_": _encode(scaler.scale_, "scale scale_"),
            "n_samples_seen_": _encode(scaler.n_samples_seen_, "scale n_samples_seen_"),
        },
        "classifier": {
            "params": params(classifier, "classifier"),
            "classes_": _encode(np.asarray(classifier.classes_), "classifier classes_"),
            "radiomic_columns_": list(classifier.radiomic_columns_),
            "class_weights_": _encode(classifier.class_weights_, "classifier class_weights_"),
            "data_config_": _encode(classifier.data_config_, "classifier data_config_"),
        },
    }
    states = {"module": _state_dict(classifier.module_),
              "criterion": _state_dict(classifier.criterion_)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_MANIFEST, json.dumps(manifest, indent=1, allow_nan=False))
        for key, member in _STATE_FILES.items():
            buffer = io.BytesIO()
            torch.save(states[key], buffer)
            archive.writestr(member, buffer.getvalue())


def _version():
    from .. import __version__

    return __version__


def _read(path):
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if _TORCH_VERSION < (2, 6):
        # Before 2.6, torch.load(weights_only=True) could be made to run code (CVE-2025-32434).
        raise ModelFileError(f"loading {str(path)!r} safely needs torch >= 2.6 (installed: "
                             f"{torch.__version__}); upgrade torch")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{str(path)!r} is not a {MODEL_SUFFIX} model file (not a zip "
                             "archive); a pickled model (.joblib, .pkl) is loaded with joblib, "
                             "which runs code from the file")
    try:
        return _read_archive(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, RecursionError, UnicodeDecodeError) as error:
        # A damaged file (a flipped byte fails the CRC) or one built to crash the reader.
        raise ModelFileError(f"{str(path)!r} is damaged or not a {MODEL_SUFFIX} model file "
                             f"({type(error).__name__}: {' '.join(str(error).split())[:200]})"
                             ) from None


def _read_archive(path):
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        expected = {_MANIFEST, *_STATE_FILES.values()}
        if names != expected:
            raise ModelFileError(f"{str(path)!r} holds {sorted(names)}; expected exactly "
                                 f"{sorted(expected)}")
        try:
            manifest = json.loads(archive.read(_MANIFEST).decode("utf-8"))
        except ValueError as error:
            raise ModelFileError(f"{str(path)!r}: {_MANIFEST} is not JSON ({error})") from None
        states = {}
        for key, member in _STATE_FILES.items():
            try:
                state = torch.load(io.BytesIO(archive.read(member)), map_location="cpu",
                                   weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
                raise ModelFileError(
                    f"{str(path)!r}: {member} is not a plain state dict; torch.load("
                    f"weights_only=True) refused it ({type(error).__name__}: "
                    f"{' '.join(str(error).split())[:300]})") from None
            if not (isinstance(state, dict) and all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
                raise ModelFileError(f"{str(path)!r}: {member} is not a state dict "
                                     "(names to tensors)")
            states[key] = state
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{str(path)!r} is not a {FORMAT} file")
    if manifest.get("version") not in READ_VERSIONS:
        raise ModelFileError(f"{str(path)!r} has format version {manifest.get('version')!r}; "
                             f"this hiercls reads versions {list(READ_VERSIONS)}")
    return manifest, states


def _load_state(module, state, what, path):
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"{str(path)!r}: the {what} weights do not fit the model the file "
                             f"describes (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape or tensor.dtype != expected[key].dtype:
            raise ModelFileError(
                f"{str(path)!r}: the {what} tensor {key!r} has shape {tuple(tensor.shape)} "
                f"({tensor.dtype}); the model the file describes has "
                f"{tuple(expected[key].shape)} ({expected[key].dtype})")
    module.load_state_dict(state, strict=True)


def load_model(path, *, device=None):
    """Load a ``.hiercls`` model file written by :func:`save_model` or ``hiercls fit``.

    Nothing in the file is executed: the weights are read with
    ``torch.load(weights_only=True)``, everything else is JSON, and classes are looked up
    in an allow-list. The backbone is built with random weights and filled with the saved
    ones; nothing is downloaded.

    Parameters
    ----------
    path : str or path-like
        The ``.hiercls`` file.
    device : str or None, default=None
        The classifier's ``device``; None keeps the saved one (``"auto"`` by default).

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        The fitted pipeline; its ``predict_proba`` equals the saved one's.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is not a ``.hiercls`` model, or was altered: a member that is not a
        plain state dict, a class outside the allow-list, tensors that do not fit the model
        its parameters describe.

    See Also
    --------
    save_model : write one.
    """
    from .pipeline import make_fusion_pipeline

    path = Path(path)
    manifest, states = _read(path)
    try:
        radiomics = _expect(manifest["radiomics"], dict, "radiomics")
        scale = _expect(manifest["scale"], dict, "scale")
        classifier = _expect(manifest["classifier"], dict, "classifier")
        resolution = _expect(manifest["resolution"], dict, "resolution")
        params = {f"resolution__{k}": _decode(v, f"resolution__{k}")
                  for k, v in _expect(resolution["params"], dict, "resolution params").items()}
        # Version 2 files predate the stain step: it stays off, as it was.
        stain = (_expect(manifest["stain"], dict, "stain") if manifest["version"] >= 3
                 else None)
        if stain is not None:
            params.update({f"stain__{k}": _decode(v, f"stain__{k}")
                           for k, v in _expect(stain["params"], dict, "stain params").items()})
        params.update({f"radiomics__{k}": _decode(v, f"radiomics__{k}")
                       for k, v in _expect(radiomics["params"], dict, "radiomics params").items()})
        params.update({f"scale__radiomics__{k}": _decode(v, f"scale__radiomics__{k}")
                       for k, v in _expect(scale["params"], dict, "scale params").items()})
        classifier_params = {k: _decode(v, f"classifier__{k}") for k, v in
                             _expect(classifier["params"], dict, "classifier params").items()}
        if device is not None:
            classifier_params["device"] = device
        backbone = classifier_params.get("backbone")
        if classifier_params.get("use_image", True) and not (
                isinstance(backbone, str) and timm.is_model(backbone)):
            # Names like "hf-hub:..." or "local-dir:..." make timm read files or the network.
            raise ModelFileError(f"{str(path)!r}: backbone {backbone!r} is not a timm "
                                 "architecture name (timm.list_models())")
        params.update({f"classifier__{k}": v for k, v in classifier_params.items()})
        for name in ("radiomics__cache", "classifier__cache"):
            # A cache folder is the saving machine's: a shared file must not write there.
            if params.get(name) not in (None, False, "auto"):
                params[name] = "auto"
        # A saved model is rebuilt from its own parameters, never a preset's.
        pipeline = make_fusion_pipeline(preset="none", **params)
        pipeline.named_steps["resolution"].set_fitted_state(_fitted(resolution, "resolution"))
        if stain is None:
            # Off, fitted on what the resolution step passes on: the columns it was fitted on.
            pipeline.named_steps["stain"].fit(_frame([str(c) for c in resolution["feature_names_in_"]]))
        else:
            pipeline.named_steps["stain"].set_fitted_state(_fitted(stain, "stain"))
        pipeline.named_steps["radiomics"].set_fitted_state(_fitted(radiomics, "radiomics"))
        _restore_scale(pipeline.named_steps["scale"], scale)
        _restore_classifier(pipeline.named_steps["classifier"], classifier, states, path)
    except ModelFileError:
        raise
    except KeyError as error:
        raise ModelFileError(f"{str(path)!r}: {_MANIFEST} lacks the entry {error}") from None
    except RecursionError:
        raise ModelFileError(f"{str(path)!r}: {_MANIFEST} is nested too deeply") from None
    except (TypeError, ValueError, AttributeError) as error:
        # Entries that do not fit together (columns without 'image', a wrong dtype, ...).
        raise ModelFileError(f"{str(path)!r}: its entries do not make a fitted pipeline "
                             f"({type(error).__name__}: {error})") from None
    return pipeline


def _frame(columns):
    import pandas as pd

    # One blank row: the steps' fit records the columns; the statistics are set after.
    return pd.DataFrame({column: [0.0] for column in columns})


def _fitted(saved, where):
    """A step's entry of the manifest, less its parameters, decoded."""
    return {k: _decode(v, f"{where} {k}") for k, v in saved.items() if k != "params"}


def _restore_scale(step, saved):
    columns = [str(c) for c in _expect(saved["feature_names_in_"], list, "scale columns")]
    step.fit(_frame(columns))
    scaler = step.named_transformers_["radiomics"]
    for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
        value = _decode(saved[name], f"scale {name}")
        current = getattr(scaler, name)
        if value is not None and np.shape(value) != np.shape(current):
            raise ModelFileError(f"scale {name} has shape {np.shape(value)}; the scaler's "
                                 f"columns need {np.shape(current)}")
        setattr(scaler, name, value)


def _restore_classifier(clf, saved, states, path):
    classes = _decode(saved["classes_"], "classifier classes_")
    clf.classes_inferred_ = classes
    clf.radiomic_columns_ = [str(c) for c in _expect(saved["radiomic_columns_"], list,
                                                     "radiomic_columns_")]
    clf.class_weights_ = _decode(saved["class_weights_"], "classifier class_weights_")
    data_config = _decode(saved["data_config_"], "classifier data_config_")
    pretrained = clf.pretrained
    # Random weights, loaded over below: nothing is downloaded or read from the source of
    # the original weights. Building them must not disturb the caller's random stream.
    clf.set_params(pretrained=False)
    try:
        with torch.random.fork_rng(devices=[]):
            clf.initialize()
    finally:
        clf.set_params(pretrained=pretrained)
    _load_state(clf.module_, states["module"], "network", path)
    _load_state(clf.criterion_, states["criterion"], "loss", path)
    # The preprocessing the weights were trained with, not that of random weights.
    clf.data_config_ = data_config
    if hasattr(clf.module_, "data_config"):
        clf.module_.data_config = data_config
    augmentation = getattr(clf.module_, "augmentation", None)
    if data_config and hasattr(augmentation, "mean"):
        augmentation.mean.copy_(torch.as_tensor(data_config["mean"]).view_as(augmentation.mean))
        augmentation.std.copy_(torch.as_tensor(data_config["std"]).view_as(augmentation.std))
