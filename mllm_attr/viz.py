"""Plots as free functions taking results (matplotlib, RGB).

Every function here draws with :class:`matplotlib.figure.Figure` objects directly, never
through :mod:`matplotlib.pyplot`: the library does not pick a backend, does not register
figures in pyplot's global state (so there is nothing to close and no memory leak in
loops), and calls ``plt.show`` only in :func:`show_figure` (the results' ``show()``).
Functions that take an ``ax`` draw on it and return it; the others build and return a new
``Figure``. In Jupyter a returned ``Figure`` displays inline (run ``%matplotlib inline``
once); elsewhere write it with :func:`save_figure` (PNG files are written as RGB, without an
alpha channel) or turn it into an array with :func:`figure_to_rgb`.

Maps
----
How a map is drawn (:func:`overlay`): the image in grey levels (:func:`gray_image`, so its own
colours are never mistaken for the map's), under the perceptually uniform :data:`HEATMAP_CMAP`
(``inferno``) whose opacity grows with the value: a region of zero value shows the greyed image
exactly, the top region is mostly colour. The top regions are outlined (:func:`top_regions`:
for the joint map the shortest prefix of the ordering whose insertion score reaches 90 % of the
way from the empty image to the highest confidence; for one token its regions of largest own
gain, 90 % of its positive gain; at most 30 % of the image), the title names the explained
words and the answer, and the colour bar (:func:`display_cmap`: the colours as they appear
over the grey image) says what the value means (:func:`map_label`). A map without an
ordering (:func:`plot_methods`, :func:`plot_hallucination_panel` given an array) outlines
where it is at least half its maximum.

* the *joint* map (``expl.saliency()``, ``float32[H, W]`` in ``[0, 1]``) ranks regions by the
  search ordering over all explained tokens together; with the default ``rule="evidence"`` a
  region's value is its marginal gain of the objective relative to the top region's.
* the *per-token* map (:func:`token_gain_map`): the search ordering is shared by all
  explained tokens, so a token has no ordering of its own. What it does have is its own
  marginal gain at every step of the shared ordering (:func:`token_region_gains`)::

      F_k(t)   = λ1 · ins[t, k] + λ2 · (1 − dele[t, k])          (prefix of t regions)
      F_k(0)   = λ1 · p_blank[k] + λ2 · (1 − p_full[k])
      gain_k(r) = F_k(t) − F_k(t − 1)    where r = ordering[t − 1]

  i.e. how much adding region ``r`` to the prefix helped token ``k`` (insight gained plus
  necessity gained). Gains are signed (a region can hurt a token the others needed); their
  token mean is exactly the joint objective's marginal gain, and their sum over regions is
  ``(λ1 + λ2) · (p_full[k] − p_blank[k])``: the token's total image effect. Per-token maps are
  drawn with a diverging map (:data:`GAIN_CMAP`; red helps, blue hurts) normalised by the
  largest absolute gain of that token, and the overlay opacity follows ``|gain|`` so regions
  that did not matter show the greyed image.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .maps import normalize_map, resize_map

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: What the plots take: an :class:`mllm_attr.explanation.Explanation` (read through its public
#: attributes; this module sits below the result types and does not import them).
ExplanationLike = Any

#: Colour map of saliency overlays: perceptually uniform (equal steps in value look like equal
#: steps in colour, unlike jet, whose bright bands invent edges), readable in grey print; of it
#: :data:`HEATMAP_RANGE` is used.
HEATMAP_CMAP = "inferno"
HEATMAP_RANGE = (0.0, 1.0)
#: Opacity of the map where its value is 1 (it falls linearly to 0 with the value).
HEATMAP_ALPHA = 0.8
#: Grey levels the image is mapped to under a map (black -> the first, white -> the second):
#: dimmed, so the map's colours stand out, but with its shapes readable.
GRAY_LEVELS = (0.12, 0.72)
#: Outline colour of the top regions (cyan: no colour of inferno or of RdBu_r is near it).
OUTLINE_COLOR = "#00E5FF"
#: Insertion-score fraction and largest image share of the outlined top regions (:func:`top_regions`).
OUTLINE_FRACTION = 0.9
OUTLINE_AREA = 0.3
#: Diverging colour map of signed per-token gains (red: the region helped the token).
GAIN_CMAP = "RdBu_r"
#: Okabe-Ito colours (colour-blind safe) used for lines and labels.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
INSERTION_COLOR = "#D55E00"
DELETION_COLOR = "#0072B2"

_RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.6,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "pdf.fonttype": 42,  # TrueType in PDFs (editable text, accepted by publishers)
    "svg.fonttype": "none",
    "text.parse_math": False,  # generated text is data: "$5 and $6" must not become mathtext
}


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), facecolor="white", layout=layout)
    FigureCanvasAgg(fig)  # an Agg canvas regardless of the session's backend (headless-safe)
    return fig


# -- arrays and figures ------------------------------------------------------------------------


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8[H, W, 3] RGB array; got {arr.dtype}{list(arr.shape)}")
    return arr


def get_cmap(cmap: str | Colormap | None = None) -> Colormap:
    """A matplotlib colour map: by name, as given, or (``None``) the heatmap map.

    The heatmap map is :data:`HEATMAP_CMAP` (``inferno``: black for no value, through red and
    orange, to pale yellow for the top value) restricted to :data:`HEATMAP_RANGE`.
    """
    import matplotlib
    from matplotlib.colors import Colormap, ListedColormap

    if cmap is None:
        lo, hi = HEATMAP_RANGE
        base = matplotlib.colormaps[HEATMAP_CMAP]
        if (lo, hi) == (0.0, 1.0):
            return base
        return ListedColormap(base(np.linspace(lo, hi, 256)), name=f"{HEATMAP_CMAP}_part")
    if isinstance(cmap, str):
        if cmap not in matplotlib.colormaps:
            raise ValueError(
                f"unknown colour map {cmap!r}; expected a matplotlib colour map name such as 'inferno' or 'viridis'"
            )
        return matplotlib.colormaps[cmap]
    if isinstance(cmap, Colormap):
        return cmap
    raise TypeError(f"cmap must be a colour map name, a matplotlib Colormap or None; got {type(cmap).__name__}")


def gray_image(image: np.ndarray, levels: tuple[float, float] = GRAY_LEVELS) -> np.ndarray:
    """``uint8[H, W, 3]``: the RGB image in grey levels (luma), mapped into ``levels``.

    This is what a map is drawn over, and what a region of zero value shows.
    """
    return _to_uint8(_gray_base(_check_image(image), levels))


def _gray_base(image: np.ndarray, levels: tuple[float, float] = GRAY_LEVELS) -> np.ndarray:
    lum = (image.astype(np.float64) / 255.0) @ np.array([0.299, 0.587, 0.114])
    lo, hi = levels
    return np.repeat((lo + (hi - lo) * lum)[..., None], 3, axis=2)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def overlay(
    image: np.ndarray,
    saliency: np.ndarray,
    alpha: float | None = None,
    cmap: str | Colormap | None = None,
    *,
    gray: bool = True,
    scale_alpha: bool = True,
) -> np.ndarray:
    """``uint8[H, W, 3]``: the saliency (``float[H, W]`` in ``[0, 1]``) drawn over the RGB image.

    Args:
        alpha: opacity of the map at value 1 (default :data:`HEATMAP_ALPHA`; ``0.55`` with
            ``scale_alpha=False``).
        cmap: a name or Colormap; ``None`` is the heatmap map (:func:`get_cmap`).
        gray: draw over :func:`gray_image` (default) instead of the colour image, so the
            image's own colours are not read as the map's.
        scale_alpha: the opacity is ``alpha · value`` (default), so a region of value 0 shows
            the (greyed) image untouched; ``False``: the same ``alpha`` everywhere (a plain blend).
    """
    image = _check_image(image)
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"saliency has shape {saliency.shape}; expected the image's {image.shape[:2]}")
    if alpha is None:
        alpha = HEATMAP_ALPHA if scale_alpha else 0.55
    v = np.clip(np.nan_to_num(saliency), 0, 1)
    colours = get_cmap(cmap)(v)[..., :3]
    base = _gray_base(image) if gray else image.astype(np.float64) / 255.0
    a = (alpha * v)[..., None] if scale_alpha else alpha
    return _to_uint8((1 - a) * base + a * colours)


def overlay_signed(
    image: np.ndarray, values: np.ndarray, alpha: float = 0.8, cmap: str = GAIN_CMAP, *, gray: bool = True
) -> np.ndarray:
    """``uint8[H, W, 3]``: a signed map (``float[H, W]`` in ``[-1, 1]``) over the image.

    Colour comes from the diverging ``cmap`` (``-1`` -> its low end, ``+1`` -> its high end);
    opacity is ``alpha · |value|``, so zero leaves the image untouched. With ``gray`` the
    image underneath is :func:`gray_image`, so its own colours are not mistaken for the map's.
    """

    image = _check_image(image)
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), -1.0, 1.0)
    if v.shape != image.shape[:2]:
        raise ValueError(f"values have shape {v.shape}; expected the image's {image.shape[:2]}")
    colours = get_cmap(cmap)(0.5 + 0.5 * v)[..., :3]
    a = (alpha * np.abs(v))[..., None]
    base = _gray_base(image) if gray else image.astype(np.float64) / 255.0
    return _to_uint8((1 - a) * base + a * colours)


def display_cmap(
    cmap: str | Colormap | None = None, alpha: float | None = None, *, signed: bool = False, gray: float = 0.42
) -> Colormap:
    """The colours a map really shows over a mid-grey image, as a colour map (for colour bars).

    :func:`overlay` fades the colour of low values into the grey image; a colour bar of the raw
    ``cmap`` would show colours that appear nowhere in the picture. ``signed``: the
    :func:`overlay_signed` look (``-1..1`` over the bar, default ``cmap`` :data:`GAIN_CMAP`).
    """
    from matplotlib.colors import ListedColormap

    t = np.linspace(0.0, 1.0, 256)
    if signed:
        cm, amax = get_cmap(cmap or GAIN_CMAP), 0.8 if alpha is None else alpha
        a = amax * np.abs(2 * t - 1)
    else:
        cm, amax = get_cmap(cmap), HEATMAP_ALPHA if alpha is None else alpha
        a = amax * t
    rgb = (1 - a[:, None]) * gray + a[:, None] * cm(t)[:, :3]
    return ListedColormap(np.clip(rgb, 0, 1), name=f"{cm.name}_shown")


# -- top regions and outlines ------------------------------------------------------------------


def top_regions(
    expl: ExplanationLike,
    token: int | None = None,
    *,
    fraction: float = OUTLINE_FRACTION,
    max_area: float = OUTLINE_AREA,
) -> np.ndarray:
    """``int64[k]``: the region ids drawn outlined, most important first.

    * joint map (``token=None``): the shortest prefix of the ordering whose (token-mean)
      insertion score reaches ``p_blank + fraction · (highest confidence − p_blank)``: the
      regions that alone recover that share of what showing regions can add;
    * explained token ``token``: the ordering is shared by all tokens, so a prefix of it may
      start with regions that did nothing for this token; instead its regions by decreasing
      own gain (:func:`token_region_gains`), the fewest whose positive gains add up to
      ``fraction`` of all of its positive gains.

    Both are cut to at most ``max_area`` of the image (at least one region). Features that are
    not image regions (prompt words of a prompt-word attribution) are skipped. Empty when
    nothing scores above the empty image (no positive gain).
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}")
    if not 0.0 < float(max_area) <= 1.0:
        raise ValueError(f"max_area must be in (0, 1]; got {max_area!r}")
    n = int(expl.n_regions)
    order = np.asarray(expl.ordering, dtype=np.int64)
    if token is None:
        _, y = expl.curve("insertion", None)
        p0, best = float(y[0]), float(np.max(y))
        if not best > p0 + 1e-9:
            return np.zeros(0, dtype=np.int64)
        t = int(np.argmax(y >= p0 + float(fraction) * (best - p0)))  # first prefix that reaches it (t >= 1)
        chosen = [int(f) for f in order[:t] if int(f) < n]
    else:
        f0, value = expl.objective_curve(token)
        steps = np.diff(np.concatenate([[f0], np.asarray(value, dtype=np.float64)]))
        gain = np.empty(len(order))
        gain[order] = steps
        gain = np.maximum(gain[:n], 0.0)
        total = float(gain.sum())
        if not total > 1e-12:
            return np.zeros(0, dtype=np.int64)
        by_gain = np.argsort(-gain, kind="stable")
        k = int(np.argmax(np.cumsum(gain[by_gain]) >= float(fraction) * total - 1e-12)) + 1
        chosen = [int(r) for r in by_gain[:k]]
    share = np.bincount(np.asarray(expl.labels).ravel(), minlength=n) / np.asarray(expl.labels).size
    out: list[int] = []
    area = 0.0
    for r in chosen:
        if out and area + share[r] > max_area + 1e-9:
            break
        out.append(r)
        area += share[r]
    return np.asarray(out, dtype=np.int64)


def top_region_mask(expl: ExplanationLike, token: int | None = None, **kw: Any) -> np.ndarray:
    """``bool[H, W]``: the pixels of :func:`top_regions` (same arguments)."""
    return np.isin(np.asarray(expl.labels), top_regions(expl, token, **kw))


def _outline_text(expl: ExplanationLike, regions: np.ndarray, token: int | None = None) -> str:
    if not len(regions):
        return "no outline: no region raises the score above the empty image"
    area = float(np.isin(np.asarray(expl.labels), regions).mean())
    k, n = len(regions), int(expl.n_regions)
    text = f"outlined: top {k} of {n} regions ({area:.0%} of the image)"
    _, y = expl.curve("insertion", token)
    if np.array_equal(np.asarray(expl.ordering)[:k], regions):  # a prefix: its score is on the curve
        full = float(expl.p_full.mean() if token is None else expl.p_full[token])
        text += f"\nshown alone: p = {float(y[k]):.2f} (whole image: {full:.2f})"
    return text


def map_label(expl: ExplanationLike | None = None, *, rule: str = "evidence", token: int | None = None) -> str:
    """What a map's value means, for colour bars and captions.

    ``rule="evidence"``: the region's marginal gain of the objective (insight + necessity),
    measured from the empty image, relative to the top region's (1 = the strongest region);
    ``"reference"``: the research code's rule. A map-based method's own map (``saliency_map``)
    and a bare map (``expl=None``) are min-max normalised values.
    """
    if expl is None or getattr(expl, "saliency_map", None) is not None:
        return "map value\n(min-max normalised; 1 = highest)"
    who = "" if token is None else f" for token {_token_label(expl.target_tokens[token])!r}"
    if rule == "reference":
        return f"reference rule{who}\n(cumulative gain, min-max; 1 = first region)"
    return f"region evidence{who}\n(gain ÷ top region's gain; 1 = strongest)"


def _outline(ax: Axes, mask: np.ndarray, *, color: str = OUTLINE_COLOR, width: float = 1.6) -> None:
    """Outline ``mask`` (``bool[H, W]``) on an image axes (a contour along the pixel edges, with a
    dark halo so it reads on light and dark pixels alike)."""
    import matplotlib.patheffects as pe

    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or mask.all():
        return
    padded = np.pad(mask.astype(float), 1)
    # contour through the half-way points of a nearest-neighbour upsampling: follows the pixel grid
    up = np.kron(padded, np.ones((4, 4)))
    ys = (np.arange(up.shape[0]) + 0.5) / 4 - 1.5
    xs = (np.arange(up.shape[1]) + 0.5) / 4 - 1.5
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    cs = ax.contour(xs, ys, up, levels=[0.5], colors=[color], linewidths=width)
    cs.set(path_effects=[pe.Stroke(linewidth=width + 1.6, foreground="#000000", alpha=0.6), pe.Normal()])
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)


def _draw_outline(rgb: np.ndarray, mask: np.ndarray, *, color: str = OUTLINE_COLOR, width: int = 2) -> np.ndarray:
    """``rgb`` with the boundary of ``mask`` painted ``width`` pixels wide (inside the mask)."""
    from matplotlib.colors import to_rgb
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or mask.all():
        return rgb
    inner = binary_erosion(mask, iterations=width, border_value=1)
    ring = mask & ~inner
    halo = binary_erosion(mask, iterations=width + 1, border_value=1)
    out = rgb.copy()
    out[inner & ~halo] = (out[inner & ~halo] * 0.4).astype(np.uint8)  # a dark inner line: readable on light pixels
    out[ring] = np.asarray([round(c * 255) for c in to_rgb(color)], dtype=np.uint8)
    return out


def map_image(
    image: np.ndarray,
    values: np.ndarray,
    *,
    signed: bool = False,
    outline: np.ndarray | None = None,
    min_size: int = 320,
    alpha: float | None = None,
    cmap: str | Colormap | None = None,
) -> np.ndarray:
    """``uint8[h, w, 3]``: :func:`overlay` (or :func:`overlay_signed` with ``signed``) with the
    ``outline`` mask's boundary drawn, enlarged by an integer factor (nearest neighbour) until
    the longer side is at least ``min_size`` pixels, so small images and outlines stay sharp
    in HTML pages."""
    image = _check_image(image)
    if signed:
        rgb = overlay_signed(image, values, **({} if alpha is None else {"alpha": alpha}))
    else:
        rgb = overlay(image, values, alpha, cmap)
    f = max(1, math.ceil(min_size / max(image.shape[:2])))
    if f > 1:
        rgb = np.repeat(np.repeat(rgb, f, axis=0), f, axis=1)
    if outline is not None:
        mask = np.asarray(outline, dtype=bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"outline has shape {mask.shape}; expected the image's {image.shape[:2]}")
        if f > 1:
            mask = np.repeat(np.repeat(mask, f, axis=0), f, axis=1)
        rgb = _draw_outline(rgb, mask, width=max(2, f // 3))
    return rgb


def show_figure(fig: Figure) -> None:
    """Show a figure: inline in a Jupyter kernel (``IPython.display``), else through pyplot
    (a window with an interactive backend; then the figure is released again unless pyplot is
    in interactive mode). The one place the package hands a figure to pyplot, on request."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(fig)
        return
    import matplotlib
    import matplotlib.pyplot as plt

    plt.figure(fig)  # registers this Figure with pyplot (it was built without it)
    plt.show()
    if not matplotlib.is_interactive():
        plt.close(fig)


def html_card(
    title: str, rows: Sequence[tuple[str, Any]], *, figure: Figure | np.ndarray | None = None, extra: str = ""
) -> str:
    """A small HTML block for Jupyter's ``_repr_html_``: a figure (inline PNG ``data:`` URI), a
    title and a two-column table of ``rows``; every text is HTML-escaped (``extra`` is inserted
    as given: pass escaped HTML only)."""
    import base64
    import html

    img = ""
    if figure is not None:
        png = png_bytes(figure, dpi=90)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        img = f'<img src="{uri}" alt="{html.escape(title)}" style="max-width:440px;height:auto;flex:none">'
    cells = "".join(
        f'<tr><th style="text-align:left;padding:1px 10px 1px 0;font-weight:600;color:#5f6368">{html.escape(str(k))}'
        f'</th><td style="text-align:left;padding:1px 0">{html.escape(str(v))}</td></tr>'
        for k, v in rows
    )
    return (
        '<div class="mllm-attr-result" style="display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start;'
        'font:13px/1.4 system-ui,sans-serif">'
        f'{img}<div><div style="font-weight:600;margin-bottom:4px">{html.escape(title)}</div>'
        f"<table>{cells}</table>{extra}</div></div>"
    )


def figure_to_rgb(fig: Figure, dpi: float = 150) -> np.ndarray:
    """``uint8[H, W, 3]``: the figure rendered with Agg at ``dpi`` (white background, no alpha)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    old_dpi = fig.get_dpi()
    fig.set_dpi(dpi)
    try:
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba(), dtype=np.float64)
    finally:
        fig.set_dpi(old_dpi)
    a = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * a + 255.0 * (1 - a)  # composite over white
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def png_bytes(array_or_figure: np.ndarray | Figure, dpi: float = 150) -> bytes:
    """PNG bytes (RGB) of a ``uint8[H, W, 3]`` array or of a figure rendered at ``dpi``."""
    from PIL import Image

    arr = array_or_figure if isinstance(array_or_figure, np.ndarray) else figure_to_rgb(array_or_figure, dpi)
    buf = io.BytesIO()
    Image.fromarray(_check_image(arr), mode="RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float = 200) -> Path:
    """Write a figure: ``.png`` as an RGB PNG at ``dpi``; ``.pdf``/``.svg``/``.eps`` as vectors.

    Raises:
        ValueError: an extension other than png, pdf, svg or eps.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".png":
        path.write_bytes(png_bytes(fig, dpi))
    elif ext in (".pdf", ".svg", ".eps"):
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    else:
        raise ValueError(f"unsupported figure extension {ext!r} for {str(path)!r}; expected .png, .pdf, .svg or .eps")
    return path


# -- per-token quantities ----------------------------------------------------------------------


def token_region_gains(expl: ExplanationLike) -> np.ndarray:
    """``float64[K, n]``: marginal gain of each region (by region id) for each explained token.

    See the module docstring for the definition. Row ``k`` sums to
    ``(λ1 + λ2) · (p_full[k] − p_blank[k])`` and the row mean equals the joint objective's
    marginal gain of each region.
    """
    lam1 = float(expl.settings.get("lambda1", 1.0))
    lam2 = float(expl.settings.get("lambda2", 1.0))
    f = lam1 * expl.ins + lam2 * (1.0 - expl.dele)  # [n, K] per-token objective of each prefix
    f0 = lam1 * expl.p_blank + lam2 * (1.0 - expl.p_full)  # [K]
    steps = np.diff(np.vstack([f0[None, :], f]), axis=0)  # [n, K], step t adds ordering[t]
    out = np.empty((len(expl.positions), expl.n_regions))
    out[:, np.asarray(expl.ordering, dtype=np.int64)] = steps.T
    return out


def token_gain_map(expl: ExplanationLike, token: int, *, normalize: bool = True) -> np.ndarray:
    """``float32[H, W]``: explained token ``token``'s region gains painted on the label map.

    With ``normalize`` the map is divided by its largest absolute value (so it lies in
    ``[-1, 1]``; all zeros if the token never changed); otherwise raw gains.
    """
    k = len(expl.positions)
    if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
        raise TypeError(f"token must be an int index into the {k} explained tokens; got {token!r}")
    if not -k <= token < k:
        raise IndexError(f"token {token} out of range for {k} explained tokens")
    gains = token_region_gains(expl)[token]
    if normalize:
        peak = float(np.abs(gains).max())
        gains = gains / peak if peak > 1e-12 else np.zeros_like(gains)
    return gains[expl.labels].astype(np.float32)


def _token_label(tok: str) -> str:
    s = tok.strip()
    return s if s else repr(tok)


def short_text(text: str, n: int = 60) -> str:
    """``text`` on one line (runs of white space become one space), cut to ``n`` characters with "…"."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


_short = short_text


# -- explanation plots -------------------------------------------------------------------------


def _auc_pair(expl: ExplanationLike, token: int | None = None) -> tuple[str, float, str, float]:
    """``(insertion name, AUC, deletion name, AUC)``: the result's own AUC names (a prompt-word
    attribution's AUCs run over the fraction of features, not of the image area)."""
    names = getattr(expl, "auc_names", ("insertion_auc", "deletion_auc"))
    if hasattr(expl, "auc"):
        ins, dele = expl.auc("insertion", token), expl.auc("deletion", token)
    else:
        ins, dele = expl.insertion_auc(token), expl.deletion_auc(token)
    pretty = [n.replace("_auc", " AUC").replace("_", " ") for n in names]
    return pretty[0], float(ins), pretty[1], float(dele)


def _map_of(expl: ExplanationLike, rule: str, token: int | None) -> np.ndarray:
    if getattr(expl, "saliency_map", None) is not None:
        return normalize_map(np.asarray(expl.saliency(), dtype=np.float64))
    return np.asarray(expl.saliency(rule=rule, token=token), dtype=np.float64)


def heatmap_title(expl: ExplanationLike, token: int | None = None, *, width: int = 52) -> str:
    """The title of a heatmap: the explained words, the question and answer, the AUCs."""
    gen = expl.generation
    what = expl.target_text if token is None else _token_label(expl.target_tokens[token])
    answer = "counterfactual A" if gen.counterfactual else "A"
    ins_name, ins, del_name, dele = _auc_pair(expl, token)
    qa = f"Q: {gen.prompt}  {answer}: {gen.text!r}"
    if len(qa) > width:  # one line each, so that no line runs past a small figure's edge
        qa = f"Q: {_short(gen.prompt, width - 3)}\n{answer}: {_short(gen.text, width - len(answer) - 4)!r}"
    return f"explained: {_short(what, width - 12)!r}\n{qa}\n{ins_name} {ins:.3f} ↑ · {del_name} {dele:.3f} ↓"


def _bar(
    fig: Figure,
    ax: Any,
    label: str,
    *,
    signed: bool = False,
    cmap: str | Colormap | None = None,
    alpha: float | None = None,
    **kw: Any,
) -> Any:
    """A colour bar of the colours the picture shows (:func:`display_cmap`), labelled."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(-1.0, 1.0) if signed else Normalize(0.0, 1.0)
    opts = {"fraction": 0.046, "pad": 0.03, "shrink": 0.85, **kw}
    shown = display_cmap(cmap, alpha, signed=signed)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=shown), ax=ax, **opts)
    bar.set_label(label, fontsize=7.5)
    bar.ax.tick_params(labelsize=7)
    bar.outline.set_linewidth(0.5)
    return bar


def plot_heatmap(
    expl: ExplanationLike,
    ax: Axes | None = None,
    *,
    alpha: float | None = None,
    colorbar: bool = True,
    token: int | None = None,
    rule: str = "evidence",
    outline: bool = True,
    cmap: str | Colormap | None = None,
    title: str | None = None,
) -> Axes:
    """Draw the map of an explanation over the greyed image; returns the axes.

    The look is described in the module docstring: the greyed image, the map in
    :data:`HEATMAP_CMAP` with an opacity that grows with the value, the :func:`top_regions`
    outlined (``outline=False`` to leave them out; the caption under the image says how many
    and how much of the image), a title with the explained words, the answer and the AUCs
    (``title=`` to replace it), and a colour bar whose label says what the value means
    (:func:`map_label`; ``colorbar=False`` to leave it out).

    Args:
        expl: an :class:`~mllm_attr.Explanation` (or a prompt-word attribution: its regions).
        token: index into the explained tokens: that token's own map (default: the joint map).
        rule: ``"evidence"`` (default) or ``"reference"``, see ``Explanation.saliency``.
        alpha: opacity at value 1 (default :data:`HEATMAP_ALPHA`).
    """
    values = _map_of(expl, rule, token)
    with _style():
        if ax is None:
            ax = _new_figure(4.4, 4.6).add_subplot()
        ax.imshow(overlay(expl.image, values, alpha, cmap), interpolation="nearest")
        if outline:
            regions = top_regions(expl, token)
            _outline(ax, np.isin(np.asarray(expl.labels), regions))
            caption = _outline_text(expl, regions, token)
            words = getattr(expl, "word_ranks", None)
            if callable(words):
                ranked = sorted(words(), key=lambda wr: wr[1])[:3]
                caption += "\ntop prompt words: " + ", ".join(f"{w!r} (rank {r})" for w, r in ranked)
            ax.text(0.5, -0.02, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7, color="#444444")
        if colorbar:
            _bar(ax.figure, ax, map_label(expl, rule=rule, token=token), cmap=cmap, alpha=alpha)
        ax.set_title(heatmap_title(expl, token) if title is None else title, fontsize=8.5)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    return ax


def save_heatmap(expl: ExplanationLike, path: str | os.PathLike, **kw: Any) -> Path:
    """Write :func:`plot_heatmap` (titled with the explained words; ``kw`` are its options) as an RGB PNG."""
    with _style():
        fig = _new_figure(4.4, 4.6)
        ax = fig.add_subplot()
        plot_heatmap(expl, ax, **kw)
    return save_figure(fig, path, dpi=150)


def plot_curves(
    expl: ExplanationLike,
    ax: Axes | None = None,
    token: int | None = None,
    *,
    legend: bool = True,
    compact: bool = False,
) -> Axes:
    """Insertion (solid, shaded) and deletion (dashed) curves with their AUCs; returns the axes.

    Args:
        token: index into the explained tokens (``None``: the token mean, as the metrics use).
        legend: draw the line legend (with the AUCs).
        compact: for small panels: AUCs in the title, short axis labels, no legend.
    """
    xi, yi = expl.insertion_curve(token)
    xd, yd = expl.deletion_curve(token)
    ins_auc, del_auc = expl.insertion_auc(token), expl.deletion_auc(token)
    with _style():
        if ax is None:
            ax = _new_figure(3.6, 2.8).add_subplot()
        ax.fill_between(xi, yi, color=INSERTION_COLOR, alpha=0.12, linewidth=0)
        ax.plot(xi, yi, color=INSERTION_COLOR, label=f"insertion (AUC {ins_auc:.3f})")
        ax.plot(xd, yd, color=DELETION_COLOR, linestyle="--", label=f"deletion (AUC {del_auc:.3f})")
        ax.set_xlim(0, 1)
        top = max(1.0, float(np.nanmax(np.concatenate([yi, yd]))) * 1.05)
        ax.set_ylim(0, top)
        ax.grid(True, linewidth=0.4, alpha=0.4)
        name = "mean over explained tokens" if token is None else repr(_token_label(expl.target_tokens[token]))
        if compact:
            ax.set_xticks([0, 0.5, 1])
            ax.set_xticklabels(["0", "0.5", "1"])  # "1.0" and the next panel's "0.0" would touch
            ax.set_xlabel("image fraction")
            ax.set_title(f"ins {ins_auc:.3f} · del {del_auc:.3f}", fontsize=8)
        else:
            ax.set_xlabel("fraction of image inserted / deleted")
            ax.set_ylabel("probability")
            ax.set_title(name)
            if legend:
                ax.legend(
                    loc="lower right" if yi[len(yi) // 2] < 0.5 else "center right",
                    frameon=True,
                    framealpha=0.85,
                    edgecolor="none",
                )
    return ax


def plot_token_heatmaps(
    expl: ExplanationLike,
    *,
    tokens: Sequence[int] | None = None,
    curves: bool = True,
    max_tokens: int = 6,
    alpha: float | None = None,
    outline: bool = True,
) -> Figure:
    """A figure: the joint map, then one per explained token (its signed gains), curves below.

    Column 0 is the joint map (``expl.saliency()``, drawn as :func:`plot_heatmap` draws it) with
    the token-mean curves; then, per explained token, its gain map (:func:`token_gain_map`,
    red: the region helped the token, blue: it hurt) over the greyed image, with its own
    insertion/deletion curves (solid: insertion, dashed: deletion; AUCs in the titles). With
    ``outline`` each panel outlines its :func:`top_regions` (for a token: along its own
    insertion curve).

    Args:
        tokens: indices into the explained tokens to draw (default: all of them, or, when
            there are more than ``max_tokens``, the ``max_tokens`` with the largest image
            effect ``p_full − p_blank``, in answer order; the title says how many were left out).
        alpha: opacity of the joint map at value 1 (default :data:`HEATMAP_ALPHA`).
    """
    from matplotlib.lines import Line2D

    k = len(expl.positions)
    if tokens is not None:
        shown = [int(t) % k if -k <= int(t) < k else int(t) for t in tokens]
        bad = [t for t in shown if not 0 <= t < k]
        if bad:
            raise IndexError(f"token(s) {bad} out of range for {k} explained tokens")
    elif k <= max_tokens:
        shown = list(range(k))
    else:
        effect = expl.p_full - expl.p_blank
        shown = sorted(np.argsort(-effect, kind="stable")[:max_tokens].tolist())
    ncols = 1 + len(shown)
    nrows = 2 if curves else 1
    labels = np.asarray(expl.labels)
    with _style():
        fig = _new_figure(2.05 * ncols + 1.5, 2.3 * nrows + 0.75)
        fig.set_layout_engine("constrained", w_pad=0.02, h_pad=0.04, wspace=0.03, hspace=0.05)
        axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
        axes[0, 0].imshow(overlay(expl.image, _map_of(expl, "evidence", None), alpha), interpolation="nearest")
        axes[0, 0].set_title(f"joint: {_short(expl.target_text, 22)!r}")
        if outline:
            _outline(axes[0, 0], np.isin(labels, top_regions(expl)), width=1.2)
        for col, t in enumerate(shown, start=1):
            pos = expl.positions[t]
            axes[0, col].imshow(overlay_signed(expl.image, token_gain_map(expl, t)), interpolation="nearest")
            axes[0, col].set_title(f"{_token_label(expl.generation.tokens[pos])!r} (token {pos})")
            if outline:
                _outline(axes[0, col], np.isin(labels, top_regions(expl, t)), width=1.2)
        for a in axes[0]:
            a.axis("off")
        if curves:
            for col in range(ncols):
                plot_curves(expl, axes[1, col], None if col == 0 else shown[col - 1], compact=True)
                if col:
                    axes[1, col].tick_params(labelleft=False)
            axes[1, 0].set_ylabel("probability")
            handles = [
                Line2D([], [], color=INSERTION_COLOR, label="insertion"),
                Line2D([], [], color=DELETION_COLOR, linestyle="--", label="deletion"),
            ]
            if outline:
                handles.append(Line2D([], [], color=OUTLINE_COLOR, label="outline: top regions"))
            fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
        extra = f"  ({k - len(shown)} more explained tokens not shown)" if len(shown) < k else ""
        kind = "counterfactual answer" if expl.generation.counterfactual else "answer"
        fig.suptitle(
            f"explained: {_short(expl.target_text, 40)!r}   Q: {_short(expl.generation.prompt, 40)}   "
            f"{kind}: {_short(expl.generation.text, 60)!r}{extra}",
            fontsize=9,
        )
        _bar(fig, axes[0, 0], map_label(expl), alpha=alpha, location="left", fraction=0.05, pad=0.04, aspect=14)
        if shown:
            _bar(
                fig,
                list(axes[0, 1:]),
                "token's gain ÷ its max |gain|\n(red: helped, blue: hurt)",
                signed=True,
                fraction=0.04,
                pad=0.02,
                aspect=14,
                shrink=0.9,
            )
    return fig


# -- modality-labelled text --------------------------------------------------------------------

#: Keyword -> colour for modality labels (matched case-insensitively as substrings).
MODALITY_COLORS: dict[str, str] = {
    "percep": "#D55E00",
    "visual": "#D55E00",
    "vision": "#D55E00",
    "image": "#D55E00",
    "prior": "#0072B2",
    "language": "#0072B2",
    "text": "#0072B2",
    "mix": "#CC79A7",
    "both": "#CC79A7",
    "special": "#BBBBBB",
    "none": "#BBBBBB",
    "unexplained": "#BBBBBB",
}
_EXTRA_COLORS = ("#009E73", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _as_item(item: Any) -> tuple[str, str, float | None]:
    if isinstance(item, (tuple, list)):
        if len(item) == 2:
            token, label = item
            score = None
        elif len(item) == 3:
            token, label, score = item
        else:
            raise ValueError(f"expected (token, label) or (token, label, score); got {len(item)} entries: {item!r}")
    elif hasattr(item, "label") and (hasattr(item, "token") or hasattr(item, "text")):
        # e.g. mllm_attr.analysis.modality.TokenModality (.text, .label, .image_share)
        token = item.token if hasattr(item, "token") else item.text
        label = item.label
        score = getattr(item, "score", getattr(item, "image_share", None))
    else:
        raise TypeError(
            f"expected a (token, label, score) tuple or an object with .token (or .text) and .label; "
            f"got {type(item).__name__}"
        )
    if not isinstance(token, str):
        raise TypeError(f"token must be a str; got {type(token).__name__}")
    score_f = None if score is None else float(score)
    return token, str(label), (None if score_f is None or not math.isfinite(score_f) else score_f)


def modality_palette(labels: Iterable[str], palette: Mapping[str, str] | None = None) -> dict[str, str]:
    """Label -> colour: ``palette`` first, then :data:`MODALITY_COLORS` keywords, then spare colours."""
    out: dict[str, str] = {}
    spare = iter(_EXTRA_COLORS * 4)
    for label in labels:
        if label in out:
            continue
        if palette and label in palette:
            out[label] = palette[label]
            continue
        low = label.lower()
        hit = next((c for key, c in MODALITY_COLORS.items() if key in low), None)
        out[label] = hit if hit is not None else next(spare, "#777777")
    return out


def render_modality_text(
    items: Sequence[Any],
    ax: Axes | None = None,
    *,
    palette: Mapping[str, str] | None = None,
    show_scores: bool = True,
    width: float = 7.0,
    fontsize: float = 11.0,
    title: str | None = None,
) -> Axes:
    """Generated text with each token boxed in the colour of its modality label.

    Args:
        items: ``(token, label, score)`` tuples (or ``(token, label)``, or objects with
            ``.token`` or ``.text``, ``.label`` and optional ``.score`` or ``.image_share``,
            such as the rows of a modality report), in generation order. Labels are
            free strings (e.g. ``"perception"``, ``"prior"``, ``"mixed"``); colours come from
            :func:`modality_palette`. ``score`` (e.g. the image share of the token's
            probability, ``[0, 1]``) sets the box opacity and is printed under the token.
        ax: axes to draw on (wrapped to its width); ``None``: a new figure ``width`` inches wide
            whose height fits the text.
        palette: label -> colour overrides.
    Returns:
        The axes (``ax.figure`` is the figure).
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import Patch

    parsed = [_as_item(it) for it in items]
    if not parsed:
        raise ValueError("render_modality_text needs at least one (token, label, score) item; got none")
    colours = modality_palette([label for _, label, _ in parsed], palette)

    # Lay the tokens out in inches with real text metrics, then draw.
    scratch = _new_figure(1, 1, layout=None)
    renderer = scratch.canvas.get_renderer()
    prop = FontProperties(size=fontsize)
    px_per_in = scratch.dpi

    def text_width(s: str) -> float:
        w, _, _ = renderer.get_text_width_height_descent(s, prop, ismath=False)
        return w / px_per_in

    pad = fontsize / 72 * 0.35
    line_h = fontsize / 72 * (2.6 if show_scores else 1.9)
    space = fontsize / 72 * 0.25
    if ax is not None:
        bbox = ax.get_position()
        fw, fh = ax.figure.get_size_inches()
        width = bbox.width * fw
    margin = 0.1
    x, line = margin, 0
    placed: list[tuple[float, int, str, str, float | None]] = []
    for i, (token, label, score) in enumerate(parsed):
        shown = token.strip() or ("⏎" if "\n" in token else "␣")
        w = text_width(shown) + 2 * pad
        gap = space if (i == 0 or token[:1].isspace()) else space * 0.3
        if x + gap + w > width - margin and x > margin:
            x, line = margin, line + 1
            gap = 0.0
        x += gap if x > margin else 0.0
        placed.append((x, line, shown, label, score))
        x += w
    n_lines = line + 1
    legend_h = 0.35
    title_h = 0.35 if title else 0.0
    text_bottom = title_h + n_lines * line_h + 0.15
    height = text_bottom + legend_h
    with _style():
        if ax is None:
            fig = _new_figure(width, height, layout=None)
            ax = fig.add_axes((0, 0, 1, 1))
        else:
            fig = ax.figure
            fh = fig.get_size_inches()[1] * ax.get_position().height
            if fh < height:
                logger.warning("render_modality_text: the axes are %.2f in tall; the text needs %.2f in", fh, height)
            height = fh
        ax.set_axis_off()
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)  # inches from the top-left corner
        if title:
            ax.text(margin, 0.08, title, fontsize=fontsize, weight="bold", va="top", ha="left")
        for x0, ln, shown, label, score in placed:
            y = title_h + ln * line_h + 0.1
            opacity = 0.85 if score is None else 0.2 + 0.7 * float(np.clip(score, 0.0, 1.0))
            ax.text(
                x0 + pad,
                y + pad,
                shown,
                va="top",
                ha="left",
                fontproperties=prop,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": colours[label], "alpha": opacity, "edgecolor": "none"},
            )
            if show_scores and score is not None:
                ax.text(
                    x0 + pad,
                    y + pad + fontsize / 72 * 1.45,
                    f"{score:.2f}",
                    fontsize=fontsize * 0.6,
                    va="top",
                    ha="left",
                    color="#444444",
                )
        handles = [Patch(facecolor=c, edgecolor="none", label=lab) for lab, c in colours.items()]
        ax.legend(
            handles=handles,
            loc="upper left",
            ncol=min(len(handles), 6),
            frameon=False,
            bbox_to_anchor=(0.0, 1.0 - text_bottom / height),
            handlelength=1.2,
            fontsize=fontsize * 0.75,
            borderaxespad=0.2,
        )
    return ax


# -- hallucination and method comparison -------------------------------------------------------


def _half_max(values: np.ndarray) -> np.ndarray:
    """``bool[H, W]``: where a map in ``[0, 1]`` is at least half its maximum (empty for a flat map)."""
    v = np.asarray(values, dtype=np.float64)
    top = float(v.max()) if v.size else 0.0
    if not top > float(v.min()) + 1e-12:
        return np.zeros(v.shape, dtype=bool)
    return v >= 0.5 * top


def plot_hallucination_panel(
    image: np.ndarray,
    wrong_answer: str,
    evidence_map: np.ndarray,
    corrected_answer: str,
    removal_mask: np.ndarray,
    *,
    question: str | None = None,
    correct_token: str | None = None,
    removed_fraction: float | None = None,
    title: str | None = None,
    alpha: float | None = None,
    evidence_outline: np.ndarray | None = None,
    colorbar: bool = True,
    corrected: bool = True,
) -> Figure:
    """Three panels: the wrong answer, the evidence for the correct one, the minimal removal.

    Args:
        image: ``uint8[H, W, 3]`` the input.
        wrong_answer: what the model said.
        evidence_map: ``float[H, W]`` (min-max normalised for display): where the correct
            answer's evidence is (e.g. ``expl.saliency()`` of an ``Answer("no")`` explanation),
            drawn as :func:`plot_heatmap` draws a map (greyed image, opacity growing with the value).
        corrected_answer: what the model said after the removal.
        removal_mask: ``bool[H, W]``, True where regions were removed (the smallest removal that
            made the answer correct); drawn black, outlined.
        question: the prompt, shown over the first panel.
        correct_token: the explained correct answer token, for the middle title.
        removed_fraction: the removed area (default: ``removal_mask.mean()``), e.g. the AMCR.
        evidence_outline: ``bool[H, W]`` outlined on the evidence map (e.g.
            :func:`top_region_mask` of the explanation); default: where the map is at least
            half its maximum.
        corrected: whether the removal made the answer correct (False: the last panel says so).
    """
    image = _check_image(image)
    ev = np.asarray(evidence_map, dtype=np.float64)
    mask = np.asarray(removal_mask)
    if ev.ndim != 2:
        raise ValueError(f"evidence_map must be float[H, W]; got shape {ev.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"removal_mask has shape {mask.shape}; expected the image's {image.shape[:2]}")
    mask = mask.astype(bool)
    ev = normalize_map(resize_map(ev, image.shape[:2]))
    if evidence_outline is None:
        ring = _half_max(ev)
    else:
        ring = np.asarray(evidence_outline, dtype=bool)
        if ring.shape != image.shape[:2]:
            raise ValueError(f"evidence_outline has shape {ring.shape}; expected the image's {image.shape[:2]}")
    frac = float(mask.mean()) if removed_fraction is None else float(removed_fraction)
    removed = image.copy()
    removed[mask] = 0
    with _style():
        fig = _new_figure(8.6, 4.1)
        axes = fig.subplots(1, 3)
        axes[0].imshow(image, interpolation="nearest")
        head = f"Q: {_short(question, 44)}\n" if question else ""
        axes[0].set_title(f"{head}model: {_short(wrong_answer, 40)!r}  ✗", color="#B2182B")
        axes[1].imshow(overlay(image, ev, alpha), interpolation="nearest")
        _outline(axes[1], ring, width=1.3)
        what = f"{correct_token!r}" if correct_token else "the correct answer"
        ringed = "top regions" if evidence_outline is not None else "≥ half max"
        axes[1].set_title(f"evidence for {what}\n(outlined: {ringed})")
        axes[2].imshow(removed, interpolation="nearest")
        _outline(axes[2], mask, color="#F0E442", width=1.3)
        after = _short(corrected_answer, 40)
        if corrected:
            axes[2].set_title(f"remove {frac:.0%} (minimal)\nmodel: {after!r}  ✓", color="#1A7837")
        else:
            axes[2].set_title(f"no removal corrected it\nmodel: {after!r}", color="#B2182B")
        for a in axes:
            a.axis("off")
        if colorbar:  # an inset under the middle panel: a colour bar axes there would upset the layout
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            cax = axes[1].inset_axes((0.1, -0.085, 0.8, 0.045))
            shown = display_cmap(None, alpha)
            bar = fig.colorbar(ScalarMappable(Normalize(0, 1), shown), cax=cax, orientation="horizontal")
            bar.set_label("evidence (1 = strongest)", fontsize=7.5)
            bar.ax.tick_params(labelsize=7)
            bar.outline.set_linewidth(0.5)
        if title:
            fig.suptitle(title, fontsize=10)
    return fig


def _method_entry(name: str, value: Any, shape: tuple[int, int]) -> tuple[np.ndarray, Any]:
    """``(map in [0, 1] at the image size, the result or None)`` for one entry of ``maps``."""
    if hasattr(value, "saliency") and hasattr(value, "ordering"):  # an Explanation (e.g. from score_map)
        m = np.asarray(value.saliency(), dtype=np.float64)
        return normalize_map(resize_map(m, shape)), value
    m = np.asarray(value, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"map of {name!r} must be float[H, W] or an Explanation; got shape {m.shape}")
    return normalize_map(resize_map(m, shape)), None


def plot_methods(
    image: np.ndarray,
    maps: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    *,
    ncols: int | None = None,
    alpha: float | None = None,
    title: str | None = None,
    outline: bool = True,
    outlines: Mapping[str, np.ndarray] | None = None,
    colorbar: bool = True,
) -> Figure:
    """Side-by-side maps of several methods over one image (the input first).

    Every map is drawn as :func:`plot_heatmap` draws one (greyed image, :data:`HEATMAP_CMAP`,
    opacity growing with the value) on the same ``[0, 1]`` scale, with its top area outlined.

    Args:
        image: ``uint8[H, W, 3]``.
        maps: method name -> ``float[h, w]`` map (any scale; min-max normalised for display,
            resized bilinearly to the image when its size differs), or an
            :class:`~mllm_attr.Explanation` (e.g. :func:`mllm_attr.protocol.score_map`'s): its
            map, its :func:`top_regions` outlined, and its AUCs when ``metrics`` has none for it.
        metrics: method name -> ``{metric name: value}``, printed under the method's title
            (e.g. ``{"ins": 0.61, "del": 0.32}``).
        ncols: panels per row (default: all in one row, up to 5).
        outline: outline each method's top area: an explanation's :func:`top_regions`, a bare
            map's pixels at or above half its maximum.
        outlines: method name -> ``bool[H, W]`` to outline instead.
    """
    image = _check_image(image)
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError("maps must be a non-empty mapping of method name -> float[H, W] map (or Explanation)")
    unknown = (set(metrics or {}) | set(outlines or {})) - set(maps)
    if unknown:
        raise ValueError(
            f"metrics or outlines for unknown method(s) {sorted(map(str, unknown))}; maps has {list(maps)}"
        )
    entries = {name: _method_entry(str(name), value, image.shape[:2]) for name, value in maps.items()}
    n = len(maps) + 1
    ncols = ncols or min(n, 5)
    nrows = math.ceil(n / ncols)
    kinds = set()
    with _style():
        fig = _new_figure(2.3 * ncols + (0.9 if colorbar else 0), 2.75 * nrows + (0.3 if title else 0) + 0.25)
        axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
        axes[0].imshow(image, interpolation="nearest")
        axes[0].set_title("input")
        for a, (name, (m, result)) in zip(axes[1:], entries.items()):
            a.imshow(overlay(image, m, alpha), interpolation="nearest")
            if outlines and name in outlines:
                ring = np.asarray(outlines[name], dtype=bool)
                if ring.shape != image.shape[:2]:
                    raise ValueError(f"outline of {name!r} has shape {ring.shape}; expected {image.shape[:2]}")
                kinds.add("given")
            elif result is not None:
                ring = top_region_mask(result)
                kinds.add("top regions")
            else:
                ring = _half_max(m)
                kinds.add("≥ half max")
            if outline or (outlines and name in outlines):
                _outline(a, ring, width=1.2)
            label = str(name)
            values = (metrics or {}).get(name)
            if values is None and result is not None:
                _, ins, _, dele = _auc_pair(result)
                values = {"ins": ins, "del": dele}
            if values:
                label += "\n" + " · ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
                )
            a.set_title(label)
        for a in axes:
            a.axis("off")
        if colorbar:
            label = "map value\n(each min-max normalised)"
            _bar(fig, list(axes), label, alpha=alpha, fraction=0.025, pad=0.02, aspect=16)
        if outline and kinds:
            what = {
                "top regions": "each method's top regions, until its insertion score reaches 90 % of its best "
                "(at most 30 % of the image)",
                "≥ half max": "where the map is at least half its maximum",
            }
            fig.text(
                0.01,
                0.005,
                "outlined: " + "; ".join(what.get(k, "as given") for k in sorted(kinds)),
                fontsize=7,
                color="#444444",
                ha="left",
                va="bottom",
            )
        if title:
            fig.suptitle(title, fontsize=10)
    return fig


def _as_curve(value: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, tuple) and len(value) == 2:
        x, y = (np.asarray(v, dtype=np.float64) for v in value)
    else:
        y = np.asarray(value, dtype=np.float64)
        x = np.linspace(0.0, 1.0, len(y)) if y.ndim == 1 else np.empty(0)
    if x.ndim != 1 or y.ndim != 1 or len(x) != len(y) or len(y) < 2:
        raise ValueError(
            f"{what} must be (x, y) of equal length >= 2 or a 1-D y array; got shapes {x.shape}, {y.shape}"
        )
    return x, y


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    from .metrics import auc

    return float(auc(x, y))


def plot_mean_curves(curves: Mapping[str, Mapping[str, Any]], *, title: str | None = None) -> Figure:
    """Insertion and deletion curves of several methods (e.g. benchmark means), two panels.

    Args:
        curves: method -> ``{"insertion": (x, y) or y, "deletion": (x, y) or y}`` (``y`` alone
            is put on ``x = linspace(0, 1)``); either key may be missing.
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping: method -> {'insertion': ..., 'deletion': ...}")
    with _style():
        fig = _new_figure(7.2, 3.0)
        axes = fig.subplots(1, 2)
        for i, (name, c) in enumerate(curves.items()):
            if not isinstance(c, Mapping):
                raise TypeError(
                    f"curves[{name!r}] must be a mapping with 'insertion'/'deletion'; got {type(c).__name__}"
                )
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            for a, key in zip(axes, ("insertion", "deletion")):
                if key in c:
                    x, y = _as_curve(c[key], f"curves[{name!r}][{key!r}]")
                    a.plot(x, y, color=colour, label=f"{name} ({_auc(x, y):.3f})")
        for a, key in zip(axes, ("insertion ↑", "deletion ↓")):
            a.set_title(f"{key} (AUC)")
            a.set_xlabel("fraction of image inserted" if key.startswith("ins") else "fraction of image deleted")
            a.set_xlim(0, 1)
            a.set_ylim(bottom=0)
            a.grid(True, linewidth=0.4, alpha=0.4)
            if a.get_legend_handles_labels()[0]:
                a.legend(frameon=False)
        axes[0].set_ylabel("probability")
        if title:
            fig.suptitle(title, fontsize=10)
    return fig


__all__ = [
    "GAIN_CMAP",
    "GRAY_LEVELS",
    "HEATMAP_ALPHA",
    "HEATMAP_CMAP",
    "HEATMAP_RANGE",
    "MODALITY_COLORS",
    "OUTLINE_AREA",
    "OUTLINE_COLOR",
    "OUTLINE_FRACTION",
    "display_cmap",
    "figure_to_rgb",
    "get_cmap",
    "gray_image",
    "heatmap_title",
    "html_card",
    "map_image",
    "map_label",
    "modality_palette",
    "normalize_map",
    "overlay",
    "overlay_signed",
    "plot_curves",
    "plot_hallucination_panel",
    "plot_heatmap",
    "plot_mean_curves",
    "plot_methods",
    "plot_multi_image",
    "plot_token_heatmaps",
    "plot_video",
    "png_bytes",
    "render_modality_text",
    "save_figure",
    "save_heatmap",
    "short_text",
    "show_figure",
    "token_gain_map",
    "token_region_gains",
    "top_region_mask",
    "top_regions",
]


def plot_multi_image(
    attr: ExplanationLike,
    *,
    token: int | None = None,
    rule: str = "evidence",
    outline: bool = True,
    alpha: float | None = None,
    cmap: str | Colormap | None = None,
    colorbar: bool = True,
) -> Figure:
    """One map per image of a several-images attribution
    (:class:`~mllm_attr.analysis.multi_image.MultiImageAttribution`), side by side, with the look
    of :func:`plot_heatmap`: each image greyed under :data:`HEATMAP_CMAP`, all maps on ONE scale
    (a region's gain relative to the top region of all images), the :func:`top_regions` of the
    joint ordering outlined in whichever image they lie, each image titled with its share of the
    attribution (``image_shares``: score share and top-k share), the explained words, the
    question, the answer and the AUCs above, and one colour bar (:func:`map_label`).

    Returns:
        the figure.
    """
    images = attr.images
    maps = attr.saliencies(rule=rule, token=token)
    shares = attr.image_shares(rule=rule, token=token)
    mask = np.isin(np.asarray(attr.labels), top_regions(attr, token)) if outline else None
    masks = (
        [
            mask.reshape(-1)[s : s + h * w].reshape(h, w)
            for s, (h, w) in zip(_starts(attr.image_shapes), attr.image_shapes)
        ]
        if mask is not None
        else [None] * len(images)
    )
    n = len(images)
    with _style():
        fig = _new_figure(min(3.2 * n + 0.8, 16.0), 4.2)
        axes = fig.subplots(1, n, squeeze=False)[0]
        for i, (ax, im, values, m, share) in enumerate(zip(axes, images, maps, masks, shares)):
            ax.imshow(overlay(im, values, alpha, cmap), interpolation="nearest")
            if m is not None:
                _outline(ax, m)
            ax.set_title(
                f"image {i + 1}: {share['score_share']:.0%} of the map\n"
                f"top {share['top_k']}: {share['top_k_share']:.0%} · best rank {share['best_rank']}",
                fontsize=8,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
        if colorbar:
            _bar(fig, list(axes), map_label(attr, rule=rule, token=token), cmap=cmap, alpha=alpha)
        fig.suptitle(heatmap_title(attr, token, width=max(52, 30 * n)), fontsize=8.5)
    return fig


def plot_video(
    attr: ExplanationLike,
    *,
    token: int | None = None,
    rule: str = "evidence",
    outline: bool = True,
    alpha: float | None = None,
    cmap: str | Colormap | None = None,
    colorbar: bool = True,
    max_columns: int = 8,
) -> Figure:
    """The frame strip of a video attribution (:class:`~mllm_attr.analysis.video.VideoAttribution`):
    each frame's map on ONE scale (the look of :func:`plot_heatmap`; the top regions of the joint
    ordering outlined in whichever frame they lie), titled with its time and share of the map,
    ``max_columns`` frames per row, and below them one bar per frame: its share of the map
    (``score_share``) against its share of the area (the dashed line: no preference for any frame).

    Returns:
        the figure.
    """
    frames = attr.frames
    maps = attr.saliencies(rule=rule, token=token)
    shares = attr.frame_shares(rule=rule, token=token)
    top = np.isin(np.asarray(attr.labels), top_regions(attr, token)) if outline else None
    shapes = attr.image_shapes
    masks = [
        top.reshape(-1)[s : s + h * w].reshape(h, w) if top is not None else None
        for s, (h, w) in zip(_starts(shapes), shapes)
    ]
    n = len(frames)
    cols = max(1, min(int(max_columns), n))
    rows = -(-n // cols)
    h, w = shapes[0]
    cell = min(2.2, 15.0 / cols)
    with _style():
        fig = _new_figure(cell * cols + 1.0, rows * cell * h / w + 0.9 * rows + 1.9)
        grid = fig.add_gridspec(rows + 1, cols, height_ratios=[*([h / w * 1.25] * rows), 0.55])
        axes = []
        for i, (im, values, m, share) in enumerate(zip(frames, maps, masks, shares)):
            ax = fig.add_subplot(grid[i // cols, i % cols])
            ax.imshow(overlay(im, values, alpha, cmap), interpolation="nearest")
            if m is not None:
                _outline(ax, m)
            ax.set_title(f"frame {i + 1} · {share['time']:.2f} s\n{share['score_share']:.0%} of the map", fontsize=7.5)
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            axes.append(ax)
        bars = fig.add_subplot(grid[rows, :])
        x = np.arange(n)
        bars.bar(x, [s["score_share"] for s in shares], color=INSERTION_COLOR, width=0.6, label="share of the map")
        bars.plot(x, [s["area"] for s in shares], linestyle="--", color="0.4", linewidth=1, label="share of the area")
        bars.set_xticks(x, [f"{i + 1}\n{s['time']:.2f} s" for i, s in enumerate(shares)], fontsize=7)
        bars.set_ylabel("share", fontsize=7.5)
        bars.tick_params(axis="y", labelsize=7)
        bars.set_ylim(0, max(1e-9, max([s["score_share"] for s in shares] + [s["area"] for s in shares])) * 1.15)
        bars.legend(fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
        if colorbar:
            _bar(fig, axes, map_label(attr, rule=rule, token=token), cmap=cmap, alpha=alpha)
        fig.suptitle(heatmap_title(attr, token, width=max(52, 22 * cols)), fontsize=8.5)
    return fig


def _starts(shapes: Sequence[tuple[int, int]]) -> list[int]:
    """Offsets of each image's pixels in a strip of images (row-major, in order)."""
    out, start = [], 0
    for h, w in shapes:
        out.append(start)
        start += int(h) * int(w)
    return out
