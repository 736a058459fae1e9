"""Self-contained HTML reports: one file that opens offline in any browser.

:func:`write_report` writes one page for one explanation (or several): the input image, the
joint heatmap and one heatmap per explained token (see :func:`mllm_attr.viz.token_gain_map`),
each drawn over the greyed image with its top regions outlined (:func:`mllm_attr.viz.map_image`)
and a colour bar saying what the colours mean, a token picker (the generated tokens; the
explained ones are buttons that switch the heatmap and curves), insertion/deletion curves as
inline SVG, the numbers (AUCs, probabilities, forwards, seconds) and the settings and package
versions. Prompt-word attributions and several-images attributions get sections of their own
(see :func:`write_report`).

:func:`write_benchmark_report` writes one page for a benchmark run: the summary table (in a
box that scrolls sideways when it is wider than the page; columns of whole numbers, such as
mean forwards, shown as integers) and the mean insertion/deletion curves of each method.

Everything is inside the file: images are base64 PNG ``data:`` URIs, CSS and JavaScript are
inline, and a Content-Security-Policy forbids loading anything else, so the page looks the
same with no network. All text (generated answers are untrusted) is HTML-escaped. Files are
written atomically (a temporary file in the same folder, then :func:`os.replace`).

A page can be opened on a given token: ``report.html#e0:t1`` selects explained token 1 of
explanation 0 (``#e0:joint`` the joint map).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import viz
from ._io import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from .explanation import Explanation

logger = logging.getLogger(__name__)

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_CSS = """
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#dadce0; --accent:#D55E00; --accent2:#0072B2; --bg:#fff; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 18px 24px 40px; max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 0 0 8px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
header p, footer, .muted { color: var(--muted); }
nav a { margin-right: 12px; }
section.expl, section.bench { border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; margin: 16px 0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 10px; }
dl.meta dt { color: var(--muted); } dl.meta dd { margin: 0; white-space: pre-wrap; word-break: break-word; }
.tokens { display: flex; flex-wrap: wrap; gap: 4px; margin: 8px 0 14px; align-items: center; }
.tokens.prompt { display: block; line-height: 2.1; } .tokens.prompt .gap { white-space: pre-wrap; }
.tok { font: 14px/1.2 ui-monospace, "DejaVu Sans Mono", monospace; padding: 4px 7px; border-radius: 6px;
       border: 1px solid var(--line); background: #f6f7f8; color: var(--muted); white-space: pre; }
button.tok { cursor: pointer; color: var(--fg); background: #fde9dc; border-color: #f3b58c; }
button.tok.joint { background: #e3eef8; border-color: #9cc3e4; font-family: inherit; }
button.tok[aria-pressed="true"] { outline: 2px solid var(--accent); outline-offset: 1px; font-weight: 600; }
button.tok.joint[aria-pressed="true"] { outline-color: var(--accent2); }
.panels { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.view { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.panels.image-row { margin-bottom: 12px; } .multi-maps { max-width: 680px; }
[hidden] { display: none !important; }
figure { margin: 0; min-width: 0; } figcaption { color: var(--muted); font-size: 12.5px; max-width: 340px;
  margin-top: 4px; }
img.pic { width: 320px; height: auto; border-radius: 4px; display: block; }
img.pixelated { image-rendering: pixelated; }
.bar { height: 10px; width: 320px; border-radius: 3px; margin-top: 4px; }
.barlabels { display: flex; justify-content: space-between; width: 320px; font-size: 11px; color: var(--muted); }
.barname { width: 320px; font-size: 11.5px; color: var(--fg); margin-top: 2px; }
.ring { display: inline-block; width: 12px; height: 9px; border: 2px solid #00E5FF; outline: 1px solid #555;
  vertical-align: -1px; margin-right: 3px; }
.scroll { max-width: 100%; overflow-x: auto; margin: 4px 0 8px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
thead th { vertical-align: bottom; } td.txt { min-width: 9em; max-width: 28em; }
th { background: #f6f7f8; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
tr.sel td { background: #fff4ec; }
td.val { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; word-break: break-all;
  max-width: 720px; }
details { margin-top: 10px; } summary { cursor: pointer; font-weight: 600; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #333; }
"""

_JS = """
(function () {
  function select(section, key) {
    var views = section.querySelectorAll('.view');
    var found = false;
    for (var i = 0; i < views.length; i++) { if (views[i].getAttribute('data-view') === key) { found = true; } }
    if (!found) { return; }
    for (var i = 0; i < views.length; i++) { views[i].hidden = views[i].getAttribute('data-view') !== key; }
    var buttons = section.querySelectorAll('button.tok[data-view]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute('aria-pressed', buttons[i].getAttribute('data-view') === key ? 'true' : 'false');
    }
    var rows = section.querySelectorAll('tr[data-view]');
    for (var i = 0; i < rows.length; i++) {
      rows[i].classList.toggle('sel', rows[i].getAttribute('data-view') === key);
    }
    section.setAttribute('data-selected', key);
  }
  var sections = document.querySelectorAll('section.expl');
  for (var s = 0; s < sections.length; s++) {
    (function (sec) {
      var buttons = sec.querySelectorAll('button.tok[data-view]');
      for (var i = 0; i < buttons.length; i++) {
        buttons[i].addEventListener('click', function (ev) {
          select(sec, ev.currentTarget.getAttribute('data-view'));
        });
      }
    })(sections[s]);
  }
  function fromHash() {
    var m = /^#(e[0-9]+):([a-z0-9]+)$/.exec(window.location.hash);
    if (m) { var sec = document.getElementById(m[1]); if (sec) { select(sec, m[2]); } }
  }
  fromHash();
  window.addEventListener('hashchange', fromHash);
  document.body.setAttribute('data-ready', '1');
})();
"""


# -- small HTML helpers ------------------------------------------------------------------------


def _e(value: Any) -> str:
    """HTML-escaped text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(arr: np.ndarray, alt: str) -> str:
    cls = "pic pixelated" if max(arr.shape[:2]) < 256 else "pic"
    return f'<img class="{cls}" alt="{_e(alt)}" src="{_data_uri(viz.png_bytes(arr))}">'


def _fmt(value: Any, digits: int = 3, *, integral: bool = False) -> str:
    """A value as table text: 3 decimals for floats (``integral``: as an integer, for a column
    of counts such as a mean number of forwards, 196.0 -> ``196``), a dash for None and NaN."""
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "–"
        if integral and math.isfinite(v) and v.is_integer():
            return str(int(v))
        return f"{v:.{digits}f}" if abs(v) < 1e6 else f"{v:.4g}"
    return str(value)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _integral_column(values: Sequence[Any]) -> bool:
    """A column of counts: every number in it is a whole number and one is above 1 (so a column
    of fractions that happen to be 0.0 and 1.0, e.g. a pointing rate, keeps its decimals)."""
    nums = [float(v) for v in values if _is_num(v) and math.isfinite(float(v))]
    return bool(nums) and all(v.is_integer() for v in nums) and max(abs(v) for v in nums) > 1


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], row_attrs: Sequence[str] | None = None) -> str:
    """An HTML table in a horizontally scrolling box (a wide table never runs past its card);
    numbers right-aligned, columns of whole numbers shown as integers."""
    rows = [list(r) for r in rows]
    integral = [_integral_column([r[c] for r in rows if c < len(r)]) for c in range(len(header))]
    # long snake_case names may wrap after an underscore (narrower columns, fewer to scroll to);
    # the whole name stays in the tooltip
    head = "".join(
        f'<th title="{_e(h)}">{_e(h).replace("_", "_<wbr>")}</th>' if "_" in str(h) else f"<th>{_e(h)}</th>"
        for h in header
    )
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f'<td class="num">{_e(_fmt(c, integral=integral[j]))}</td>'
            if _is_num(c)
            else (f'<td class="txt">{_e(_fmt(c))}</td>' if len(_fmt(c)) > 24 else f"<td>{_e(_fmt(c))}</td>")
            for j, c in enumerate(row)
        )
        attrs = f" {row_attrs[i]}" if row_attrs else ""
        body.append(f"<tr{attrs}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _kv_table(d: Mapping[str, Any]) -> str:
    rows = []
    for key, value in _flatten(d):
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        rows.append(f'<tr><th scope="row">{_e(key)}</th><td class="val">{_e(text)}</td></tr>')
    return f'<div class="scroll"><table><tbody>{"".join(rows)}</tbody></table></div>'


def _gradient(cmap: str | None, *, signed: bool = False) -> str:
    """CSS gradient of the colours a map shows over a mid-grey image (:func:`mllm_attr.viz.display_cmap`;
    ``None``: the heatmap map; ``signed``: the per-token gain look)."""
    cm = viz.display_cmap(cmap, signed=signed)
    stops = []
    for i in range(11):
        r, g, b, _ = cm(i / 10)
        stops.append(f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)}) {i * 10}%")
    return f"linear-gradient(to right, {', '.join(stops)})"


def _svg_curves(
    series: Sequence[tuple[str, np.ndarray, np.ndarray, str, bool]],
    *,
    xlabel: str,
    ylabel: str = "probability",
    title: str = "",
    width: int = 360,
    height: int = 250,
) -> str:
    """Inline SVG line plot. ``series``: ``(label, x, y, colour, dashed)``; x in [0, 1]."""
    left, right, top, bottom = 46, 12, 24 if title else 10, 40
    height += 16 * len(series)  # the legend goes under the plot, never over the lines
    pw, ph = width - left - right, height - top - bottom - 16 * len(series)
    ymax = max([1.0] + [float(np.nanmax(y)) for _, _, y, _, _ in series if len(y)])

    def px(x: float) -> float:
        return left + pw * float(np.clip(x, 0, 1))

    def py(y: float) -> float:
        return top + ph * (1 - float(np.clip(np.nan_to_num(y), 0, ymax)) / ymax)

    parts = [f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="curves">']
    if title:
        parts.append(f'<text x="{left}" y="15" style="font-weight:600">{_e(title)}</text>')
    for i in range(6):
        t = i / 5
        parts.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + ph}" stroke="#eee"/>')
        parts.append(f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle">{t:.1f}</text>')
        yv = ymax * t
        parts.append(f'<line x1="{left}" y1="{py(yv):.1f}" x2="{left + pw}" y2="{py(yv):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 5}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.1f}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph + 32}" text-anchor="middle">{_e(xlabel)}</text>')
    parts.append(
        f'<text transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">{_e(ylabel)}</text>'
    )
    for j, (label, x, y, colour, dashed) in enumerate(series):
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y))
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        parts.append(
            f'<polyline fill="none" stroke="{_e(colour)}" stroke-width="2"{dash} points="{pts}">'
            f"<title>{_e(label)}</title></polyline>"
        )
        ly = top + ph + 54 + 16 * j
        lx = left
        parts.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{_e(colour)}" stroke-width="2"{dash}/>'
        )
        parts.append(f'<text x="{lx + 27}" y="{ly}">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _page(title: str, body: str, subtitle: str = "") -> str:
    from ._version import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header><main>{body}</main>"
        f"<footer>written by mllm_attr {_e(__version__)} on {_e(now)}; self-contained, works offline.</footer>"
        f"<script>{_JS}</script></body></html>\n"
    )


def _write_atomic(path: str | os.PathLike, text: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(f"report path {str(out)!r} is a directory; expected a file name such as report.html")
    return write_text_atomic(out, text)


# -- explanation report ------------------------------------------------------------------------


def _display_token(tok: str) -> str:
    if tok.strip():
        return tok.strip()
    return "⏎" if "\n" in tok else "␣"


def _curve_svg(expl: Explanation, token: int | None) -> str:
    xi, yi = expl.insertion_curve(token)
    xd, yd = expl.deletion_curve(token)
    name = "mean over explained tokens" if token is None else f"token {_display_token(expl.target_tokens[token])!r}"
    return _svg_curves(
        [
            (f"insertion (AUC {expl.insertion_auc(token):.3f})", xi, yi, viz.INSERTION_COLOR, False),
            (f"deletion (AUC {expl.deletion_auc(token):.3f})", xd, yd, viz.DELETION_COLOR, True),
        ],
        xlabel="fraction of image inserted / deleted",
        title=name,
    )


def _section(expl: Explanation, idx: int) -> str:
    gen = expl.generation
    sid = f"e{idx}"
    explained = {p: j for j, p in enumerate(expl.positions)}
    meta = [("prompt", gen.prompt)]
    if gen.counterfactual:
        meta += [
            ("generated", gen.generated_text or ""),
            ("explained answer", f"{gen.text}  (counterfactual, teacher-forced)"),
        ]
    else:
        meta += [("answer", gen.text)]
    meta += [("explained", f"{expl.target_text!r} (tokens {', '.join(str(p) for p in expl.positions)})")]
    meta_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta)

    chips = [
        '<button type="button" class="tok joint" data-view="joint" aria-pressed="true" '
        'title="all explained tokens together (the search objective)">joint map</button>'
    ]
    for i, tok in enumerate(gen.tokens):
        prob = gen.probs[i]
        ptxt = "" if prob is None or (isinstance(prob, float) and math.isnan(prob)) else f", p={prob:.3f}"
        if i in explained:
            chips.append(
                f'<button type="button" class="tok explained" data-view="t{explained[i]}" data-pos="{i}" '
                f'aria-pressed="false" title="token {i}{_e(ptxt)}: explained">{_e(_display_token(tok))}</button>'
            )
        else:
            chips.append(
                f'<span class="tok" data-pos="{i}" title="token {i}{_e(ptxt)}: not explained in this run">'
                f"{_e(_display_token(tok))}</span>"
            )

    ring = f'<span class="ring" style="border-color:{viz.OUTLINE_COLOR}"></span>'
    joint_bar = (
        f'<div class="bar" style="background:{_gradient(None)}"></div>'
        '<div class="barlabels"><span>0: no gain</span><span>1: as much as the top region</span></div>'
        f'<div class="barname">{_e(viz.map_label(expl).replace(chr(10), " "))}</div>'
    )
    gain_bar = (
        f'<div class="bar" style="background:{_gradient(viz.GAIN_CMAP, signed=True)}"></div>'
        '<div class="barlabels"><span>−1: hurt the token</span><span>0</span><span>+1: helped the token</span></div>'
        '<div class="barname">the token\'s gain ÷ its largest |gain|</div>'
    )
    labels = np.asarray(expl.labels)
    top = viz.top_regions(expl)
    joint_map = viz.map_image(expl.image, viz._map_of(expl, "evidence", None), outline=np.isin(labels, top))
    views = [
        '<div class="view" data-view="joint"><figure>'
        + _img(joint_map, "joint heatmap")
        + joint_bar
        + "<figcaption>Joint map over the greyed image: each region's marginal gain of the objective "
        "(insight + necessity) when the search added it, relative to the top region's; the region order "
        f"decides the curves. {ring}{_e(viz._outline_text(expl, top).replace(chr(10), '; '))}.</figcaption></figure>"
        + f"<figure>{_curve_svg(expl, None)}</figure></div>"
    ]
    for j, pos in enumerate(expl.positions):
        tok = _display_token(gen.tokens[pos])
        own = viz.top_regions(expl, j)
        token_map = viz.map_image(expl.image, viz.token_gain_map(expl, j), signed=True, outline=np.isin(labels, own))
        views.append(
            f'<div class="view" data-view="t{j}" hidden><figure>'
            + _img(token_map, f"heatmap of token {tok}")
            + gain_bar
            + f"<figcaption>Token {_e(repr(tok))} (position {pos}): how much each region, added in the joint order, "
            "raised this token's insertion probability plus its necessity (red helped, blue hurt). "
            f"{ring}outlined: its {len(own)} top region{'s' if len(own) != 1 else ''} by own gain (90 % of its "
            "positive gain, at most 30 % of the image)."
            "</figcaption></figure>" + f"<figure>{_curve_svg(expl, j)}</figure></div>"
        )
    h, w = expl.image.shape[:2]
    panels = (
        f'<div class="panels"><figure>{_img(expl.image, "input image")}<figcaption>input image, {w}×{h} px, '
        f"{expl.n_regions} regions</figcaption></figure>{''.join(views)}</div>"
    )

    header = [
        "token",
        "position",
        "p(full)",
        "p(blank)",
        "p(full) − p(blank)",
        "insertion AUC ↑",
        "deletion AUC ↓",
        "highest confidence",
    ]
    rows = [
        [
            "mean (joint)",
            "",
            float(expl.p_full.mean()),
            float(expl.p_blank.mean()),
            float(expl.p_full.mean() - expl.p_blank.mean()),
            expl.insertion_auc(),
            expl.deletion_auc(),
            expl.highest_confidence(),
        ]
    ]
    attrs = ['data-view="joint" class="sel"']
    for j, pos in enumerate(expl.positions):
        rows.append(
            [
                _display_token(gen.tokens[pos]),
                pos,
                float(expl.p_full[j]),
                float(expl.p_blank[j]),
                float(expl.p_full[j] - expl.p_blank[j]),
                expl.insertion_auc(j),
                expl.deletion_auc(j),
                expl.highest_confidence(j),
            ]
        )
        attrs.append(f'data-view="t{j}"')
    run = {
        "regions": expl.n_regions,
        "forwards (images scored)": int(expl.forwards),
        "forward calls (batches)": expl.settings.get("forward_calls", "–"),
        "seconds": round(float(expl.seconds), 3),
        "search": expl.settings.get("search", "–"),
        "method": expl.settings.get("method", "–"),
    }
    numbers = _table(header, rows, attrs) + _kv_table(run)
    settings = (
        f"<details><summary>Settings</summary>{_kv_table(expl.settings)}</details>"
        f"<details><summary>Versions</summary>{_kv_table(expl.versions)}</details>"
    )
    return (
        f'<section class="expl" id="{sid}" data-selected="joint">'
        f"<h2>{idx + 1}. “{_e(expl.target_text)}”{' (counterfactual)' if gen.counterfactual else ''}</h2>"
        f'<dl class="meta">{meta_html}</dl>'
        f'<div class="tokens" role="group" aria-label="generated tokens">{"".join(chips)}</div>'
        f"{panels}<h3>Numbers</h3>{numbers}{settings}</section>"
    )


def _word_chip(text: str, value: float, rank: int, n_features: int) -> str:
    """A prompt word coloured by its score: the heatmap's colour map, opacity growing with the value."""
    r, g, b, _ = viz.get_cmap()(float(np.clip(value, 0.0, 1.0)))
    alpha = 0.85 * float(np.clip(value, 0.0, 1.0))
    style = f"background:rgba({round(255 * r)},{round(255 * g)},{round(255 * b)},{alpha:.2f})"
    if alpha > 0.45 and (0.299 * r + 0.587 * g + 0.114 * b) < 0.5:
        style += ";color:#fff"
    return (
        f'<span class="tok" style="{style}" title="score {value:.3f}, rank {rank + 1} of {n_features}">'
        f"{_e(text)}</span>"
    )


def _prompt_section(attr: Any, idx: int) -> str:
    """One section for a prompt-word attribution (:class:`~mllm_attr.analysis.PromptAttribution`):
    the prompt with each word coloured by its score, the region map when there is an image, the
    curves over the fraction of features, the ranking and the numbers."""
    gen = attr.generation
    meta = [
        ("prompt", gen.prompt),
        ("answer", gen.text + ("  (counterfactual, teacher-forced)" if gen.counterfactual else "")),
    ]
    meta += [("explained", f"{attr.target_text!r} (tokens {', '.join(str(p) for p in attr.positions)})")]
    meta_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta)
    scores = np.asarray(attr.feature_scores(), dtype=np.float64)
    n_regions, n_features = attr.n_regions, attr.n_features
    rank_of = {int(f): r for r, f in enumerate(attr.ordering.tolist())}
    chips, cursor = [], 0
    for w, word in enumerate(attr.words):
        start, end = word.span
        if start > cursor:
            chips.append(f'<span class="gap">{_e(gen.prompt[cursor:start])}</span>')
        f = n_regions + w
        chips.append(_word_chip(gen.prompt[start:end], float(scores[f]), rank_of[f], n_features))
        cursor = max(cursor, end)
    if cursor < len(gen.prompt):
        chips.append(f'<span class="gap">{_e(gen.prompt[cursor:])}</span>')
    words_html = (
        '<div class="tokens prompt" role="group" aria-label="prompt words">' + "".join(chips) + "</div>"
        f'<div class="bar" style="background:{_gradient(None)}"></div>'
        '<div class="barlabels"><span>0: no gain</span><span>1: as much as the top feature</span></div>'
        '<p class="muted">Each prompt word\'s marginal gain of the objective (insight + necessity) when the '
        "search added it, relative to the top feature's; hover a word for its score and rank.</p>"
    )
    xlabel = "fraction of features inserted / deleted"
    xi, yi = attr.feature_insertion_curve()
    xd, yd = attr.feature_deletion_curve()
    curves = _svg_curves(
        [
            (f"insertion (AUC {attr.feature_insertion_auc():.3f})", xi, yi, viz.INSERTION_COLOR, False),
            (f"deletion (AUC {attr.feature_deletion_auc():.3f})", xd, yd, viz.DELETION_COLOR, True),
        ],
        xlabel=xlabel,
        title="mean over explained tokens",
    )
    figures = []
    if not attr.text_only:
        labels = np.asarray(attr.labels)
        region = np.clip(scores[:n_regions], 0.0, None)
        region_map = region[labels] / max(float(scores.max()), 1e-12)
        h, w = attr.image.shape[:2]
        figures.append(
            f"<figure>{_img(attr.image, 'input image')}<figcaption>input image, {w}×{h} px</figcaption></figure>"
        )
        figures.append(
            f"<figure>{_img(viz.map_image(attr.image, region_map), 'region map')}<figcaption>the image regions' "
            "scores on the same scale as the words'</figcaption></figure>"
        )
    figures.append(f"<figure>{curves}</figure>")
    panels = f'<div class="panels">{"".join(figures)}</div>'
    rank_rows = [[r["rank"] + 1, r["kind"], r["name"], r["score"]] for r in attr.ranking()[:15]]
    ranking = _table(["rank", "kind", "feature", "score"], rank_rows)
    header = ["token", "position", "p(full)", "p(blank)", "insertion AUC ↑", "deletion AUC ↓"]
    rows = [
        [
            "mean (joint)",
            "",
            float(attr.p_full.mean()),
            float(attr.p_blank.mean()),
            attr.feature_insertion_auc(),
            attr.feature_deletion_auc(),
        ]
    ]
    for j, pos in enumerate(attr.positions):
        rows.append(
            [
                _display_token(gen.tokens[pos]),
                pos,
                float(attr.p_full[j]),
                float(attr.p_blank[j]),
                attr.feature_insertion_auc(j),
                attr.feature_deletion_auc(j),
            ]
        )
    run = {
        "prompt words": attr.n_words,
        "image regions": n_regions,
        "forwards (inputs scored)": int(attr.forwards),
        "seconds": round(float(attr.seconds), 3),
        "search": attr.settings.get("search", "–"),
    }
    settings = (
        f"<details><summary>Settings</summary>{_kv_table(attr.settings)}</details>"
        f"<details><summary>Versions</summary>{_kv_table(attr.versions)}</details>"
    )
    kind = "text-only prompt-word attribution" if attr.text_only else "prompt words and image regions"
    return (
        f'<section class="expl" id="e{idx}">'
        f'<h2>{idx + 1}. “{_e(attr.target_text)}” <span class="muted">({kind})</span></h2>'
        f'<dl class="meta">{meta_html}</dl>{words_html}{panels}'
        f"<h3>Ranking (top {len(rank_rows)} of {n_features})</h3>{ranking}"
        f"<h3>Numbers</h3>{_table(header, rows)}{_kv_table(run)}{settings}</section>"
    )


def _count(n: int, one: str, many: str) -> str:
    """``one`` for 1, else ``many`` with ``n`` in its ``{}``."""
    return one if int(n) == 1 else many.format(int(n))


def _multi_image_section(attr: Any, idx: int) -> str:
    """One section for several images in one prompt
    (:class:`~mllm_attr.analysis.multi_image.MultiImageAttribution`): each input image and its
    map (all maps on ONE scale, the top regions of the joint ordering outlined in whichever image
    they lie) with its share of the attribution, the curves over the fraction of the total image
    area, the per-image share table and the numbers. A video
    (:class:`~mllm_attr.analysis.video.VideoAttribution`) gets the same section over its frames,
    each named with its time."""
    gen = attr.generation
    unit = attr.unit
    times = list(getattr(attr, "times", []) or [])

    def name(i: int) -> str:
        return f"frame {i + 1} ({times[i]:.2f} s)" if unit == "frame" and i < len(times) else f"{unit} {i + 1}"

    meta = [("prompt", gen.prompt)]
    if gen.counterfactual:
        meta += [
            ("generated", gen.generated_text or ""),
            ("explained answer", f"{gen.text}  (counterfactual, teacher-forced)"),
        ]
    else:
        meta += [("answer", gen.text)]
    meta += [
        ("explained", f"{attr.target_text!r} (tokens {', '.join(str(p) for p in attr.positions)})"),
    ]
    regions = " + ".join(map(str, attr.n_regions_per_image))
    if unit == "frame":
        meta.append(("video", f"{attr.n_images} frames at {float(attr.fps):.3g} frames per second, regions {regions}"))
    else:
        meta.append(("images", f"{attr.n_images} in one prompt, regions {regions}"))
    meta_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta)

    n = attr.n_regions
    shares = attr.image_shares()
    maps = attr.saliencies()  # one scale: a region's gain relative to the top region of ALL images
    top = viz.top_regions(attr)
    ring = f'<span class="ring" style="border-color:{viz.OUTLINE_COLOR}"></span>'
    figures = []

    def outlined_text(k: int) -> str:
        return "none of its regions outlined" if k == 0 else f"{k} region{'s' if k != 1 else ''} outlined"

    for i, (im, labels, values, share) in enumerate(zip(attr.images, attr.label_maps, maps, shares)):
        h, w = im.shape[:2]
        outline = np.isin(labels, top)
        mine = int(np.isin(top, labels).sum())
        picture = viz.map_image(im, values, outline=outline)
        figures.append(
            f'<div class="panels image-row"><figure>{_img(im, f"input {name(i)}")}'
            f"<figcaption>input {_e(name(i))}, {w}×{h} px</figcaption></figure>"
            f"<figure>{_img(picture, f'map of {name(i)}')}"
            f"<figcaption><b>{_e(name(i))}</b>: {share['score_share']:.1%} of the map, "
            f"{share['gain_share']:.1%} of the objective's gains, {share['top_k_share']:.0%} of the "
            f"{_count(share['top_k'], 'top region', 'top {} regions')}; best rank {share['best_rank']} (0 = first of "
            f"the ordering); {_count(share['n_regions'], '1 region', '{} regions')}, {share['area']:.0%} of the total "
            f"{unit} area; "
            f"{outlined_text(mine)}.</figcaption></figure></div>"
        )
    if len(top):
        area = float(np.isin(np.asarray(attr.labels), top).mean())
        outlined = (
            f"{ring}outlined: the top {len(top)} of {n} regions of the joint ordering ({area:.0%} of the total "
            f"{unit} area), in whichever {unit} they lie"
        )
        if np.array_equal(np.asarray(attr.ordering)[: len(top)], top):
            _, y = attr.insertion_curve()
            outlined += f"; shown alone: p = {float(y[len(top)]):.2f} (all {unit}s: {float(attr.p_full.mean()):.2f})"
    else:
        outlined = f"no outline: no region raises the score above the empty {unit}s"
    bar = (
        f'<div class="bar" style="background:{_gradient(None)}"></div>'
        f'<div class="barlabels"><span>0: no gain</span><span>1: as much as the top region of all {unit}s</span></div>'
        f'<div class="barname">{_e(viz.map_label(attr).replace(chr(10), " "))}</div>'
        f'<p class="muted">Each map is drawn over its greyed image, all on ONE scale: a region\'s marginal gain of '
        f"the objective (insight + necessity) when the search added it, relative to the top region of all {unit}s; "
        f"the regions of every {unit} are ranked in one ordering. {outlined}.</p>"
    )
    xi, yi = attr.insertion_curve()
    xd, yd = attr.deletion_curve()
    curves = _svg_curves(
        [
            (f"insertion (AUC {attr.insertion_auc():.3f})", xi, yi, viz.INSERTION_COLOR, False),
            (f"deletion (AUC {attr.deletion_auc():.3f})", xd, yd, viz.DELETION_COLOR, True),
        ],
        xlabel=type(attr).x_axis,
        title="mean over explained tokens",
    )
    panels = f'<div class="panels"><div class="multi-maps">{"".join(figures)}{bar}</div><figure>{curves}</figure></div>'

    share_header = [unit, "size", "regions", "area", "score_share", "gain_share", "top_k_share", "best_rank"]
    share_rows = [
        [
            name(s["image"]),
            f"{im.shape[1]}×{im.shape[0]}",
            s["n_regions"],
            s["area"],
            s["score_share"],
            s["gain_share"],
            f"{s['top_k_share']:.3f} (top {s['top_k']})",
            s["best_rank"],
        ]
        for s, im in zip(shares, attr.images)
    ]
    share_table = (
        _table(share_header, share_rows) + f"<p class=\"muted\">score_share: the {unit}'s part of the map's mass; "
        "gain_share: its part of the positive objective gains; top_k_share: its part of the first regions of the "
        "ordering; best_rank: the rank of its highest region (0 = first); area: its share of all pixels (what a "
        "share would be with no preference).</p>"
    )

    header = [
        "token",
        "position",
        "p(full)",
        "p(blank)",
        "p(full) − p(blank)",
        "insertion AUC ↑",
        "deletion AUC ↓",
        "highest confidence",
    ]
    rows = [
        [
            "mean (joint)",
            "",
            float(attr.p_full.mean()),
            float(attr.p_blank.mean()),
            float(attr.p_full.mean() - attr.p_blank.mean()),
            attr.insertion_auc(),
            attr.deletion_auc(),
            attr.highest_confidence(),
        ]
    ]
    for j, pos in enumerate(attr.positions):
        rows.append(
            [
                _display_token(gen.tokens[pos]),
                pos,
                float(attr.p_full[j]),
                float(attr.p_blank[j]),
                float(attr.p_full[j] - attr.p_blank[j]),
                attr.insertion_auc(j),
                attr.deletion_auc(j),
                attr.highest_confidence(j),
            ]
        )
    multi = attr.settings.get("multi_image", {}) if isinstance(attr.settings, Mapping) else {}
    run = {
        f"{unit}s": attr.n_images,
        "regions": f"{n} ({' + '.join(map(str, attr.n_regions_per_image))})",
        "forwards (candidates scored)": int(attr.forwards),
        "forward calls (batches)": attr.settings.get("forward_calls", "–"),
        "seconds": round(float(attr.seconds), 3),
        "search": attr.settings.get("search", "–"),
        "method": attr.settings.get("method", "–"),
        "scoring path": multi.get("scoring_path", "–"),
    }
    settings = (
        f"<details><summary>Settings</summary>{_kv_table(attr.settings)}</details>"
        f"<details><summary>Versions</summary>{_kv_table(attr.versions)}</details>"
    )
    what = f"a video of {attr.n_images} frames" if unit == "frame" else f"{attr.n_images} images in one prompt"
    return (
        f'<section class="expl multi" id="e{idx}">'
        f"<h2>{idx + 1}. “{_e(attr.target_text)}”{' (counterfactual)' if gen.counterfactual else ''} "
        f'<span class="muted">({_e(what)})</span></h2>'
        f'<dl class="meta">{meta_html}</dl>{panels}'
        f"<h3>Shares per {unit}</h3>{share_table}"
        f"<h3>Numbers</h3>{_table(header, rows)}{_kv_table(run)}{settings}</section>"
    )


def write_report(
    expl_or_list: Explanation | Sequence[Explanation], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Write ONE self-contained HTML page for an explanation (or several, one section each).

    A :class:`~mllm_attr.analysis.PromptAttribution` (prompt words, with or without an image:
    text-only models) gets a section of its own: the prompt with each word coloured by its
    score, the region map when there is an image, the curves over the fraction of features,
    the ranking and the numbers.

    So does a :class:`~mllm_attr.analysis.multi_image.MultiImageAttribution` (several images in
    one prompt): each input image and its map (all maps on one scale, the top regions of the
    joint ordering outlined in whichever image they lie) with that image's shares of the
    attribution, the curves over the fraction of the total image area, a table of the per-image
    shares and the numbers.

    Args:
        expl_or_list: an :class:`~mllm_attr.Explanation`, a ``PromptAttribution``, a
            ``MultiImageAttribution``, or a non-empty sequence of them (mixed kinds are fine).
        path: the ``.html`` file to write (replaced atomically; parent folders are created).
        title: page title (default: the explained words).
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        TypeError: something other than these results.
        ValueError: an empty list.
        IsADirectoryError: ``path`` is a folder.
    """
    from .explanation import AttributionResult, Explanation

    def reportable(e: Any) -> bool:
        return isinstance(e, Explanation) or (
            isinstance(e, AttributionResult) and (hasattr(e, "words") or hasattr(e, "image_shares"))
        )

    def section(e: Any, i: int) -> str:
        if isinstance(e, Explanation):
            return _section(e, i)
        return _multi_image_section(e, i) if hasattr(e, "image_shares") else _prompt_section(e, i)

    items = [expl_or_list] if isinstance(expl_or_list, AttributionResult) else expl_or_list
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(
            "expected an Explanation or a PromptAttribution or a MultiImageAttribution, or a list of them; "
            f"got {type(expl_or_list).__name__}"
        )
    if not items:
        raise ValueError("expected at least one Explanation; got an empty list")
    for i, e in enumerate(items):
        if not reportable(e):
            raise TypeError(
                f"item {i} is a {type(e).__name__}; expected an Explanation or a PromptAttribution or a "
                "MultiImageAttribution"
            )
    if title is None:
        title = f"Explanation: {items[0].target_text}" if len(items) == 1 else f"{len(items)} explanations"
    nav = ""
    if len(items) > 1:
        nav = (
            "<nav>"
            + "".join(f'<a href="#e{i}:joint">{i + 1}. {_e(e.target_text)}</a>' for i, e in enumerate(items))
            + "</nav>"
        )
    body = nav + "".join(section(e, i) for i, e in enumerate(items))
    subtitle = (
        "Click a highlighted token to see its own map and curves; the joint map ranks regions for all explained tokens."
    )
    out = _write_atomic(path, _page(title, body, subtitle))
    logger.info("wrote report %s", out)
    return out


# -- benchmark report --------------------------------------------------------------------------


def write_benchmark_report(
    summary_rows: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    settings: Mapping[str, Any] | None = None,
    figures: Mapping[str, Any] | None = None,
) -> Path:
    """Write ONE self-contained HTML page for a benchmark run: table, curves, settings.

    Args:
        summary_rows: one mapping per row (e.g. per method), column name -> value; the columns
            are the union of the keys in first-seen order; floats are shown with 3 decimals.
        curves: method -> ``{"insertion": (x, y) or y, "deletion": (x, y) or y}``: mean curves
            (``y`` alone is put on ``x = linspace(0, 1)``); may be empty.
        path: the ``.html`` file to write (atomically).
        title: page title (default "Benchmark report").
        settings: run settings shown as a table (dataset, model, budgets, ...).
        figures: caption -> ``matplotlib`` figure or ``uint8[H, W, 3]`` image, embedded as PNGs
            (e.g. :func:`mllm_attr.viz.plot_methods` examples).
    """
    if isinstance(summary_rows, Mapping) or not isinstance(summary_rows, Sequence):
        raise TypeError(f"summary_rows must be a list of dicts; got {type(summary_rows).__name__}")
    for i, row in enumerate(summary_rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"summary_rows[{i}] is a {type(row).__name__}; expected a dict of column -> value")
    if not isinstance(curves, Mapping):
        raise TypeError(
            f"curves must be a dict: method -> {{'insertion': ..., 'deletion': ...}}; got {type(curves).__name__}"
        )
    columns: list[str] = []
    for row in summary_rows:
        for key in row:
            if key not in columns:
                columns.append(str(key))
    table = (
        _table(columns, [[row.get(c, "") for c in columns] for row in summary_rows])
        if summary_rows
        else '<p class="muted">no rows</p>'
    )
    plots = ""
    if curves:
        panels = {"insertion": [], "deletion": []}
        for i, (name, c) in enumerate(curves.items()):
            if not isinstance(c, Mapping):
                raise TypeError(f"curves[{name!r}] must be a dict with 'insertion'/'deletion'; got {type(c).__name__}")
            unknown = set(c) - set(panels)
            if unknown:
                raise ValueError(
                    f"curves[{name!r}] has unknown key(s) {sorted(unknown)}; expected 'insertion'/'deletion'"
                )
            colour = viz.OKABE_ITO[i % len(viz.OKABE_ITO)]
            for key in panels:
                if key in c:
                    x, y = viz._as_curve(c[key], f"curves[{name!r}][{key!r}]")
                    panels[key].append((f"{name} (AUC {viz._auc(x, y):.3f})", x, y, colour, key == "deletion"))
        xlabels = {"insertion": "fraction of image inserted", "deletion": "fraction of image deleted"}
        figs = [
            _svg_curves(series, xlabel=xlabels[key], title=f"{key} (mean)", width=440, height=280)
            for key, series in panels.items()
            if series
        ]
        plots = '<div class="panels">' + "".join(f"<figure>{svg}</figure>" for svg in figs) + "</div>"
    extra = ""
    for caption, fig in (figures or {}).items():
        arr = fig if isinstance(fig, np.ndarray) else viz.figure_to_rgb(fig, dpi=110)
        extra += (
            f'<figure><img class="pic" style="width:auto;max-width:100%" alt="{_e(caption)}" '
            f'src="{_data_uri(viz.png_bytes(arr))}"><figcaption>{_e(caption)}</figcaption></figure>'
        )
    body = f'<section class="bench"><h2>Summary</h2>{table}'
    if plots:
        body += f"<h3>Curves</h3>{plots}"
    if extra:
        body += f'<h3>Figures</h3><div class="panels">{extra}</div>'
    if settings:
        body += f"<h3>Settings</h3>{_kv_table(settings)}"
    body += "</section>"
    out = _write_atomic(path, _page(title or "Benchmark report", body, f"{len(summary_rows)} rows"))
    logger.info("wrote benchmark report %s", out)
    return out


__all__ = ["write_benchmark_report", "write_report"]
