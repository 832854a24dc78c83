"""The JSON encoding of a model file's values, and the allow-list of the names it may hold.

:func:`encode` turns a parameter's value into JSON data: numbers, strings, arrays, tuples,
dicts, and classes or objects only from :func:`allowed_names` (an object as its class name
and constructor parameters); :func:`decode` turns it back, building only the classes a
file may build and refusing every other name. :mod:`hiercls.persistence.model_files` keeps
the archive around it.
"""

import inspect
import math
import os

import numpy as np
import torch

from ..exceptions import ModelFileError

#: The module paths of releases before the layered layout that model files may name.
_OLD_MODULE_PATHS = {"model": "nn.fusion", "loss": "nn.loss", "splits": "estimator.splits"}


def _allowed():
    import skorch.callbacks
    import skorch.dataset
    import skorch.utils
    from torch.utils.data import DataLoader

    from ..estimator.splits import GroupedValidSplit
    from ..nn.fusion import FusionNet
    from ..nn.loss import FlatLoss, HierarchicalLoss

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


def encode(value, where):
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
        return {"ndarray": [encode(v, where) for v in value.tolist()],
                "dtype": value.dtype.str if value.dtype.kind != "O" else "object"}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, where) for v in value]}
    if isinstance(value, list):
        return [encode(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"cannot save {where}: a dict with keys that are not strings")
        return {"dict": {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if _name_of(value) is not None:  # an allow-listed class or function itself
        return {"class": _name_of(value)}
    if isinstance(value, type):
        name = _name_of(value)
        if name is None:
            raise ValueError(f"cannot save {where}: the class {value.__module__}."
                             f"{value.__qualname__} is not in hiercls.persistence's allow-list "
                             f"({', '.join(sorted(allowed_names()))}); save the pipeline with "
                             "joblib instead (loading that runs code from the file)")
        return {"class": name}
    name = _name_of(type(value))
    if name is None:
        raise ValueError(f"cannot save {where}: {value!r} (a {type(value).__module__}."
                         f"{type(value).__qualname__}) is not in hiercls.persistence's "
                         "allow-list; save the pipeline with joblib instead (loading that "
                         "runs code from the file)")
    return {"object": name, "params": {k: encode(v, f"{where}.{k}")
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


def decode(data, where):
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, where) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise ModelFileError(f"{where}: unexpected value {data!r}")
    if set(data) == {"tuple"}:
        return tuple(decode(v, where) for v in expect(data["tuple"], list, where))
    if set(data) == {"dict"}:
        items = expect(data["dict"], dict, where).items()
        return {k: decode(v, f"{where}[{k!r}]") for k, v in items}
    if set(data) == {"float"} and data["float"] in ("nan", "inf", "-inf"):
        return float(data["float"])
    if set(data) == {"ndarray", "dtype"}:
        dtype = data["dtype"]
        if dtype != "object" and np.dtype(dtype).kind not in "biufU":
            raise ModelFileError(f"{where}: an array of dtype {dtype!r}")
        values = decode(expect(data["ndarray"], list, where), where)
        return np.asarray(values, dtype=object if dtype == "object" else np.dtype(dtype))
    if set(data) == {"class"}:
        return _lookup(data["class"], where)
    if set(data) == {"object", "params"}:
        cls = _lookup(data["object"], where)
        if data["object"] in _REFERENCE_ONLY or not isinstance(cls, type):
            # Building is calling: only the split and callback classes are built.
            raise ModelFileError(f"{where} asks to call {data['object']!r}, which a model "
                                 "file may name but not call; refusing to load it")
        params = {k: decode(v, f"{where}.{k}")
                  for k, v in expect(data["params"], dict, where).items()}
        return cls(**params)
    raise ModelFileError(f"{where}: unexpected value {data!r}")


def expect(value, kind, where):
    if not isinstance(value, kind):
        raise ModelFileError(f"{where}: expected a {kind.__name__}, got {value!r}")
    return value


def _lookup(name, where):
    allowed_names()
    cls = _ALLOWED.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(f"{where} names {name!r}, which is not in hiercls.persistence's "
                             "allow-list; refusing to load it")
    return cls


# --- the pipeline's structure --------------------------------------------------------
