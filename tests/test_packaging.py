"""What the distribution declares: licence, citation, dependency floors, extras."""

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _floor(requirement):
    name, _, version = re.match(r"([\w.\-\[\]]+)>=([\d.]+)", requirement).group(1, 0, 2)
    return name, tuple(int(part) for part in version.split("."))


def test_the_licence_file_is_the_one_pyproject_declares():
    assert PROJECT["license"] == {"text": "BSD-3-Clause"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "hiercls developers" in text
    assert "License :: OSI Approved :: BSD License" in PROJECT["classifiers"]


def test_the_citation_names_this_version_the_paper_and_the_data():
    yaml = pytest.importorskip("yaml")  # PyYAML comes with mkdocs (the test extra)

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == PROJECT["version"]
    assert citation["license"] == "BSD-3-Clause"
    dois = {ref.get("doi") for ref in citation["references"]}
    assert "10.7937/tcia.2019.bvhjhdas" in dois              # the TCIA collection
    assert any("arXiv:2601.09416" in str(ref.get("identifiers")) for ref in citation["references"])


def test_torch_floor_is_the_one_model_files_need():
    from hiercls.persistence import model_files as persistence

    floors = dict(_floor(r) for r in PROJECT["dependencies"] if r.startswith(("torch>", "torchvision>")))
    # .hiercls files are read with torch.load(weights_only=True), safe from torch 2.6 on.
    assert floors["torch"] >= (2, 6)
    assert "2.6" in Path(persistence.__file__).read_text()
    assert floors["torchvision"] >= (0, 21)  # the release that goes with torch 2.6


def test_no_extra_repeats_a_core_dependency_and_all_covers_the_features():
    core = {_floor(r)[0] for r in PROJECT["dependencies"] if ">=" in r}
    extras = PROJECT["optional-dependencies"]
    for name, requirements in extras.items():
        if name == "test":
            continue
        repeated = {_floor(r)[0] for r in requirements} & core
        assert not repeated, f"extra {name!r} repeats core dependencies {repeated}"
    features = {r for name in ("lite0", "lite1", "lite2", "dask", "slides") for r in extras[name]}
    assert features <= set(extras["all"])
    assert not set(extras["docs"]) & set(extras["all"])      # tools, not features


#: The flat module paths before the layered layout: gone, and named in CHANGELOG.md.
OLD_MODULES = {"images", "datasets", "labels", "radiomics", "resolution", "cache",
               "frozen_features", "model", "loss", "backbones", "augmentation", "stain",
               "classifier", "pipeline", "splits", "callbacks", "tile_dataset",
               "metrics", "necrosis", "plots", "report"}


def test_the_changelog_keeps_an_unreleased_section_and_the_moved_paths():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    # Every module path that moved is named there with its new home.
    for old in OLD_MODULES:
        assert f"`hiercls.{old}`" in text or f"hiercls.{old}," in text, old
    for version in ("Version 1", "Version 2", "Version 3"):
        assert version in text
