"""A patient adversary: a head that guesses each tile's patient through a gradient reversal.

With four patients whose class mixes differ, "viable vs non-viable" can be learnt as
"one patient's look vs another's". Domain-adversarial training (Ganin et al., 2016,
"Domain-adversarial training of neural networks") adds a head that predicts the domain,
here the patient (or slide), from the fused embedding ``z``. The head learns to tell the
patients apart; between it and ``z`` a gradient reversal layer turns its gradient round,
scaled by ``weight``, so the layers below learn an embedding the head cannot read the
patient from, while the class heads still read the class.

What it costs, to be measured rather than assumed: where class and patient are entangled,
an embedding without the patient also loses some of the class
(``benchmarks/necrosis.py --levers``).
"""

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    """The identity forward; the gradient times ``-weight`` backward."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def reverse_gradient(x, weight=1.0):
    """``x`` unchanged, its gradient multiplied by ``-weight`` on the way back.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, requires_grad=True)
    >>> reverse_gradient(x, 0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000])
    """
    return _ReverseGradient.apply(x, float(weight))


class DomainAdversary(nn.Module):
    """Domain logits of an embedding, through a gradient reversal.

    Parameters
    ----------
    head : nn.Module
        Embedding -> one logit per domain (patient, slide).
    weight : float, default=1.0
        The reversal's scale: how strongly the layers below are pushed away from what the
        head reads (the head itself learns at full strength).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> adversary = DomainAdversary(nn.Linear(8, 3), weight=0.5)
    >>> z = torch.randn(4, 8, requires_grad=True)
    >>> adversary(z).shape  # one logit per domain
    torch.Size([4, 3])
    >>> adversary(z).sum().backward()  # z's gradient: the head's, reversed and halved
    >>> torch.allclose(z.grad, -0.5 * adversary.head.weight.sum(0).expand(4, 8))
    True
    """

    def __init__(self, head, weight=1.0):
        super().__init__()
        self.head = head
        self.weight = float(weight)

    def forward(self, z):
        return self.head(reverse_gradient(z, self.weight))
