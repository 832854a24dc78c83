"""Fine-tuning a backbone's last stages on cached feature maps of the stages before.

A frozen backbone costs one pass per tile, cached; a fully fine-tuned one costs the whole
network per tile and epoch. In between, the backbone is cut before its last ``k`` stages:
the frozen *trunk* (stem and earlier stages) runs once per tile and view, and its feature
maps are cached like the pooled features of a frozen backbone
(:mod:`hiercls.features.frozen`); only the *top* (the last ``k`` stages, the head
convolution and the pooling) runs in every epoch, and its weights are trained. At the
resolution of the last stage (1/32 of the input) that is a few milliseconds per tile on a
CPU.

Stages are the backbone's groups of blocks (``model.blocks[i]`` in timm's EfficientNet
and MobileNetV3 families: 7 in an EfficientNet, the last of them one block of the
widest channels). ``trunk`` followed by :func:`top_features` is the model itself.
"""


import torch
from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3

from ..validation import check_number
from .backbones import StagePooledBackbone

#: The model classes whose forward pass is stem, ``blocks``, head: the trunk and the top
#: rebuild exactly that (GhostNet, say, has the same attribute names but an activation
#: after its stem's batch norm, and is refused).
SUPPORTED_MODELS = (EfficientNet, MobileNetV3)


def _stages(model):
    blocks = getattr(model, "blocks", None)
    return blocks if isinstance(blocks, torch.nn.Sequential) else None


def check_finetune_stages(model, stages):
    """Check that ``model``'s last ``stages`` stages can be split off for fine-tuning.

    Parameters
    ----------
    model : torch.nn.Module
        A backbone from :func:`hiercls.nn.backbones.create_backbone` with ``stages=1``.
    stages : int
        How many of the last stages are trained; ``1 <= stages < len(model.blocks)``.

    Raises
    ------
    TypeError
        If ``stages`` is not an int.
    ValueError
        If the model is not one of :data:`SUPPORTED_MODELS` (timm's EfficientNet and
        MobileNetV3 families), or ``stages`` is out of range.
    """
    check_number(stages, "finetune_stages", integer=True, expected="an int >= 1")
    if isinstance(model, StagePooledBackbone):
        raise ValueError("finetune_stages cannot be combined with backbone_stages > 1: the pooled "
                         "earlier stages would come from the frozen trunk's maps; use one of them")
    blocks = _stages(model)
    if not isinstance(model, SUPPORTED_MODELS) or blocks is None:
        raise ValueError(f"finetune_stages needs a timm model of the EfficientNet or MobileNetV3 "
                         f"families (timm.models.efficientnet.EfficientNet, "
                         f"timm.models.mobilenetv3.MobileNetV3); {type(model).__name__} is not one")
    if not 1 <= stages < len(blocks):
        raise ValueError(f"finetune_stages must be between 1 and {len(blocks) - 1} (the stages of "
                         f"{type(model).__name__} after its first); got {stages}")


class BackboneTrunk(torch.nn.Module):
    """The frozen part of a backbone cut before its last ``stages`` stages.

    ``trunk(images)`` gives the feature maps ``(n, C, h, w)`` that the model's last
    ``stages`` stages take; :func:`top_features` turns them into the model's pooled
    features. The trunk holds the model itself (no copy of its weights).

    Parameters
    ----------
    model : torch.nn.Module
        A timm EfficientNet or MobileNetV3 with ``num_classes=0``.
    stages : int
        See :func:`check_finetune_stages`.

    Examples
    --------
    >>> import torch
    >>> from hiercls.nn.backbones import create_backbone
    >>> from hiercls.nn.partial_finetune import BackboneTrunk, top_features
    >>> model = create_backbone("test_efficientnet").eval()
    >>> images = torch.rand(2, 3, 32, 32)
    >>> maps = BackboneTrunk(model, 1)(images)
    >>> torch.allclose(top_features(model, maps, 1), model(images), atol=1e-6)
    True
    """

    def __init__(self, model, stages):
        super().__init__()
        check_finetune_stages(model, stages)
        self.model = model
        self.stages = int(stages)
        # The mode is the model's: setting it back after an eval pass must not switch a
        # frozen model's batch norms to training.
        self.training = model.training

    def forward(self, images):
        model = self.model
        maps = model.bn1(model.conv_stem(images))
        for stage in model.blocks[:-self.stages]:
            maps = stage(maps)
        return maps


def top_features(model, maps, stages):
    """The model's pooled features from the trunk's maps: its last ``stages`` stages, then
    its head (EfficientNet: head convolution and batch norm, then pooling; MobileNetV3:
    pooling, then head convolution)."""
    for stage in model.blocks[-stages:]:
        maps = stage(maps)
    if hasattr(model, "conv_head") and hasattr(model, "bn2"):
        # EfficientNet's head convolution belongs to forward_features; MobileNetV3's to
        # forward_head (after the pooling), which runs it there.
        maps = model.bn2(model.conv_head(maps))
    return model.forward_head(maps, pre_logits=True)


def top_modules(model, stages):
    """The modules :func:`top_features` trains: the last ``stages`` stages and the head."""
    modules = list(model.blocks[-stages:])
    modules.extend(getattr(model, name) for name in ("conv_head", "bn2", "norm_head")
                   if isinstance(getattr(model, name, None), torch.nn.Module))
    return modules
