"""The fusion network: image and radiomics encoders, a gate, and the hierarchical heads."""

import torch
import torch.nn.functional as F
from torch import nn

from ..data.labels import compose_probabilities
from .adversary import DomainAdversary
from .augmentation import TileAugmentation
from .backbones import backbone_data_config, create_backbone, feature_width
from .partial_finetune import (
    BackboneTrunk,
    check_finetune_stages,
    top_features,
    top_modules,
)


def two_layer_mlp(n_in, n_hidden, n_out):
    """Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))


class ImageEncoder(nn.Module):
    """z_img = W f(x): a timm backbone's pooled features, projected to ``embed_dim``.

    ``W`` is sized on the width the backbone really returns
    (:func:`hiercls.nn.backbones.feature_width`), which is not ``num_features`` for models
    with a head convolution after the pooling (MobileNetV3, GhostNet, HGNetV2, ...).

    With ``finetune_stages=k``, what is cached and given as ``features`` is the feature maps
    of the backbone's trunk before its last ``k`` stages
    (:mod:`hiercls.nn.partial_finetune`); the encoder runs those stages on them.
    """

    #: A class default, so that encoders pickled before the parameter existed unpickle
    #: as the frozen or trained encoders they were.
    finetune_stages = 0

    def __init__(self, backbone, pretrained, embed_dim, backbone_stages=1, finetune_stages=0):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained, stages=backbone_stages)
        if finetune_stages:
            check_finetune_stages(self.backbone, finetune_stages)
            self.finetune_stages = int(finetune_stages)
        self.projection = nn.Linear(feature_width(self.backbone), embed_dim)

    def freeze(self):
        """Freeze the backbone, batch-norm statistics included (``train()`` keeps it so),
        all but its last ``finetune_stages`` stages and head; returns self."""
        self.backbone.requires_grad_(False).eval()
        for module in top_modules(self.backbone, self.finetune_stages) if self.finetune_stages else ():
            module.requires_grad_(True)
        return self

    def cached_part(self):
        """The module whose outputs are cached: the backbone, or its trunk."""
        if self.finetune_stages:
            return BackboneTrunk(self.backbone, self.finetune_stages)
        return self.backbone

    def pooled(self, features):
        """The backbone's pooled features from what :meth:`cached_part` gave."""
        if self.finetune_stages:
            return top_features(self.backbone, features, self.finetune_stages)
        return features

    def forward(self, images=None, features=None):
        """Encode images, or what :meth:`cached_part` made of them earlier (a cache)."""
        if features is None:
            return self.projection(self.backbone(images))
        return self.projection(self.pooled(features))


class FusionNet(nn.Module):
    """Gated fusion of a tile's image and radiomic embeddings, with two or one heads.

    ``z = a_img * z_img + a_rad * z_rad`` where ``(a_img, a_rad) = softmax(g([z_img; z_rad]))``
    and ``g`` is a two-layer MLP. The hierarchical model has head A (tumor vs non-tumor)
    and head B (viable vs non-viable), both linear on ``z``; the flat model one linear
    3-class head.

    Parameters
    ----------
    backbone : str
        timm model name.
    pretrained : bool, str or path
        Passed to :func:`hiercls.nn.backbones.create_backbone`.
    n_radiomic_features : int
        Width of the radiomic vector.
    embed_dim : int, default=256
        Width ``d`` of both embeddings.
    hierarchical : bool, default=True
        Two binary heads (logits ``[A0, A1, B0, B1]``) or one 3-class head.
    use_image, use_radiomics : bool, default=True
        Leave out a branch; with one branch the gate is fixed at (1, 0) or (0, 1).
    augment : bool, default=True
        Random flips and +-15 degree rotations of training batches.
    stain_jitter : float, default=0.0
        With ``augment``, also jitter the tiles' H&E densities by this strength
        (:func:`hiercls.nn.stain_jitter.hed_jitter`; 0.05 is "HED-light"). A frozen backbone's
        cached views are jittered where they are computed instead.
    backbone_stages : int, default=1
        Feature stages of the backbone whose pooled outputs are concatenated
        (:class:`hiercls.nn.backbones.StagePooledBackbone`); 1 is the last alone.
    freeze_backbone : bool, default=False
        Freeze the backbone's weights (then ``forward`` is usually given its cached
        ``image_features`` of the 8 symmetric views; see :mod:`hiercls.features.frozen`).
    finetune_stages : int, default=0
        With ``freeze_backbone``, train the backbone's last ``k`` stages and its head
        anyway, on the cached feature maps of the frozen stages before them
        (:mod:`hiercls.nn.partial_finetune`); their batch norms keep the pretrained
        statistics. 0 trains none.
    n_domains : int, default=0
        With 2 or more, a patient adversary (:class:`hiercls.nn.adversary.DomainAdversary`)
        guesses each tile's domain (patient, slide) from ``z`` through a gradient reversal,
        and ``forward`` returns its logits third; 0 is none.
    adversary_weight : float, default=1.0
        The gradient reversal's scale.
    """

    def __init__(self, backbone="efficientnet_b0", pretrained=False, n_radiomic_features=29,
                 embed_dim=256, hierarchical=True, use_image=True, use_radiomics=True,
                 augment=True, freeze_backbone=False, stain_jitter=0.0, backbone_stages=1,
                 finetune_stages=0, n_domains=0, adversary_weight=1.0):
        super().__init__()
        if not (use_image or use_radiomics):
            raise ValueError("use_image and use_radiomics cannot both be False")
        self.use_image = use_image
        self.use_radiomics = use_radiomics
        self.hierarchical = hierarchical
        self.freeze_backbone = freeze_backbone and use_image
        if finetune_stages and not self.freeze_backbone:
            raise ValueError("finetune_stages trains the last stages of a frozen backbone on its "
                             "cached maps and needs freeze_backbone=True (and use_image)")
        self.image_encoder = (ImageEncoder(backbone, pretrained, embed_dim, backbone_stages,
                                           finetune_stages) if use_image else None)
        # Input size and normalization the backbone's weights expect: the tiles are
        # prepared with it, and the stain jitter undoes it.
        self.data_config = (backbone_data_config(self.image_encoder.backbone, pretrained)
                            if use_image else {})
        self.augmentation = nn.Identity()
        if augment and use_image:
            self.augmentation = TileAugmentation(stain_jitter=stain_jitter,
                                                 mean=self.data_config["mean"],
                                                 std=self.data_config["std"])
        if use_image and freeze_backbone:
            self.image_encoder.freeze()  # from the start
        self.radiomics_encoder = (
            two_layer_mlp(n_radiomic_features, embed_dim, embed_dim) if use_radiomics else None
        )
        self.gate = two_layer_mlp(2 * embed_dim, embed_dim, 2) if (use_image and use_radiomics) else None
        self.head = nn.Linear(embed_dim, 4 if hierarchical else 3)
        if n_domains and int(n_domains) < 2:
            raise ValueError(f"n_domains must be 0 (no adversary) or at least 2; got {n_domains!r}")
        self.adversary = (DomainAdversary(two_layer_mlp(embed_dim, embed_dim, int(n_domains)),
                                          adversary_weight) if n_domains else None)

    def forward(self, image=None, radiomics=None, image_features=None, domain=None):
        """Logits and gate weights of a batch (and the adversary's domain logits).

        Parameters
        ----------
        image : Tensor of shape (n, 3, H, W), optional
            Normalized tiles (augmented here in training mode).
        radiomics : Tensor of shape (n, r), optional
            Standardized radiomic vectors.
        image_features : Tensor of shape (n, F) or (n, V, F), optional
            A frozen backbone's features, given instead of ``image``; with
            ``finetune_stages``, its trunk's maps (n, C, h, w) or (n, V, C, h, w).

        Returns
        -------
        logits : Tensor of shape (n, 4) or (n, 3)
            ``[A0, A1, B0, B1]`` for the hierarchical model, 3 classes for the flat one.
        gate : Tensor of shape (n, 2)
            The weights (a_img, a_rad) of each tile.
        domain_logits : Tensor of shape (n, n_domains)
            Only with an adversary: its guess of each tile's domain.
        """
        z, gate = self.embed(image, radiomics, image_features)
        if self.adversary is not None:
            return self.head(z), gate, self.adversary(z)
        return self.head(z), gate

    def embed(self, image=None, radiomics=None, image_features=None, domain=None):
        """The fused embedding ``z = a_img * z_img + a_rad * z_rad`` and the gate weights.

        What the heads (and an adversary) read; the arguments are :meth:`forward`'s
        (``domain`` is accepted and ignored, so that a training batch can be passed whole).

        Returns
        -------
        z : Tensor of shape (n, embed_dim)
        gate : Tensor of shape (n, 2)
        """
        embeddings = []
        if self.use_image:
            if image_features is not None:
                embeddings.append(self._cached_embedding(image_features))
            else:
                embeddings.append(self.image_encoder(self.augmentation(image)))
        if self.use_radiomics:
            embeddings.append(self.radiomics_encoder(radiomics))
        if self.gate is None:
            z = embeddings[0]
            fixed = [1.0, 0.0] if self.use_image else [0.0, 1.0]
            return z, z.new_tensor(fixed).expand(z.shape[0], 2)
        z_img, z_rad = embeddings
        gate = F.softmax(self.gate(torch.cat([z_img, z_rad], dim=1)), dim=1)
        return gate[:, :1] * z_img + gate[:, 1:] * z_rad, gate

    def train(self, mode=True):
        # skorch sets the mode before every batch; walking the backbone's hundreds of
        # submodules each time is measurable when the backbone is frozen and cached.
        if mode == self.training:
            return self
        super().train(mode)
        if self.freeze_backbone:
            # A frozen backbone keeps its batch-norm statistics too.
            self.image_encoder.backbone.eval()
        return self

    def _cached_embedding(self, features):
        """z_img from the cached outputs of symmetric views ((n, V, F) pooled features, or
        (n, V, C, h, w) trunk maps with ``finetune_stages``; without the view axis, one
        view per tile): one random view per tile while training (the augmentation), the
        mean of the views' pooled features otherwise (test-time averaging)."""
        encoder = self.image_encoder
        if encoder.finetune_stages and features.dim() not in (4, 5):
            raise ValueError(f"image_features of an encoder that fine-tunes its last stages must be "
                             f"the trunk's maps (n, C, h, w) or (n, V, C, h, w); got shape "
                             f"{tuple(features.shape)}")
        if features.dim() == (5 if encoder.finetune_stages else 3):
            n_tiles, n_views = features.shape[:2]
            if self.training:
                choice = torch.randint(n_views, (n_tiles,), device=features.device)
                features = features[torch.arange(n_tiles, device=features.device), choice]
            else:
                pooled = encoder.pooled(features.flatten(0, 1)).reshape(n_tiles, n_views, -1)
                return encoder.projection(pooled.mean(dim=1))
        return encoder(features=features)


def class_probabilities(logits):
    """Three-class probabilities from the network's logits.

    For the hierarchical logits ``[A0, A1, B0, B1]``: ``P(0) = pA0``, ``P(1) = pA1 * pB0``,
    ``P(2) = pA1 * pB1``, with ``pA = softmax(A)`` and ``pB = softmax(B)``; rows sum to one.
    For flat 3-class logits, their softmax.

    Examples
    --------
    >>> import torch
    >>> logits = torch.log(torch.tensor([[0.25, 0.75, 0.5, 0.5]]))  # pA1 = 0.75, pB1 = 0.5
    >>> class_probabilities(logits)
    tensor([[0.2500, 0.3750, 0.3750]])
    """
    if logits.shape[1] == 3:
        return F.softmax(logits, dim=1)
    return compose_probabilities(F.softmax(logits[:, :2], dim=1), F.softmax(logits[:, 2:], dim=1))
