"""Plots as free functions taking results (matplotlib, RGB).

Every function here draws with :class:`matplotlib.figure.Figure` objects directly, never
through :mod:`matplotlib.pyplot`: the library does not pick a backend, does not register
figures in pyplot's global state (so there is nothing to close and no memory leak in
loops), and never calls ``plt.show``. Functions that take an ``ax`` draw on it and return
it; the others build and return a new ``Figure``. In Jupyter a returned ``Figure``
displays inline (run ``%matplotlib inline`` once); elsewhere write it with
:func:`save_figure` (PNG files are written as RGB, without an alpha channel) or turn it
into an array with :func:`figure_to_rgb`.

Maps
----
* the *joint* map (``expl.saliency()``, ``float32[H, W]`` in ``[0, 1]``) ranks regions by the
  search ordering over all explained tokens together; it is drawn with :func:`get_cmap` (a bright jet).
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
  that did not matter show the plain image.
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

#: Colour map of joint saliency overlays (the EAGLE paper's figures use jet), of which only
#: :data:`HEATMAP_RANGE` is used: jet's last eighth is a dark red that, blended over an image,
#: reads as grey-brown, so the most important regions would look the dullest.
HEATMAP_CMAP = "jet"
HEATMAP_RANGE = (0.0, 0.875)
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

    The heatmap map is :data:`HEATMAP_CMAP` restricted to :data:`HEATMAP_RANGE` (blue for the
    least important regions, bright red for the most important).
    """
    import matplotlib
    from matplotlib.colors import Colormap, ListedColormap

    if cmap is None:
        lo, hi = HEATMAP_RANGE
        base = matplotlib.colormaps[HEATMAP_CMAP]
        return ListedColormap(base(np.linspace(lo, hi, 256)), name=f"{HEATMAP_CMAP}_bright")
    if isinstance(cmap, str):
        if cmap not in matplotlib.colormaps:
            raise ValueError(
                f"unknown colour map {cmap!r}; expected a matplotlib colour map name such as 'jet' or 'viridis'"
            )
        return matplotlib.colormaps[cmap]
    if isinstance(cmap, Colormap):
        return cmap
    raise TypeError(f"cmap must be a colour map name, a matplotlib Colormap or None; got {type(cmap).__name__}")


def overlay(
    image: np.ndarray, saliency: np.ndarray, alpha: float = 0.55, cmap: str | Colormap | None = None
) -> np.ndarray:
    """``uint8[H, W, 3]``: the saliency (``float[H, W]`` in ``[0, 1]``) blended over the RGB image.

    ``cmap``: a name or Colormap; ``None`` is the heatmap map (:func:`get_cmap`).
    """
    image = _check_image(image)
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"saliency has shape {saliency.shape}; expected the image's {image.shape[:2]}")
    colours = get_cmap(cmap)(np.clip(np.nan_to_num(saliency), 0, 1))[..., :3]
    blended = (1 - alpha) * image.astype(np.float64) / 255.0 + alpha * colours
    return np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8)


def overlay_signed(
    image: np.ndarray, values: np.ndarray, alpha: float = 0.8, cmap: str = GAIN_CMAP, *, gray: bool = True
) -> np.ndarray:
    """``uint8[H, W, 3]``: a signed map (``float[H, W]`` in ``[-1, 1]``) over the image.

    Colour comes from the diverging ``cmap`` (``-1`` -> its low end, ``+1`` -> its high end);
    opacity is ``alpha · |value|``, so zero leaves the image untouched. With ``gray`` the
    image underneath is shown in light grey levels, so its own colours are not mistaken
    for the map's.
    """

    image = _check_image(image)
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), -1.0, 1.0)
    if v.shape != image.shape[:2]:
        raise ValueError(f"values have shape {v.shape}; expected the image's {image.shape[:2]}")
    colours = get_cmap(cmap)(0.5 + 0.5 * v)[..., :3]
    a = (alpha * np.abs(v))[..., None]
    base = image.astype(np.float64) / 255.0
    if gray:
        lum = base @ np.array([0.299, 0.587, 0.114])
        base = np.repeat((0.35 + 0.6 * lum)[..., None], 3, axis=2)
    blended = (1 - a) * base + a * colours
    return np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8)


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


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# -- explanation plots -------------------------------------------------------------------------


def plot_heatmap(expl: ExplanationLike, ax: Axes | None = None, *, alpha: float = 0.55, colorbar: bool = True) -> Axes:
    """Draw the joint heatmap overlay, titled with the explained words, with a colour bar of the
    attribution scale (``colorbar=False`` to leave it out); returns the axes."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    with _style():
        if ax is None:
            ax = _new_figure(4.6, 4.5).add_subplot()
        ax.imshow(overlay(expl.image, expl.saliency(), alpha=alpha), interpolation="nearest")
        if colorbar:
            bar = ax.figure.colorbar(
                ScalarMappable(norm=Normalize(0.0, 1.0), cmap=get_cmap()), ax=ax, fraction=0.046, pad=0.03, shrink=0.8
            )
            bar.set_label("attribution (0 = least, 1 = most important)", fontsize=8)
            bar.ax.tick_params(labelsize=7)
        kind = "counterfactual" if expl.generation.counterfactual else "answer"
        ax.set_title(
            f"explained: {_short(expl.target_text, 40)!r}\n{kind}: {_short(expl.generation.text, 48)}\n"
            f"insertion AUC {expl.insertion_auc():.3f} · deletion AUC {expl.deletion_auc():.3f}",
            fontsize=9,
        )
        ax.axis("off")
    return ax


def save_heatmap(expl: ExplanationLike, path: str | os.PathLike) -> Path:
    """Write the joint heatmap overlay (titled with the explained words) as an RGB PNG."""
    with _style():
        fig = _new_figure(4.8, 4.6)
        ax = fig.add_subplot()
        plot_heatmap(expl, ax)
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
    alpha: float = 0.55,
) -> Figure:
    """A figure: the joint map, then one per explained token (its signed gains), curves below.

    Column 0 is the joint map (``expl.saliency()``) with the token-mean curves; then, per
    explained token, its gain map (:func:`token_gain_map`) with its own insertion/deletion
    curves (solid: insertion, dashed: deletion; AUCs in the titles).

    Args:
        tokens: indices into the explained tokens to draw (default: all of them, or, when
            there are more than ``max_tokens``, the ``max_tokens`` with the largest image
            effect ``p_full − p_blank``, in answer order; the title says how many were left out).
    """
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
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
    with _style():
        fig = _new_figure(2.05 * ncols + 0.7, 2.25 * nrows + 0.45)
        fig.set_layout_engine("constrained", w_pad=0.02, h_pad=0.04, wspace=0.03, hspace=0.05)
        axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
        axes[0, 0].imshow(overlay(expl.image, expl.saliency(), alpha=alpha), interpolation="nearest")
        axes[0, 0].set_title(f"joint: {_short(expl.target_text, 22)!r}")
        for col, t in enumerate(shown, start=1):
            pos = expl.positions[t]
            axes[0, col].imshow(overlay_signed(expl.image, token_gain_map(expl, t)), interpolation="nearest")
            axes[0, col].set_title(f"{_token_label(expl.generation.tokens[pos])!r} (token {pos})")
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
            fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
        extra = f"  ({k - len(shown)} more explained tokens not shown)" if len(shown) < k else ""
        fig.suptitle(f"{_short(expl.generation.text, 90)!r}{extra}", fontsize=9)
        if shown:
            sm = ScalarMappable(norm=Normalize(-1, 1), cmap=matplotlib.colormaps[GAIN_CMAP])
            cb = fig.colorbar(sm, ax=list(axes[0, 1:]), fraction=0.04, pad=0.02, aspect=18, shrink=0.9)
            cb.set_label("gain / max |gain|", fontsize=7)
            cb.ax.tick_params(labelsize=7)
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
    alpha: float = 0.55,
) -> Figure:
    """Three panels: the wrong answer, the evidence for the correct one, the minimal removal.

    Args:
        image: ``uint8[H, W, 3]`` the input.
        wrong_answer: what the model said.
        evidence_map: ``float[H, W]`` (min-max normalised for display): where the correct
            answer's evidence is (e.g. ``expl.saliency()`` of an ``Answer("no")`` explanation).
        corrected_answer: what the model said after the removal.
        removal_mask: ``bool[H, W]``, True where regions were removed (the smallest removal that
            made the answer correct); drawn black, outlined.
        question: the prompt, shown over the first panel.
        correct_token: the explained correct answer token, for the middle title.
        removed_fraction: the removed area (default: ``removal_mask.mean()``), e.g. the AMCR.
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
    frac = float(mask.mean()) if removed_fraction is None else float(removed_fraction)
    removed = image.copy()
    removed[mask] = 0
    with _style():
        fig = _new_figure(8.4, 3.6)
        axes = fig.subplots(1, 3)
        axes[0].imshow(image, interpolation="nearest")
        head = f"Q: {_short(question, 44)}\n" if question else ""
        axes[0].set_title(f"{head}model: {_short(wrong_answer, 40)!r}  ✗", color="#B2182B")
        axes[1].imshow(overlay(image, ev, alpha=alpha), interpolation="nearest")
        what = f"{correct_token!r}" if correct_token else "the correct answer"
        axes[1].set_title(f"evidence for {what}")
        axes[2].imshow(removed, interpolation="nearest")
        if mask.any() and not mask.all():
            axes[2].contour(mask.astype(float), levels=[0.5], colors=["#F0E442"], linewidths=1.2)
        axes[2].set_title(f"remove {frac:.0%} (minimal)\nmodel: {_short(corrected_answer, 40)!r}  ✓", color="#1A7837")
        for a in axes:
            a.axis("off")
        if title:
            fig.suptitle(title, fontsize=10)
    return fig


def plot_methods(
    image: np.ndarray,
    maps: Mapping[str, np.ndarray],
    metrics: Mapping[str, Mapping[str, float]] | None = None,
    *,
    ncols: int | None = None,
    alpha: float = 0.55,
    title: str | None = None,
) -> Figure:
    """Side-by-side maps of several methods over one image (the input first).

    Args:
        image: ``uint8[H, W, 3]``.
        maps: method name -> ``float[h, w]`` map (any scale; min-max normalised for display,
            resized bilinearly to the image when its size differs).
        metrics: method name -> ``{metric name: value}``, printed under the method's title
            (e.g. ``{"ins": 0.61, "del": 0.32}``).
        ncols: panels per row (default: all in one row, up to 5).
    """
    image = _check_image(image)
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError("maps must be a non-empty mapping of method name -> float[H, W] map")
    unknown = set(metrics or {}) - set(maps)
    if unknown:
        raise ValueError(f"metrics for unknown method(s) {sorted(unknown)}; maps has {list(maps)}")
    n = len(maps) + 1
    ncols = ncols or min(n, 5)
    nrows = math.ceil(n / ncols)
    with _style():
        fig = _new_figure(2.3 * ncols, 2.7 * nrows + (0.3 if title else 0))
        axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
        axes[0].imshow(image, interpolation="nearest")
        axes[0].set_title("input")
        for a, (name, m) in zip(axes[1:], maps.items()):
            m = np.asarray(m, dtype=np.float64)
            if m.ndim != 2:
                raise ValueError(f"map of {name!r} must be float[H, W]; got shape {m.shape}")
            a.imshow(
                overlay(image, normalize_map(resize_map(m, image.shape[:2])), alpha=alpha), interpolation="nearest"
            )
            label = str(name)
            if metrics and name in metrics:
                label += "\n" + " · ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics[name].items()
                )
            a.set_title(label)
        for a in axes:
            a.axis("off")
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
    "HEATMAP_CMAP",
    "HEATMAP_RANGE",
    "MODALITY_COLORS",
    "figure_to_rgb",
    "get_cmap",
    "modality_palette",
    "normalize_map",
    "overlay",
    "overlay_signed",
    "plot_curves",
    "plot_hallucination_panel",
    "plot_heatmap",
    "plot_mean_curves",
    "plot_methods",
    "plot_token_heatmaps",
    "png_bytes",
    "render_modality_text",
    "save_figure",
    "save_heatmap",
    "token_gain_map",
    "token_region_gains",
]
