"""What a slide's predictions look like: overlays, heat maps and the slide report."""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data.labels import CLASS_NAMES
from .prediction import _check_tiles
from .reading import TISSUE_THUMBNAIL, open_slide, tissue_mask

# --------------------------------------------------------------------------------------
# Maps

def _class_colors():  # the maps use the report's class colours
    from ..reporting.plots import CLASS_COLORS

    return CLASS_COLORS


def _thumbnail_grid(slide, tiles, size):
    """The thumbnail and each tile's rectangle on it (row0, row1, col0, col1)."""
    slide = open_slide(slide if slide is not None else tiles.attrs["slide"])
    _, thumbnail = tissue_mask(slide, size=size)
    width, height = slide.dimensions
    sy, sx = thumbnail.shape[0] / height, thumbnail.shape[1] / width
    extent = tiles["extent"].to_numpy(float)
    x, y = tiles["x"].to_numpy(float), tiles["y"].to_numpy(float)
    boxes = np.stack([np.floor(y * sy), np.ceil((y + extent) * sy),
                      np.floor(x * sx), np.ceil((x + extent) * sx)], axis=1) if len(tiles) else \
        np.zeros((0, 4))
    return thumbnail, boxes.astype(np.int64)


def plot_slide_overlay(tiles, slide=None, *, size=TISSUE_THUMBNAIL, alpha=0.45, tissue=True):
    """The slide's thumbnail with each tile coloured by its predicted class.

    Parameters
    ----------
    tiles : DataFrame
        What :func:`predict_slide` returned.
    slide : path, openslide.OpenSlide or None, default=None
        The slide; None opens ``tiles.attrs["slide"]``.
    size : int, default=TISSUE_THUMBNAIL
        Long side of the thumbnail.
    alpha : float, default=0.45
        Opacity of the class colours.
    tissue : bool, default=True
        Draw the tiles over the slide's thumbnail; False draws them on white, a map that
        shows none of the slide's pixels (to publish a map of slides that may not be shared).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_tiles(tiles)
    thumbnail, boxes = _thumbnail_grid(slide, tiles, size)
    if not tissue:
        thumbnail = np.full_like(thumbnail, 255)
    colors = _class_colors()
    overlay = np.zeros((*thumbnail.shape[:2], 4))
    codes = pd.Categorical(tiles["predicted"], categories=CLASS_NAMES).codes
    for (r0, r1, c0, c1), code in zip(boxes, codes):
        if code >= 0:
            rgb = tuple(int(colors[code][i:i + 2], 16) / 255 for i in (1, 3, 5))
            overlay[r0:r1, c0:c1] = (*rgb, alpha)
    fig = Figure(figsize=_figsize(thumbnail), layout="constrained")
    ax = fig.subplots()
    ax.imshow(thumbnail)
    ax.imshow(overlay)
    ax.set_axis_off()
    counts = pd.Series(tiles["predicted"]).value_counts()
    ax.legend(handles=[Patch(color=colors[k], alpha=0.8, label=f"{n} ({int(counts.get(n, 0))})")
                       for k, n in enumerate(CLASS_NAMES)],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8)
    ax.set_title(f"Predicted class of {len(tiles)} tissue tiles")
    return fig


def plot_slide_heatmap(tiles, slide=None, *, size=TISSUE_THUMBNAIL, column="Viable-Tumor"):
    """A heat map of one probability (by default viable tumor) over the slide.

    Parameters
    ----------
    tiles : DataFrame
        What :func:`predict_slide` returned.
    slide : path, openslide.OpenSlide or None, default=None
        The slide; None opens ``tiles.attrs["slide"]``.
    size : int, default=TISSUE_THUMBNAIL
    column : str, default="Viable-Tumor"
        The probability column to map.

    Returns
    -------
    matplotlib.figure.Figure
        The gray thumbnail with the probability over the tissue tiles (0..1 colour scale);
        background left uncoloured.
    """
    _check_tiles(tiles)
    if column not in tiles.columns:
        raise ValueError(f"column {column!r} is not a column of tiles; expected one of "
                         f"{list(CLASS_NAMES)}")
    thumbnail, boxes = _thumbnail_grid(slide, tiles, size)
    heat = np.full(thumbnail.shape[:2], np.nan)
    for (r0, r1, c0, c1), value in zip(boxes, tiles[column].to_numpy(float)):
        heat[r0:r1, c0:c1] = value
    fig = Figure(figsize=_figsize(thumbnail), layout="constrained")
    ax = fig.subplots()
    ax.imshow(thumbnail.mean(axis=2), cmap="gray", vmin=0, vmax=255)
    shown = ax.imshow(np.ma.masked_invalid(heat), cmap="magma", vmin=0.0, vmax=1.0, alpha=0.8)
    fig.colorbar(shown, ax=ax, shrink=0.8, label=f"P({column})")
    ax.set_axis_off()
    ax.set_title(f"P({column}) of {len(tiles)} tissue tiles")
    return fig


def _figsize(thumbnail):
    h, w = thumbnail.shape[:2]
    return (7.5, max(2.5, 6.0 * h / max(w, 1)))


# --------------------------------------------------------------------------------------
# Report

def write_slide_report(out_dir, slides, *, title="hiercls slide report", metadata=None,
                       dpi=110):
    """Write ``out_dir/report.html``: one section per slide with its necrosis and maps.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Created if needed; ``report.html`` is overwritten.
    slides : dict of str to dict
        Per slide name: ``tiles`` (the :func:`predict_slide` table), ``necrosis``
        (:func:`slide_necrosis`) and ``figures`` (a dict ``{"overlay": Figure,
        "heatmap": Figure}``; missing figures are drawn from the tiles).
    title : str, default="hiercls slide report"
    metadata : dict or None, default=None
        Shown as a table under the title.
    dpi : int, default=110

    Returns
    -------
    pathlib.Path
        The path of ``report.html``, self-contained (figures embedded as base64 PNG).
    """
    import base64
    import html

    from ..reporting.html import html_page, html_table, percent, png_bytes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    for name, entry in slides.items():
        tiles, necrosis = entry["tiles"], entry["necrosis"]
        figures = dict(entry.get("figures") or {})
        figures.setdefault("overlay", None)
        figures.setdefault("heatmap", None)
        if figures["overlay"] is None:
            figures["overlay"] = plot_slide_overlay(tiles)
        if figures["heatmap"] is None:
            figures["heatmap"] = plot_slide_heatmap(tiles)
        row = necrosis.iloc[0]
        low, high = float(row["necrotic_fraction_low"]), float(row["necrotic_fraction_high"])
        interval = (f"{100 * low:.1f} – {100 * high:.1f} %" if np.isfinite(low)
                    and np.isfinite(high) else "n/a")
        counts = tiles["predicted"].value_counts() if len(tiles) else pd.Series(dtype=int)
        summary.append([name, len(tiles), *[int(counts.get(c, 0)) for c in CLASS_NAMES],
                        percent(float(row["necrotic_fraction"])), interval, row["response"]])
        images = []
        for key, caption in (("overlay", "Predicted class of each tissue tile."),
                             ("heatmap", "Probability of viable tumor of each tissue tile.")):
            encoded = base64.b64encode(png_bytes(figures[key], dpi)).decode("ascii")
            images.append(f'<figure><img alt="{html.escape(name)} {key}" '
                          f'src="data:image/png;base64,{encoded}"><figcaption>'
                          f"{html.escape(caption)}</figcaption></figure>")
        attrs = tiles.attrs
        detail = (f"{len(tiles)} tissue tiles of {attrs.get('tile_size', '?')} px at "
                  f"{attrs.get('mpp', '?')} µm/px; slide level 0 at "
                  f"{attrs.get('slide_mpp', '?')} µm/px, {attrs.get('dimensions', '?')} px.")
        sections.append(f'<h2 id="slide-{html.escape(name)}">{html.escape(name)}</h2>'
                        f"<p>{html.escape(detail)}</p>{''.join(images)}")
    header = ["slide", "tissue tiles", *CLASS_NAMES, "necrosis (estimate)", "interval", "response"]
    body = f"""<h2 id="necrosis">Necrosis per slide</h2>
{html_table(header, summary)}
<p class="note">Necrosis is the non-viable share of the tumor tiles (Non-Tumor tiles
excluded), sum P(Non-Viable) / sum P(Non-Viable or Viable); the interval is a percentile
bootstrap over the slide's tiles. Good response: necrosis &gt;= 90 %.</p>
{"".join(sections)}"""
    page = html_page(title, body, metadata=metadata)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path

