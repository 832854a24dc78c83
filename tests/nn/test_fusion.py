import torch

from hiercls.nn.augmentation import TileAugmentation
from hiercls.nn.fusion import FusionNet, class_probabilities


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
    image, radiomics = torch.randn(3, 3, 32, 32), torch.randn(3, 5)
    with torch.no_grad():
        logits, gate = net(image=image, radiomics=radiomics)
        z_img, z_rad = net.image_encoder(image), net.radiomics_encoder(radiomics)
        expected_gate = net.gate(torch.cat([z_img, z_rad], dim=1)).softmax(1)
        mixed = net.head(gate[:, :1] * z_img + gate[:, 1:] * z_rad)
        image_alone, radiomics_alone = net.head(z_img), net.head(z_rad)
    assert logits.shape == (3, 4)
    torch.testing.assert_close(gate, expected_gate)
    torch.testing.assert_close(gate.sum(1), torch.ones(3))
    assert bool((gate > 0).all())
    # The head sees the gate-weighted sum of the two embeddings, not either one alone.
    torch.testing.assert_close(logits, mixed)
    assert not torch.allclose(logits, image_alone) and not torch.allclose(logits, radiomics_alone)


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
