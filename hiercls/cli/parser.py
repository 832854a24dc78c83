"""The ``hiercls`` argument parser: the subcommands, their arguments and what they write.

Only argparse lives here and in :mod:`hiercls.cli.options` (the shared options and the
option types); :mod:`hiercls.cli.commands` maps each command to its handler.
"""

import argparse
import textwrap

from ..data.images import TILE_SUFFIXES
from ..data.tables import LABELLED_TILES
from .options import (
    NECROSIS_OPTIONS,
    _add_necrosis_method,
    _add_necrosis_options,
    _add_quiet,
    _add_radiomics,
    _add_sampling,
    _add_skip_unreadable,
    _add_training,
    _n_jobs,
    _positive_int,
    necrosis_options,
)

# NECROSIS_OPTIONS and necrosis_options: importable here, where they were.
__all__ = ["NECROSIS_OPTIONS", "build_parser", "installed_version", "necrosis_options"]

_DATA_HELP = LABELLED_TILES


# --------------------------------------------------------------------------------------
# What the commands write

_EVALUATE_EPILOG = """\
files written to DIR:
  metrics.csv          one row per fold: fold, test_patients and the paper's metrics
                       (accuracy, f1_macro, f1_weighted, roc_auc_ovr and per class
                       sen_at_spe90_*, spe_at_sen90_*, f1_*, auc_*); empty where a figure
                       is undefined on the fold (its test patients lack a class)
  metrics_summary.csv  one row per metric: mean and sd over the folds where it is defined,
                       n_folds (how many)
  necrosis.csv         one row per patient: necrotic and viable fraction of the tumor from
                       the out-of-fold probabilities (bootstrap interval, argmax variant,
                       response), the pathologists' reference_* fractions from the labels,
                       absolute_error
  predictions.csv      one row per tile: image, the three out-of-fold probabilities,
                       predicted, y_true, patient, fold, gate_image, gate_radiomics
  histories.json       each fold's per-epoch training record
  run.json             the settings of the run
  report.html          a self-contained report (tables and figures); each figure also as PNG
The metrics table (mean ± sd over folds) is printed, also with --quiet.
"""


_PREDICT_EPILOG = """\
The output CSV has the input's columns (image: the tile's path), then one column per
class with its probability (Non-Tumor, Non-Viable-Tumor, Viable-Tumor), predicted (the
most probable class) and the gate weights gate_image and gate_radiomics (summing to one).
"""


_REPORT_EPILOG = """\
Reads RUN/predictions.csv and RUN/metrics.csv (the out-of-fold predictions and the
per-fold metrics, not scored again), and RUN/histories.json and RUN/run.json where
present; recomputes the per-patient necrosis from the predictions; writes report.html
(and its figures as PNG) to --out, by default RUN itself. Use it to re-render a report,
e.g. with another title or a newer hiercls.
"""


_SLIDE_EPILOG = """\
files written to DIR, per slide in DIR/<slide name>/:
  tiles.csv     one row per tissue tile: x, y (level-0 top-left corner), extent (side in
                level-0 pixels), tissue (fraction), Non-Tumor, Non-Viable-Tumor,
                Viable-Tumor (probabilities), predicted, gate_image, gate_radiomics
  necrosis.csv  the slide's necrotic and viable fraction of the tumor with a bootstrap
                interval, the argmax variant and the response
  overlay.png   the thumbnail with each tile coloured by its predicted class
  heatmap.png   the probability of viable tumor over the slide
and DIR/report.html with all slides.
"""


_NECROSIS_EPILOG = """\
files written to DIR:
  necrosis.csv  one row per group: n_tiles, expected_tumor_tiles, necrotic_fraction with its
                interval (necrotic_fraction_low, _high), viable_fraction (and interval), the
                argmax variant, response (good, poor or no tumor); where every tile has a
                label (a CSV label column, a TCIA folder) also the pathologists' reference_*
                fractions and absolute_error
  report.html   the table and the figure, self-contained; the figure also as necrosis.png
The table is printed, also with --quiet.
"""


# --------------------------------------------------------------------------------------
# The parser

def installed_version():
    """The installed distribution's version (its metadata, the one pyproject.toml sets)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hiercls")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser():
    """The ``hiercls`` argument parser, one subcommand per task."""
    parser = argparse.ArgumentParser(
        prog="hiercls",
        description="Hierarchical image + radiomics classification of osteosarcoma H&E tiles.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="grouped cross-validation on built-in synthetic tiles, printing the metrics")
    demo.add_argument("--n-tiles", type=int, default=240)
    demo.add_argument("--n-patients", type=int, default=4)
    demo.add_argument("--size", type=int, default=64, help="tile side in pixels")
    demo.add_argument("--backbone", default="resnet18", help="timm model name")
    demo.add_argument("--max-epochs", type=int, default=8)
    demo.add_argument("--lr", type=float, default=1e-3)
    demo.add_argument("--n-jobs", type=int, default=1, help="processes for radiomics")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="print only the table")

    formatter = argparse.RawDescriptionHelpFormatter

    extract = commands.add_parser(
        "extract", formatter_class=formatter,
        help="radiomic features of each tile to a CSV or Parquet file",
        description="Compute the 29 radiomic features of each tile and write them, one row "
                    "per tile after the input's columns, to FILE.csv or FILE.parquet.")
    extract.add_argument("data", metavar="DATA",
                         help=_DATA_HELP + "; or a folder of tiles, or a CSV with only an image column")
    extract.add_argument("--out", required=True, metavar="FILE",
                         help="output file; .csv or .parquet (by the suffix)")
    _add_radiomics(extract)
    _add_sampling(extract)
    _add_skip_unreadable(extract)
    _add_quiet(extract)

    fit = commands.add_parser(
        "fit", formatter_class=formatter, help="fit the fusion pipeline and save it",
        description="Fit make_fusion_pipeline (radiomics, standardization, classifier) on all "
                    "tiles of DATA and save the fitted pipeline. It takes a DataFrame with "
                    "one column, image. A .hiercls file holds only weights and JSON, and "
                    "loading it (hiercls.load_model, 'hiercls predict') runs no code from "
                    "the file; a .joblib or .pkl file is a pickle (joblib.dump), and loading "
                    "a pickle can execute arbitrary code: load only pickles you trust.")
    fit.add_argument("data", metavar="DATA", help=_DATA_HELP)
    fit.add_argument("--model", required=True, metavar="OUT",
                     help="where to save the fitted pipeline: .hiercls (safe to share), or "
                          ".joblib/.pkl (a pickle)")
    fit.add_argument("--calibration", choices=("slide", "tiles", "patient", "none"),
                     default=None,
                     help="the calibration set of the necrosis quantifier saved with the model: "
                          "out-of-fold probabilities of the training tiles from 5 folds of "
                          "whole slides (the slide of TCIA file names or a slide column), of "
                          "tiles, or of patients (each fold costs one more training); none "
                          "saves no quantifier, and necrosis falls back to expected counts "
                          "(default: slide, else tiles where the tiles name no slide; where "
                          "the data are too few for 5 folds, the model is saved without one "
                          "and a message says so)")
    _add_training(fit)

    evaluate = commands.add_parser(
        "evaluate", formatter_class=formatter, epilog=_EVALUATE_EPILOG,
        help="patient-grouped cross-validation: metrics, necrosis per patient, HTML report",
        description="Cross-validate the fusion pipeline with whole patients held out "
                    "(leave one patient out unless --folds), estimate each patient's "
                    "necrosis from its out-of-fold probabilities next to the pathologists' "
                    "labels, and write the results and report.html to DIR.")
    evaluate.add_argument("data", metavar="DATA", help=_DATA_HELP)
    evaluate.add_argument("--out", required=True, metavar="DIR",
                          help="output folder (created if needed; files in it are overwritten)")
    evaluate.add_argument("--folds", type=_positive_int, metavar="K",
                          help="GroupKFold with K folds instead of leave one patient out")
    evaluate.add_argument("--title", default="hiercls evaluation report",
                          help="title of report.html")
    _add_necrosis_method(evaluate)
    _add_training(evaluate)

    predict = commands.add_parser(
        "predict", formatter_class=formatter, epilog=_PREDICT_EPILOG,
        help="class probabilities and gate weights of new tiles with a saved model",
        description="Predict each tile of TILES with a model saved by 'hiercls fit'. "
                    "WARNING: a .joblib or .pkl MODEL is unpickled, and unpickling can "
                    "execute arbitrary code; load only pickles from a source you trust. A "
                    ".hiercls MODEL holds only weights and JSON and runs no code from the "
                    "file.")
    predict.add_argument("model", metavar="MODEL",
                         help="a model saved by 'hiercls fit': .hiercls (safe), or .joblib/.pkl "
                              "(a pickle: loading it runs code from the file)")
    predict.add_argument("tiles", metavar="TILES",
                         help=f"a folder of tiles ({', '.join('*' + s for s in TILE_SUFFIXES)}, "
                              "searched recursively) or a .csv file with an image column "
                              "(relative paths resolved against its folder)")
    predict.add_argument("--out", required=True, metavar="FILE", help="output .csv file")
    predict.add_argument("--n-jobs", type=_n_jobs, help="processes for radiomics (default: the model's)")
    predict.add_argument("--cache", metavar="DIR|none",
                         help="radiomics cache folder or none (default: the model's)")
    _add_skip_unreadable(predict)
    _add_quiet(predict)

    report = commands.add_parser(
        "report", formatter_class=formatter, epilog=_REPORT_EPILOG,
        help="re-render report.html from the output folder of 'hiercls evaluate'",
        description="Write report.html from the out-of-fold predictions of an evaluate run.")
    report.add_argument("run", metavar="RUN",
                        help="the --out folder of 'hiercls evaluate', or its predictions.csv")
    report.add_argument("--out", metavar="DIR", help="where to write report.html (default: RUN)")
    report.add_argument("--title", help="title of the report (default: that of the run)")
    report.add_argument("--seed", type=int, default=0, help="seed of the necrosis bootstrap")
    _add_necrosis_method(report)
    _add_quiet(report)
    necrosis = commands.add_parser(
        "necrosis", formatter_class=formatter, epilog=_NECROSIS_EPILOG,
        help="necrotic fraction, interval and response per patient, slide or folder of "
             "tiles with a saved model",
        description="Predict the tiles of TILES with a model saved by 'hiercls fit' and "
                    "estimate the necrotic fraction of the tumor of each group of tiles "
                    "(hiercls.evaluation.necrosis.necrosis_report): by default each TILES "
                    "argument is a group; --by patient or --by slide read the group from "
                    "the TCIA file names, --groups COLUMN from a CSV column. WARNING: a "
                    ".joblib or .pkl MODEL is unpickled, which can execute arbitrary code.")
    necrosis.add_argument("model", metavar="MODEL",
                          help="a model saved by 'hiercls fit': .hiercls (safe), or "
                               ".joblib/.pkl (a pickle: loading it runs code from the file)")
    necrosis.add_argument("tiles", metavar="TILES", nargs="+",
                          help="folders of tiles (searched recursively; a TCIA folder with its "
                               "labels), tile image files, or .csv files with an image column "
                               "(relative paths resolved against its folder; other columns "
                               "kept, e.g. for --groups)")
    grouping = necrosis.add_mutually_exclusive_group()
    grouping.add_argument("--groups", metavar="COLUMN",
                          help="the column of the TILES CSV files that holds each tile's group, "
                               "e.g. patient")
    grouping.add_argument("--by", choices=("source", "patient", "slide"), default="source",
                          help="source: each TILES folder or CSV is a group (image files given "
                               "one by one, their folder); patient: the patient of the TCIA "
                               "file name (Case-4-...); slide: its slide, the name without the "
                               "pixel coordinates (Case-4-C21) (default: source)")
    necrosis.add_argument("--out", required=True, metavar="DIR",
                          help="output folder (created if needed; files in it are overwritten)")
    necrosis.add_argument("--title", default="hiercls necrosis report",
                          help="title of report.html")
    necrosis.add_argument("--n-jobs", type=_n_jobs,
                          help="processes for radiomics (default: the model's)")
    necrosis.add_argument("--cache", metavar="DIR|none",
                          help="radiomics cache folder or none (default: the model's)")
    _add_necrosis_options(necrosis)
    _add_skip_unreadable(necrosis)
    _add_quiet(necrosis)

    slide = commands.add_parser(
        "slide", formatter_class=formatter, epilog=_SLIDE_EPILOG,
        help="tiles, necrosis and maps of whole-slide images with a saved model",
        description="Find the tissue of each SLIDE, cut it into tiles of the model's field "
                    "of view, predict each tile with a model saved by 'hiercls fit', and "
                    "write per slide the tiles, the necrotic fraction and two maps, and one "
                    "report.html.")
    slide.add_argument("model", metavar="MODEL", help="a model saved by 'hiercls fit'")
    slide.add_argument("slides", metavar="SLIDE", nargs="+",
                       help="whole-slide images (SVS, NDPI, MRXS, SCN, tiled TIFF, ...)")
    slide.add_argument("--out", required=True, metavar="DIR",
                       help="output folder (created if needed; files in it are overwritten)")
    slide.add_argument("--mpp", type=float, metavar="M",
                       help="the model's resolution in micrometres per pixel (default: what "
                            "the model declares; a model trained on tiles that declared none "
                            "is refused without it)")
    slide.add_argument("--tile-size", type=_positive_int, metavar="S",
                       help="the model's tile side in pixels (default: what the model "
                            "declares, else 512)")
    slide.add_argument("--slide-mpp", type=float, metavar="M",
                       help="the slides' level-0 resolution, for files that do not declare it")
    # hiercls.slides.MIN_TISSUE, written out so that --help does not load skimage.
    slide.add_argument("--min-tissue", type=float, default=0.01, metavar="F",
                       help="least tissue fraction of a tile (default: 0.01; pen marks, "
                            "specks and glass hold none)")
    slide.add_argument("--batch-size", type=_positive_int, default=64,
                       help="tiles read and predicted at a time (default: 64)")
    slide.add_argument("--n-jobs", type=_n_jobs, help="processes for radiomics (default: the model's)")
    slide.add_argument("--cache", default="none", metavar="DIR|auto|none",
                       help="feature cache of radiomics and backbone while reading the slides; "
                            "off by default, since a slide's tiles are seen once (default: none)")
    slide.add_argument("--title", default="hiercls slide report", help="title of report.html")
    slide.add_argument("--seed", type=int, default=0, help="seed of the necrosis bootstrap")
    _add_necrosis_method(slide)
    _add_quiet(slide)
    for command in commands.choices.values():
        # Raw formatting keeps the epilogs' layout; wrap the descriptions by hand.
        if command.formatter_class is formatter and command.description:
            command.description = textwrap.fill(command.description, 88)
    return parser
