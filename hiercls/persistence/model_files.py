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

import io
import json
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import timm
import torch
from torch.torch_version import TorchVersion

from ..exceptions import ModelFileError
from .codec import decode, encode, expect

__all__ = ["FORMAT", "MODEL_SUFFIX", "load_model", "save_model"]

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



def _check_structure(pipeline):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from ..estimator.classifier import HierarchicalFusionClassifier
    from ..estimator.pipeline import STEP_NAMES, make_radiomics_scaler
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
        The file to write, ending in ``.hiercls``; its folder must exist. A fitted
        :class:`~hiercls.evaluation.quantification.PrevalenceQuantifier` set as
        ``pipeline.necrosis_quantifier_`` (what ``hiercls fit --calibration`` does) is
        saved with it: its calibration set, as JSON numbers.

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
    >>> pipe = make_fusion_pipeline(backbone="test_efficientnet", freeze_backbone=False,
    ...                             image_size=32, embed_dim=8, max_epochs=1, train_split=None,
    ...                             verbose=0, random_state=0, radiomics__cache=None).fit(X, y)
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
        return {k: encode(v, f"{prefix}__{k}")
                for k, v in step.get_params(deep=False).items() if not k.startswith("_")}

    def fitted(step, prefix):
        return {k: encode(v, f"{prefix} {k}") for k, v in step.get_fitted_state().items()}

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
            "params": {k: encode(v, f"scale__radiomics__{k}")
                       for k, v in scaler.get_params(deep=False).items()},
            "feature_names_in_": [str(c) for c in scale.feature_names_in_],
            "mean_": encode(scaler.mean_, "scale mean_"),
            "var_": encode(scaler.var_, "scale var_"),
            "scale_": encode(scaler.scale_, "scale scale_"),
            "n_samples_seen_": encode(scaler.n_samples_seen_, "scale n_samples_seen_"),
        },
        "classifier": {
            "params": params(classifier, "classifier"),
            "classes_": encode(np.asarray(classifier.classes_), "classifier classes_"),
            "radiomic_columns_": list(classifier.radiomic_columns_),
            "class_weights_": encode(classifier.class_weights_, "classifier class_weights_"),
            "data_config_": encode(classifier.data_config_, "classifier data_config_"),
        },
    }
    domains = getattr(classifier, "adversary_domains_", None)
    if domains is not None:
        # The groups a patient adversary tells apart: its head's width (adversary_by).
        manifest["classifier"]["adversary_domains_"] = [str(d) for d in domains]
    quantifier = getattr(pipeline, "necrosis_quantifier_", None)
    if quantifier is not None:
        # The calibration set of the necrosis quantifier (hiercls fit --calibration): JSON
        # numbers, refitted on loading. Readers that do not know the entry ignore it.
        manifest["necrosis_quantifier"] = quantifier.get_fitted_state()
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
        The fitted pipeline; its ``predict_proba`` equals the saved one's. A file saved
        with a necrosis quantifier (``hiercls fit --calibration``) gives it back as
        ``pipeline.necrosis_quantifier_``, which
        :func:`~hiercls.evaluation.necrosis.necrosis_report` uses.

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
    from ..estimator.pipeline import make_fusion_pipeline

    path = Path(path)
    manifest, states = _read(path)
    try:
        radiomics = expect(manifest["radiomics"], dict, "radiomics")
        scale = expect(manifest["scale"], dict, "scale")
        classifier = expect(manifest["classifier"], dict, "classifier")
        resolution = expect(manifest["resolution"], dict, "resolution")
        params = {f"resolution__{k}": decode(v, f"resolution__{k}")
                  for k, v in expect(resolution["params"], dict, "resolution params").items()}
        # Version 2 files predate the stain step: it stays off, as it was.
        stain = (expect(manifest["stain"], dict, "stain") if manifest["version"] >= 3
                 else None)
        if stain is not None:
            params.update({f"stain__{k}": decode(v, f"stain__{k}")
                           for k, v in expect(stain["params"], dict, "stain params").items()})
        params.update({f"radiomics__{k}": decode(v, f"radiomics__{k}")
                       for k, v in expect(radiomics["params"], dict, "radiomics params").items()})
        params.update({f"scale__radiomics__{k}": decode(v, f"scale__radiomics__{k}")
                       for k, v in expect(scale["params"], dict, "scale params").items()})
        classifier_params = {k: decode(v, f"classifier__{k}") for k, v in
                             expect(classifier["params"], dict, "classifier params").items()}
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
        if "necrosis_quantifier" in manifest:
            # Imported here: QuaPy takes seconds to import, and most files have no quantifier.
            from ..evaluation.quantification import PrevalenceQuantifier

            state = expect(manifest["necrosis_quantifier"], dict, "necrosis_quantifier")
            pipeline.necrosis_quantifier_ = PrevalenceQuantifier().set_fitted_state(state)
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
    return {k: decode(v, f"{where} {k}") for k, v in saved.items() if k != "params"}


def _restore_scale(step, saved):
    columns = [str(c) for c in expect(saved["feature_names_in_"], list, "scale columns")]
    step.fit(_frame(columns))
    scaler = step.named_transformers_["radiomics"]
    for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
        value = decode(saved[name], f"scale {name}")
        current = getattr(scaler, name)
        if value is not None and np.shape(value) != np.shape(current):
            raise ModelFileError(f"scale {name} has shape {np.shape(value)}; the scaler's "
                                 f"columns need {np.shape(current)}")
        setattr(scaler, name, value)


def _restore_classifier(clf, saved, states, path):
    classes = decode(saved["classes_"], "classifier classes_")
    clf.classes_inferred_ = classes
    clf.radiomic_columns_ = [str(c) for c in expect(saved["radiomic_columns_"], list,
                                                     "radiomic_columns_")]
    clf.class_weights_ = decode(saved["class_weights_"], "classifier class_weights_")
    domains = saved.get("adversary_domains_")
    clf.adversary_domains_ = (None if domains is None else np.asarray(
        [str(d) for d in expect(domains, list, "adversary_domains_")]))
    data_config = decode(saved["data_config_"], "classifier data_config_")
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
