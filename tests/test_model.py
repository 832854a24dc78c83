import torch

from hiercls.augmentation import TileAugmentation
from hiercls.model import FusionNet, class_probabilities


def _net(**params):
    defaults = dict(backbone="test_efficientnet", n_radiomic_features=5, embed_dim=8)
    return FusionNet(**{**defaults, **params}).eval()


def test_hierarchical_probabilities_follow_the_factorization():
    logits = torch.randn(6, 4)
    proba = class_probabilities(logits)
    p_a, p_b = logits[:, :2].softmax(1), logits[:, 2:].softmax(1)
    expected = torch.stack([p_a[:, 0], p_a[:, 1] * p_b[:, 0], p_a[:, 1] * p_b[:, 1]], 1)
    torch.testing.assert_close(proba, expected)
    torch.testing.assert_close(proba.sum(1), torch.ones(6))


def test_flat_probabilities_are_a_softmax():
    logits = torch.randn(5, 3)
    torch.testing.assert_close(class_probabilities(logits), logits.softmax(1))


def test_gate_weights_are_a_softmax_and_mix_the_embeddings():
    torch.manual_seed(0)
    net = _net()
    logits, gate = net(image=torch.randn(3, 3, 32, 32), radiomics=torch.randn(3, 5))
    assert logits.shape == (3, 4)
    torch.testing.assert_close(gate.sum(1), torch.ones(3))
    assert bool((gate > 0).all())


def test_single_branch_models_fix_the_gate():
    image_only = _net(use_radiomics=False)
    _, gate = image_only(image=torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(gate, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    radiomics_only = _net(use_image=False, hierarchical=False)
    logits, gate = radiomics_only(radiomics=torch.randn(2, 5))
    assert logits.shape == (2, 3)
    torch.testing.assert_close(gate, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert radiomics_only.image_encoder is None


def test_augmentation_changes_training_batches_only():
    augment = TileAugmentation()
    images = torch.randn(4, 3, 16, 16)
    assert torch.equal(augment.eval()(images), images)
    torch.manual_seed(1)
    augmented = augment.train()(images)
    assert augmented.shape == images.shape
    assert not torch.equal(augmented, images)
