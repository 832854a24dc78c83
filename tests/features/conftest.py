import pytest
import timm
import torch


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A state dict of timm's tiny test_efficientnet: "pretrained" weights offline."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "test_efficientnet.pth"
    torch.save(timm.create_model("test_efficientnet", num_classes=0).state_dict(), path)
    return path
