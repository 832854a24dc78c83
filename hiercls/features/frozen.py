"""What a frozen backbone makes of a tile: pooled features of its 8 symmetric views.

The four 90-degree rotations of a tile and of its mirror image are exact, label-preserving
symmetries of histology. With the backbone frozen, its features for those 8 views are
computed once per tile (and cached on disk by the tile's content and the backbone), so an
epoch over the cache costs only the small trainable part: minutes on a CPU instead of
hours. Training then draws one view per tile and epoch; prediction averages over the 8.

With stain jitter, each view also gets its own random H&E density jitter, drawn from a
generator seeded by the tile's content: the cache stays valid, the training views vary
in stain as well as in orientation, and prediction averages over jittered views too.
Blur and JPEG re-compression of the views (:mod:`hiercls.features.perturbations`) work the
same way, each view's strengths drawn from the tile's content and the view's index.
"""

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.images import tile_digest
from ..nn.backbones import feature_width
from ..nn.partial_finetune import BackboneTrunk
from ..nn.stain_jitter import hed_jitter
from .cache import ArrayCache
from .perturbations import MAX_JPEG_QUALITY, gaussian_blur, jpeg_recompress

N_VIEWS = 8


def symmetric_views(images):
    """The 8 dihedral views of a batch (n, C, H, W) as (n, 8, C, H, W); view 0 is the identity."""
    views = []
    for mirrored in (images, images.flip(-1)):
        views.extend(torch.rot90(mirrored, k, dims=(-2, -1)) for k in range(4))
    return torch.stack(views, dim=1)


#: The views averaged when predicting with fewer than 8 (indices into
#: :func:`symmetric_views`: 0-3 the rotations, 4-7 those of the mirror image).
PREDICT_VIEW_SUBSETS = {1: (0,), 2: (0, 4), 4: (0, 2, 4, 6), 8: tuple(range(8))}


@torch.no_grad()
def frozen_view_features(backbone, dataset, *, cache=None, batch_size=4, device="cpu",
                         stain_jitter=0.0, view_blur=0.0, view_jpeg=None, verbose=0, views=None):
    """Pooled backbone features of every tile's 8 views.

    Parameters
    ----------
    backbone : torch.nn.Module
        Returns pooled features (n, F) for images (n, C, H, W), ``F`` being
        :func:`hiercls.nn.backbones.feature_width`, or a
        :class:`~hiercls.nn.partial_finetune.BackboneTrunk`'s feature maps (n, C, h, w);
        used in eval mode.
    dataset : hiercls.estimator.tile_dataset.TileDataset
        Supplies the decoded, normalized tiles (``image_tensor``) and their sources.
    cache : hiercls.features.cache.ArrayCache or None
        Where features are kept between fits; its settings must identify the backbone's
        weights and the preprocessing.
    batch_size : int, default=4
        Tiles per forward pass; each gives 8 views, and a larger batch only raises the
        peak memory of the activations.
    device : str, default="cpu"
    stain_jitter : float, default=0.0
        Strength of the H&E jitter of each view (:func:`hiercls.nn.stain_jitter.hed_jitter`); the
        cache's settings must include it.
    view_blur : float, default=0.0
        Each view is blurred (:func:`hiercls.features.perturbations.gaussian_blur`) with a
        sigma drawn from ``U(0, view_blur)``, in pixels of the dataset's tiles (resized to
        the backbone's input); 0 is off.
    view_jpeg : int or None, default=None
        Each view is re-compressed (:func:`hiercls.features.perturbations.jpeg_recompress`)
        at a quality drawn from ``view_jpeg..95``; None is off. With stain jitter, blur and
        JPEG all set, a view is stained, then blurred, then compressed, as a slide is
        stained, scanned and saved. The cache's settings must include both.
    verbose : int, default=0
        Progress bar when > 0.
    views : sequence of int or None, default=None
        Only these views (indices into the 8): cached tiles give their subset, the others
        go through the backbone for these views alone (and are not cached). None is all 8.

    Returns
    -------
    features : ndarray of shape (n_tiles, n_views, F) or (n_tiles, n_views, C, h, w), float32
    """
    was_training = backbone.training
    backbone.eval()
    n = len(dataset)
    perturbed = view_blur > 0 or view_jpeg is not None
    keyed = cache is not None or stain_jitter > 0 or perturbed
    digests = [tile_digest(tile) for tile in dataset.tiles] if keyed else None
    found = {}
    if cache is not None:
        # An entry of another shape (another backbone's, a damaged file) is recomputed.
        expected = (N_VIEWS, *_output_shape(backbone, dataset, device))
        for index, digest in enumerate(digests):
            cached = cache.get(digest)
            if cached is not None and cached.shape == expected:
                found[index] = cached
    subset = None if views is None or tuple(views) == tuple(range(N_VIEWS)) else list(views)
    if subset is not None:
        found = {index: values[subset] for index, values in found.items()}
    view_indices = list(range(N_VIEWS)) if subset is None else subset
    todo = [index for index in range(n) if index not in found]
    progress = tqdm(total=len(todo), desc="frozen backbone", unit="tile", disable=not verbose)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        views = symmetric_views(torch.stack([dataset.image_tensor(index) for index in batch]))
        if stain_jitter > 0:
            # On the CPU, where the per-tile generators draw.
            views = torch.stack([
                hed_jitter(tile_views, stain_jitter, generator=_content_generator(digests[index]),
                           mean=dataset.mean, std=dataset.std)
                for tile_views, index in zip(views, batch)])
        if subset is not None:
            views = views[:, subset]
        if perturbed:
            views = torch.stack([
                _blur_and_compress(tile_views, digests[index], view_indices, view_blur, view_jpeg,
                                   mean=dataset.mean, std=dataset.std)
                for tile_views, index in zip(views, batch)])
        outputs = backbone(views.flatten(0, 1).to(device))
        outputs = outputs.reshape(len(batch), views.shape[1], *outputs.shape[1:])
        for index, values in zip(batch, outputs.float().cpu().numpy()):
            found[index] = values
            if cache is not None and subset is None:
                cache.put(digests[index], values)
        progress.update(len(batch))
    progress.close()
    backbone.train(was_training)
    return np.stack([found[index] for index in range(n)]).astype(np.float32)


def _output_shape(backbone, dataset, device):
    """The shape of one view's output: (F,), or a trunk's (C, h, w) at the dataset's size."""
    if not isinstance(backbone, BackboneTrunk):
        return (feature_width(backbone),)
    blank = torch.zeros((1, 3, dataset.image_size, dataset.image_size), device=device)
    return tuple(backbone(blank).shape[1:])


def _content_generator(digest):
    """A CPU generator seeded by a tile's content digest (hex)."""
    return torch.Generator().manual_seed(int(digest[:15], 16))


def _blur_and_compress(views, digest, view_indices, view_blur, view_jpeg, *, mean, std):
    """One tile's normalized views (V, C, H, W), each blurred and re-compressed as drawn.

    On the uint8 pixels a scanner would write: normalization is undone, and redone after.
    """
    mean, std = mean.to(views), std.to(views)
    pixels = ((views * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    perturbed = []
    for view, view_index in zip(pixels.permute(0, 2, 3, 1).numpy(), view_indices):
        # Both strengths are drawn always, so that each stays the same whether or not
        # the other is on; numpy's stream is apart from the stain jitter's torch one.
        u_blur, u_jpeg = np.random.default_rng((int(digest[:15], 16), view_index, 1)).random(2)
        if view_blur > 0:
            view = gaussian_blur(view, u_blur * view_blur)
        if view_jpeg is not None:
            view = jpeg_recompress(view, view_jpeg + int(u_jpeg * (MAX_JPEG_QUALITY + 1 - view_jpeg)))
        perturbed.append(view)
    # The same arithmetic as TileDataset.image_tensor. The result keeps the channels-last
    # layout of the pixels, which halves a CPU convolution's time (the plain views do not).
    pixels = torch.from_numpy(np.stack(perturbed)).permute(0, 3, 1, 2)
    return (pixels.float() / 255.0 - mean) / std


def embedding_cache(folder, *, backbone, pretrained, image_size, data_config, stain_jitter=0.0,
                    view_blur=0.0, view_jpeg=None, backbone_stages=1, finetune_stages=0):
    """The cache of a backbone's view features, or None when its weights are not fixed.

    Randomly initialized weights (``pretrained=False``) differ from fit to fit, so their
    features are never cached. A weights file is named by its content, wherever it lies.
    ``backbone_stages`` (:func:`hiercls.nn.backbones.create_backbone`'s ``stages``) is
    part of the key only when it is not 1; ``finetune_stages`` (then the cached values are
    the trunk's maps, :class:`hiercls.nn.partial_finetune.BackboneTrunk`) only when it is not 0.
    """
    if folder is None or pretrained is False or pretrained is None:
        return None
    if isinstance(pretrained, (str, os.PathLike)) and Path(pretrained).is_file():
        pretrained = f"file:{tile_digest(pretrained)}"
    settings = {"backbone": backbone, "pretrained": str(pretrained), "image_size": int(image_size),
                "mean": list(data_config.get("mean", ())), "std": list(data_config.get("std", ())),
                "interpolation": data_config.get("interpolation"), "views": N_VIEWS, "version": 1}
    if stain_jitter > 0:
        # Only then, so that the caches of unjittered views stay valid.
        settings["stain_jitter"] = float(stain_jitter)
    if view_blur > 0:
        settings["view_blur"] = float(view_blur)
    if view_jpeg is not None:
        settings["view_jpeg"] = int(view_jpeg)
    if int(backbone_stages) != 1:
        # Likewise: the caches of the last stage's features alone stay valid.
        settings["backbone_stages"] = int(backbone_stages)
    if int(finetune_stages) != 0:
        settings["finetune_stages"] = int(finetune_stages)
    return ArrayCache(folder, "embeddings", settings)


class FrozenFeatures:
    """The frozen backbone's view features of a classifier's tiles: cache, views, mode.

    What :class:`~hiercls.HierarchicalFusionClassifier` with ``freeze_backbone=True``
    trains on: built from the classifier's parameters that key the cache
    (:data:`hiercls.estimator.parameters.CACHE_KEY`), it computes (or reads) each tile's
    8 views. Training and validation take all 8; prediction asks for the
    ``predict_views`` it averages, as an explicit argument of :meth:`compute`.

    Parameters
    ----------
    folder : path or None
        The cache's root folder (:func:`hiercls.features.cache.resolve_cache_dir`);
        None keeps nothing between fits.
    backbone, pretrained : str
        The backbone's timm name and weights; randomly initialized weights are never
        cached (:func:`embedding_cache`).
    stain_jitter, view_blur, view_jpeg : see :func:`frozen_view_features`.
    backbone_stages, finetune_stages : int
        The backbone's pooled stages and its trained last stages (then the cached values
        are the trunk's maps).
    data_config : dict
        The preprocessing: ``image_size``, ``mean``, ``std``, ``interpolation``.
    device : str or torch.device, default="cpu"
    verbose : int, default=0

    Examples
    --------
    >>> from hiercls.features.frozen import FrozenFeatures
    >>> FrozenFeatures(None, backbone="test_efficientnet", pretrained=False).views(4)
    (0, 2, 4, 6)
    """

    def __init__(self, folder, *, backbone, pretrained, stain_jitter=0.0, view_blur=0.0,
                 view_jpeg=None, backbone_stages=1, finetune_stages=0, data_config=None, device="cpu",
                 verbose=0):
        self.folder = folder
        self.backbone = backbone
        self.pretrained = pretrained
        self.stain_jitter = stain_jitter
        self.view_blur = view_blur
        self.view_jpeg = view_jpeg
        self.backbone_stages = backbone_stages
        self.finetune_stages = finetune_stages
        self.data_config = data_config or {}
        self.device = device
        self.verbose = verbose

    @staticmethod
    def views(predict_views):
        """The view indices averaged for ``predict_views`` (None: all 8)."""
        return tuple(range(N_VIEWS)) if predict_views is None else PREDICT_VIEW_SUBSETS[int(predict_views)]

    def cache(self):
        """The :class:`~hiercls.features.cache.ArrayCache` of these settings, or None."""
        return embedding_cache(self.folder, backbone=self.backbone, pretrained=self.pretrained,
                               image_size=self.data_config["image_size"],
                               data_config=self.data_config,
                               stain_jitter=self.stain_jitter, view_blur=self.view_blur,
                               view_jpeg=self.view_jpeg, backbone_stages=self.backbone_stages,
                               finetune_stages=self.finetune_stages)

    def compute(self, part, images, *, predict_views=None):
        """Features of every tile of ``images``, shape (n_tiles, n_views, ...).

        Parameters
        ----------
        part : torch.nn.Module
            What is cached: the frozen backbone, or its trunk.
        images : hiercls.estimator.tile_dataset.TileDataset
        predict_views : {1, 2, 4, 8} or None, default=None
            Prediction: only the views averaged for it (cached tiles give their subset;
            the others are computed for those views alone and not cached). None, in
            training and validation: all 8.
        """
        return frozen_view_features(
            part, images, cache=self.cache(), device=self.device,
            stain_jitter=self.stain_jitter, view_blur=self.view_blur, view_jpeg=self.view_jpeg,
            verbose=self.verbose, views=None if predict_views is None else self.views(predict_views))
