"""Any timm model as the image branch: families whose pooled width is not num_features,
fixed input sizes, and the frozen-backbone path.

Each family is its smallest real variant in timm, with random weights, fitted for one
epoch on a few synthetic tiles.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from hiercls import HierarchicalFusionClassifier
from hiercls.data.datasets import make_synthetic_tiles
from hiercls.nn.backbones import create_backbone, feature_width

from ..conftest import random_radiomics

#: (timm name, image_size): None where the backbone's own input size must be used.
#: The side the tiles must reach the backbone at, last.
FAMILIES = [
    ("efficientnet_b0", 64, 64),
    ("mobilenetv3_small_050", 64, 64),  # head convolution: 1024 features, num_features 288
    ("resnet10t", 64, 64),
    ("convnext_atto", 64, 64),
    ("vit_tiny_patch16_224", None, 224),  # a fixed input size
    ("inception_v3", None, 299),  # its own size
    ("ghostnet_050", 64, 64),  # head convolution: 1280 features, num_features 480
    ("hgnetv2_b0", 64, 64),  # head convolution: 2048 features, num_features 1024
]

FAST = dict(pretrained=False, embed_dim=8, max_epochs=1, batch_size=4, patience=None,
            train_split=None, random_state=0, verbose=0)


@pytest.fixture(scope="module")
def tiles():
    X, y, _ = make_synthetic_tiles(n_tiles=8, n_patients=2, size=32, random_state=0)
    features = random_radiomics(len(X), np.random.default_rng(0))
    return pd.concat([X.reset_index(drop=True), features], axis=1), np.asarray(y)


def test_feature_width_of_a_head_convolution_family_is_what_the_backbone_returns():
    module = create_backbone("mobilenetv3_small_050").eval()
    with torch.no_grad():
        returned = module(torch.zeros(2, 3, 64, 64)).shape[1]
    assert module.num_features == 288
    assert feature_width(module) == returned == 1024


def test_feature_width_measures_a_backbone_without_head_hidden_size():
    module = create_backbone("mobilenetv3_small_050").train()
    del module.head_hidden_size  # as a model from another library would lack it
    assert feature_width(module) == 1024
    assert module.training  # the measurement restored the mode


@pytest.mark.parametrize("backbone, image_size, side", FAMILIES,
                         ids=[name for name, _, _ in FAMILIES])
def test_fit_and_predict_with_a_timm_family(tiles, backbone, image_size, side):
    X, y = tiles
    clf = HierarchicalFusionClassifier(backbone, image_size=image_size, **FAST).fit(X, y)
    # image_size=None takes the backbone's own input size (a ViT accepts no other).
    inputs, _ = clf.get_dataset(X.head(1))[0]
    assert tuple(inputs["image"].shape) == (3, side, side)
    if image_size is None:
        assert clf.data_config_["input_size"] == (3, side, side)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    # The projection takes exactly what the backbone returns, measured here by a forward pass.
    encoder = clf.module_.image_encoder.eval()
    with torch.no_grad():
        returned = encoder.backbone(inputs["image"][None]).shape[-1]
    assert encoder.projection.in_features == returned == feature_width(encoder.backbone)


def test_frozen_head_convolution_backbone_fits_on_its_cached_view_features(tiles):
    X, y = tiles
    clf = HierarchicalFusionClassifier("mobilenetv3_small_050", image_size=64,
                                       freeze_backbone=True, cache=None, **FAST).fit(X, y)
    dataset = clf.get_dataset(X)
    assert dataset.image_features.shape == (len(X), 8, 1024)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
