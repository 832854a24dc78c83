import pytest
import torch

from hiercls.nn.adversary import DomainAdversary, reverse_gradient
from hiercls.nn.fusion import FusionNet


def test_reverse_gradient_is_the_identity_forward_and_flips_the_gradient_by_its_weight():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = reverse_gradient(x, 0.25)
    assert torch.equal(out, x.detach())
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.25, -0.5, -0.75]))


def test_the_adversary_head_learns_forwards_while_the_embedding_is_pushed_back():
    torch.manual_seed(0)
    head = torch.nn.Linear(4, 2)
    z = torch.randn(5, 4, requires_grad=True)
    DomainAdversary(head, weight=2.0)(z).sum().backward()
    plain_z = z.detach().clone().requires_grad_(True)
    head.zero_grad()
    head(plain_z).sum().backward()
    # The head's own gradient is unchanged; the embedding's is -2 times what it would be.
    assert torch.allclose(z.grad, -2.0 * plain_z.grad)


def test_fusion_net_with_domains_returns_their_logits_third():
    net = FusionNet(use_image=False, n_radiomic_features=6, embed_dim=8, n_domains=3)
    logits, gate, domains = net(radiomics=torch.randn(4, 6), domain=torch.zeros(4, dtype=torch.long))
    assert logits.shape == (4, 4) and gate.shape == (4, 2) and domains.shape == (4, 3)
    assert len(FusionNet(use_image=False, n_radiomic_features=6, embed_dim=8)(
        radiomics=torch.randn(4, 6))) == 2
    with pytest.raises(ValueError, match="n_domains must be 0"):
        FusionNet(use_image=False, n_radiomic_features=6, embed_dim=8, n_domains=1)
