"""Model files that load without running code from the file: save_model / load_model."""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import hiercls
from hiercls import load_model, make_fusion_pipeline, save_model
from hiercls.cli import main
from hiercls.persistence import ModelFileError

from ..conftest import TINY_CLASSIFIER

#: Where the pickle smuggled into a weights member would leave its trace if it ran.
MARKER = "hiercls-persistence-pickle-ran"


@pytest.fixture(scope="module")
def fitted():
    """A small fitted pipeline (one epoch, patient-grouped early-stopping split)."""
    from hiercls.data.datasets import make_synthetic_tiles

    X, y, groups = make_synthetic_tiles(n_tiles=24, n_patients=3, size=32, random_state=0)
    params = {**TINY_CLASSIFIER, "max_epochs": 1, "patience": 1}
    pipe = make_fusion_pipeline(preset="none", **params, radiomics__mask="full", radiomics__cache=None)
    pipe.fit(X, y, classifier__groups=groups)
    return pipe, X


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "model.hiercls"
    save_model(fitted[0], path)
    return path


def _rewrite(path, member, data):
    """A copy of the zip at ``path`` with ``member``'s bytes replaced."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    contents[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in contents.items():
            archive.writestr(name, value)


def _manifest(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("hiercls-model.json"))


def test_round_trip_gives_identical_probabilities_and_parameters(fitted, saved):
    pipe, X = fitted
    restored = load_model(saved)
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    np.testing.assert_array_equal(restored.predict(X), pipe.predict(X))
    original, clf = pipe.named_steps["classifier"], restored.named_steps["classifier"]
    np.testing.assert_array_equal(clf.classes_, original.classes_)
    assert clf.radiomic_columns_ == original.radiomic_columns_
    assert clf.data_config_ == original.data_config_
    np.testing.assert_array_equal(clf.task_weights_, original.task_weights_)
    for key in ("tumor", "viable", "flat"):
        np.testing.assert_array_equal(clf.class_weights_[key], original.class_weights_[key])
    assert repr(clf.train_split) == repr(original.train_split)
    assert clf.optimizer is original.optimizer and clf.module is original.module
    assert (restored.named_steps["radiomics"].get_params()
            == pipe.named_steps["radiomics"].get_params())
    scalers = [p.named_steps["scale"].named_transformers_["radiomics"] for p in (restored, pipe)]
    np.testing.assert_array_equal(scalers[0].mean_, scalers[1].mean_)
    np.testing.assert_array_equal(scalers[0].scale_, scalers[1].scale_)


def test_the_file_holds_only_json_and_state_dicts(saved):
    with zipfile.ZipFile(saved) as archive:
        assert sorted(archive.namelist()) == ["criterion.pt", "hiercls-model.json", "module.pt"]
        for member in ("module.pt", "criterion.pt"):
            state = torch.load(io.BytesIO(archive.read(member)), weights_only=True)
            assert all(isinstance(v, torch.Tensor) for v in state.values())
    manifest = _manifest(saved)
    assert manifest["classifier"]["params"]["module"] == {"class": "hiercls.nn.fusion.FusionNet"}
    assert manifest["classifier"]["params"]["optimizer"] == {"class": "torch.optim.AdamW"}


def test_loading_builds_the_backbone_without_the_original_weights(fitted, tmp_path):
    pipe, X = fitted
    # Claim the weights came from a file that no longer exists: loading must not look.
    pipe.named_steps["classifier"].set_params(pretrained=str(tmp_path / "gone.pth"))
    try:
        path = tmp_path / "model.hiercls"
        save_model(pipe, path)
    finally:
        pipe.named_steps["classifier"].set_params(pretrained=False)
    before = torch.random.get_rng_state()
    restored = load_model(path)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG untouched
    assert restored.named_steps["classifier"].pretrained == str(tmp_path / "gone.pth")
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))


def test_public_names_are_exported_lazily():
    assert hiercls.save_model is save_model and hiercls.load_model is load_model
    assert {"save_model", "load_model"} <= set(hiercls.__all__)


def test_saving_a_parameter_outside_the_allow_list_names_it(fitted, tmp_path):
    pipe, _ = fitted

    class Custom(torch.optim.AdamW):
        pass

    clf = pipe.named_steps["classifier"]
    # Assigned, not set_params: skorch would re-initialize the fitted net.
    clf.optimizer = Custom
    try:
        with pytest.raises(ValueError, match="classifier__optimizer.*Custom.*allow-list"):
            save_model(pipe, tmp_path / "model.hiercls")
    finally:
        clf.optimizer = torch.optim.AdamW
    assert not (tmp_path / "model.hiercls").exists()


def test_saving_needs_a_fitted_pipeline_and_the_suffix(tmp_path, fitted):
    with pytest.raises(NotFittedError):
        save_model(make_fusion_pipeline(preset="none", **TINY_CLASSIFIER), tmp_path / "model.hiercls")
    with pytest.raises(ValueError, match=r"\.hiercls"):
        save_model(fitted[0], tmp_path / "model.zip")


class _Smuggled:
    def __reduce__(self):
        import pathlib
        import tempfile

        return (pathlib.Path.touch, (pathlib.Path(tempfile.gettempdir()) / MARKER,))


def test_a_pickle_smuggled_into_the_weights_is_refused_unrun(saved, tmp_path):
    import tempfile
    from pathlib import Path

    marker = Path(tempfile.gettempdir()) / MARKER
    marker.unlink(missing_ok=True)
    buffer = io.BytesIO()
    torch.save({"projection.weight": _Smuggled()}, buffer)
    _rewrite(saved, "module.pt", buffer.getvalue())
    with pytest.raises(ModelFileError, match="module.pt.*weights_only"):
        load_model(saved)
    assert not marker.exists()
    # The payload is live: an unrestricted load runs it.
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert marker.exists()
    marker.unlink()
    # A plain pickle in place of the manifest is not JSON either.
    _rewrite(saved, "hiercls-model.json", pickle.dumps(_Smuggled()))
    with pytest.raises(ModelFileError):
        load_model(saved)
    assert not marker.exists()


def test_an_unknown_class_name_is_refused(saved):
    manifest = _manifest(saved)
    manifest["classifier"]["params"]["criterion"] = {"class": "os.system"}
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match="classifier__criterion.*'os.system'.*allow-list"):
        load_model(saved)


def test_a_file_may_name_functions_but_never_call_them(saved, capsys):
    manifest = _manifest(saved)
    manifest["classifier"]["params"]["train_split"] = {
        "object": "builtins.print", "params": {"end": "called from the file\n"}}
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match="may name but not call"):
        load_model(saved)
    assert "called from the file" not in capsys.readouterr().out


def test_a_damaged_file_is_a_model_file_error(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("module.pt")
    # Flip a byte inside the weights member's data: its CRC no longer matches.
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[at] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged|not a plain state dict"):
        load_model(saved)


def test_a_backbone_name_that_makes_timm_read_files_is_refused(saved):
    manifest = _manifest(saved)
    manifest["classifier"]["params"]["backbone"] = "hf-hub:someone/something"
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match="not a timm architecture"):
        load_model(saved)


def test_the_saving_machines_cache_folder_is_not_used_on_load(fitted, tmp_path):
    from pathlib import Path

    pipe, X = fitted
    elsewhere = tmp_path / "author-cache"
    original = pipe.get_params()["radiomics__cache"]
    try:
        pipe.set_params(radiomics__cache=Path(elsewhere))
        save_model(pipe, tmp_path / "m.hiercls")
    finally:
        pipe.set_params(radiomics__cache=original)
    assert _manifest(tmp_path / "m.hiercls")["radiomics"]["params"]["cache"] == str(elsewhere)
    restored = load_model(tmp_path / "m.hiercls")
    assert restored.get_params()["radiomics__cache"] == "auto"


def test_a_changed_tensor_shape_is_refused(saved):
    with zipfile.ZipFile(saved) as archive:
        state = torch.load(io.BytesIO(archive.read("module.pt")), weights_only=True)
    key = "image_encoder.projection.weight"
    state[key] = torch.zeros(state[key].shape[0], state[key].shape[1] + 1)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _rewrite(saved, "module.pt", buffer.getvalue())
    with pytest.raises(ModelFileError, match=f"{key}.*shape"):
        load_model(saved)


def test_a_pickle_named_hiercls_is_not_unpickled(tmp_path):
    import tempfile
    from pathlib import Path

    marker = Path(tempfile.gettempdir()) / MARKER
    marker.unlink(missing_ok=True)
    path = tmp_path / "model.hiercls"
    path.write_bytes(pickle.dumps(_Smuggled()))
    with pytest.raises(ModelFileError, match="not a zip"):
        load_model(path)
    assert not marker.exists()


def test_cli_fit_writes_and_predict_reads_the_safe_file(tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from hiercls.data.datasets import make_synthetic_tiles

    X, y, groups = make_synthetic_tiles(n_tiles=12, n_patients=2, size=32, random_state=0)
    rows = []
    for k, (image, label, patient) in enumerate(zip(X["image"], y, groups)):
        Image.fromarray(image).save(tmp_path / f"{k:02d}.png")
        rows.append({"image": f"{k:02d}.png", "label": int(label), "patient": patient})
    csv = tmp_path / "tiles.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    model = tmp_path / "model.hiercls"
    tiny = ["--preset", "none", "--backbone", "test_efficientnet", "--image-size", "32", "--embed-dim", "8",
            "--max-epochs", "1", "--patience", "0", "--backend", "fast", "--mask", "full",
            "--cache", "none", "--quiet"]
    assert main(["fit", str(csv), "--model", str(model), *tiny]) == 0
    assert zipfile.is_zipfile(model)
    out = tmp_path / "proba.csv"
    assert main(["predict", str(model), str(csv), "--out", str(out), "--quiet"]) == 0
    table = pd.read_csv(out)
    expected = load_model(model).predict_proba(pd.read_csv(csv).assign(
        image=lambda t: [str(tmp_path / p) for p in t["image"]])[["image"]])
    np.testing.assert_allclose(table[list(hiercls.CLASS_NAMES)].to_numpy(), expected, rtol=1e-6)

    # A tampered file ends the command with one line and exit status 2.
    manifest = _manifest(model)
    manifest["classifier"]["params"]["module"] = {"class": "builtins.eval"}
    _rewrite(model, "hiercls-model.json", json.dumps(manifest).encode())
    capsys.readouterr()
    assert main(["predict", str(model), str(csv), "--out", str(out), "--quiet"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("hiercls predict: error: MODEL") and "'builtins.eval'" in message
    assert "\n" not in message


def test_round_trip_of_the_flat_model_with_a_scheduler_and_two_regions(tmp_path):
    from skorch.callbacks import EarlyStopping, GradientNormClipping, LRScheduler

    from hiercls.data.datasets import make_synthetic_tiles

    X, y, _ = make_synthetic_tiles(n_tiles=12, n_patients=2, size=32, random_state=1)
    names = np.asarray(hiercls.CLASS_NAMES, dtype=object)[np.asarray(y)]
    pipe = make_fusion_pipeline(preset="none",
        **{**TINY_CLASSIFIER, "max_epochs": 1}, hierarchical=False, train_split=None,
        callbacks=[("decay", LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=1)),
                   ("clip", GradientNormClipping(1.0)),
                   ("stop", EarlyStopping(monitor="train_loss", patience=3))],
        radiomics__mask=("full", "tissue"), radiomics__cache=None).fit(X, names)
    path = tmp_path / "flat.hiercls"
    save_model(pipe, path)
    restored = load_model(path)
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))
    assert list(restored.predict(X)) == list(pipe.predict(X))
    assert restored.named_steps["radiomics"].mask == ("full", "tissue")
    callbacks = restored.named_steps["classifier"].callbacks
    assert [name for name, _ in callbacks] == ["decay", "clip", "stop"]
    (_, scheduler), (_, clipping), (_, stopping) = callbacks
    assert scheduler.policy is torch.optim.lr_scheduler.StepLR
    assert scheduler.kwargs == {"step_size": 1}
    assert isinstance(clipping, GradientNormClipping) and clipping.gradient_clip_value == 1.0
    assert isinstance(stopping, EarlyStopping) and stopping.patience == 3 and stopping.sink is print


def test_round_trip_of_a_frozen_head_convolution_backbone(tmp_path):
    from hiercls.data.datasets import make_synthetic_tiles

    X, y, _ = make_synthetic_tiles(n_tiles=8, n_patients=2, size=32, random_state=2)
    pipe = make_fusion_pipeline(preset="none",
        **{**TINY_CLASSIFIER, "max_epochs": 1, "batch_size": 4,
           "backbone": "mobilenetv3_small_050"}, freeze_backbone=True, train_split=None, cache=None,
        radiomics__mask="full", radiomics__cache=None).fit(X, y)
    path = tmp_path / "frozen.hiercls"
    save_model(pipe, path)
    np.testing.assert_array_equal(load_model(path).predict_proba(X), pipe.predict_proba(X))


def test_entries_that_do_not_fit_together_are_refused(saved):
    manifest = _manifest(saved)
    manifest["radiomics"]["feature_names_in_"] = ["path"]  # no image column
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match="do not make a fitted pipeline.*'image'"):
        load_model(saved)


@pytest.mark.parametrize("entry, value, message", [
    ("training_resolution_", [-1.0, 32], "training_resolution_ must be"),
    ("training_resolution_", [2.0, "32"], "training_resolution_ must be"),
    ("mpp_declared_", "yes", "mpp_declared_ must be a boolean"),
])
def test_a_damaged_resolution_entry_is_refused(saved, entry, value, message):
    manifest = _manifest(saved)
    assert manifest["resolution"]["training_resolution_"][1] > 0
    manifest["resolution"][entry] = value
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match=message):
        load_model(saved)


def test_a_model_file_without_the_resolution_step_is_refused(saved):
    manifest = _manifest(saved)
    del manifest["resolution"]
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match="lacks the entry 'resolution'"):
        load_model(saved)


def test_a_model_file_of_version_2_without_the_stain_step_loads_with_it_off(fitted, saved):
    # What save_model wrote before the stain step existed.
    pipe, X = fitted
    manifest = _manifest(saved)
    assert manifest["version"] == 3 and manifest["stain"]["params"]["method"] is None
    del manifest["stain"]
    manifest["version"] = 2
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    restored = load_model(saved)
    stain = restored.named_steps["stain"]
    assert stain.method is None and stain.n_fit_tiles_ == 0
    assert list(stain.feature_names_in_) == list(pipe.named_steps["resolution"].feature_names_in_)
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))


def test_a_version_3_file_without_the_stain_step_is_refused(saved):
    manifest = _manifest(saved)
    del manifest["stain"]
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match="lacks the entry 'stain'"):
        load_model(saved)


def test_an_unknown_format_version_is_refused(saved):
    manifest = _manifest(saved)
    manifest["version"] = 4
    _rewrite(saved, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match=r"format version 4; this hiercls reads versions \[2, 3\]"):
        load_model(saved)


@pytest.mark.parametrize("entry, value, message", [
    ("stain_matrix_", {"ndarray": [[0.5, 0.2], [0.7, 0.8]], "dtype": "<f8"},
     r"stain stain_matrix_ must be finite floats of shape \(3, 2\)"),
    ("max_concentrations_", {"ndarray": [1.0, {"float": "nan"}], "dtype": "<f8"},
     r"stain max_concentrations_ must be finite floats"),
    ("n_fit_tiles_", -1, "stain n_fit_tiles_ must be a whole number"),
])
def test_a_damaged_stain_entry_is_refused(tmp_path, entry, value, message):
    from hiercls.data.datasets import make_synthetic_tiles

    X, y, _ = make_synthetic_tiles(n_tiles=12, n_patients=2, size=32, random_state=0)
    pipe = make_fusion_pipeline(preset="none", **{**TINY_CLASSIFIER, "max_epochs": 1}, radiomics__mask="full",
                                radiomics__cache=None, stain__method="reinhard").fit(X, y)
    path = tmp_path / "stained.hiercls"
    save_model(pipe, path)
    manifest = _manifest(path)
    assert set(manifest["stain"]) == {"params", "feature_names_in_", "n_fit_tiles_",
                                      "target_means_", "target_stds_"}
    manifest["stain"]["params"]["method"] = "macenko"  # asks for targets the file lacks
    _rewrite(path, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match="lacks the entry 'stain_matrix_'"):
        load_model(path)
    manifest["stain"].update(stain_matrix_={"ndarray": [[0.5, 0.2], [0.7, 0.8], [0.4, 0.5]],
                                            "dtype": "<f8"},
                             max_concentrations_={"ndarray": [1.5, 1.2], "dtype": "<f8"})
    manifest["stain"][entry] = value
    _rewrite(path, "hiercls-model.json", json.dumps(manifest).encode())
    with pytest.raises(ModelFileError, match=message):
        load_model(path)
