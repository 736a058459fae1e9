"""The interactive explorer behind ``mllm-attr app``: upload an image, type a prompt, click a
generated token, see its map, its insertion / deletion curves and its modality label.

Two layers:

* :class:`Explorer`, plain Python on top of the library (no Gradio): :meth:`Explorer.generate`
  answers a prompt and labels every answer token by the cheap modality path
  (:func:`~mllm_attr.analysis.analyze_modality`, 2 forwards); :meth:`Explorer.explain` runs the
  :class:`~mllm_attr.Explainer` on one clicked token (:class:`~mllm_attr.targets.Positions`)
  and draws it with the toolkit's own figures (:func:`~mllm_attr.viz.plot_heatmap`,
  :func:`~mllm_attr.viz.plot_curves`), with the token's full-path modality
  (:func:`~mllm_attr.analysis.modality.modality_from_explanation`) and a summary line.
* :func:`build_app`, the Gradio page wired to those two methods (Gradio is the optional extra
  ``pip install "mllm-attr[app]"``; :func:`require_gradio` says so when it is missing), and
  :func:`launch`, which serves it with Gradio's analytics and version check off, no share
  link and no server-side rendering: nothing leaves the machine.

A user error (no image, an empty prompt, no token picked) is shown on the page as a message,
never as a traceback.

Example:
    >>> from mllm_attr import load_adapter                                         # doctest: +SKIP
    >>> from mllm_attr.app import Explorer, launch                                 # doctest: +SKIP
    >>> launch(Explorer(load_adapter("shapes-llava"), n_regions=25), port=7860)    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .analysis.modality import LABELS, ModalityReport, TokenModality, analyze_modality, modality_from_explanation
from .image import load_image
from .types import Generation

if TYPE_CHECKING:  # pragma: no cover
    from .adapters.base import ModelAdapter
    from .explanation import Explanation

logger = logging.getLogger(__name__)

#: What to install when Gradio is missing (the one-line error of ``mllm-attr app`` names it).
INSTALL_HINT = 'pip install "mllm-attr[app]"'
DEFAULT_PROMPT = "Describe the image."
#: Region count of the explorer (the CLI's ``--n-regions`` default for ``app``): a few seconds
#: per token on the embedded model with one CPU thread.
DEFAULT_N_REGIONS = 25
#: Environment that keeps Gradio off the network: no analytics, no version check.
OFFLINE_ENV: dict[str, str] = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
#: Errors that are the user's input, shown on the page as one message.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, FileNotFoundError)


class ExplorerInputError(ValueError):
    """Something missing or wrong in what the user gave the page (no image, an empty prompt, ...)."""


def require_gradio() -> Any:
    """Import Gradio with analytics off (:data:`OFFLINE_ENV`); ``ImportError`` naming the extra when it is missing."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # never on, whatever the caller's environment says
    try:
        import gradio as gr
    except ImportError as exc:
        raise ImportError(f"the explorer needs Gradio, which is not installed: {INSTALL_HINT}") from exc
    return gr


# -- plain Python: what the page shows ------------------------------------------------------------


@dataclass
class Answer:
    """A generated answer, the pixels it was generated on and the cheap modality of each token.

    Attributes:
        generation: the model's answer (it records the hash of ``image``).
        image: ``uint8[H, W, 3]``: the pixels the model saw.
        modality: :func:`~mllm_attr.analysis.analyze_modality` of every answer token (2 forwards).
    """

    generation: Generation
    image: np.ndarray
    modality: ModalityReport

    @property
    def positions(self) -> list[int]:
        """The token positions that can be explained (special tokens such as EOS left out)."""
        return [i for i, special in enumerate(self.generation.special) if not special]

    def label(self, position: int) -> str | None:
        """The cheap-path modality label of the token at ``position`` (None when not analysed)."""
        row = next((t for t in self.modality.tokens if position in t.positions), None)
        return None if row is None else row.label

    def spans(self) -> list[tuple[str, str | None]]:
        """``(token text, modality label)`` per explainable token, in answer order (Gradio's
        ``HighlightedText`` value; span ``i`` is token ``positions[i]``)."""
        return [(self.generation.tokens[p], self.label(p)) for p in self.positions]

    def choices(self) -> list[tuple[str, int]]:
        """``(display, position)`` per explainable token: the radio buttons of the page."""
        return [(f"{p}: {_shown(self.generation.tokens[p])}", p) for p in self.positions]


@dataclass
class TokenView:
    """One explained token as the page shows it.

    Attributes:
        explanation: the :class:`~mllm_attr.Explanation` of the token (one target position).
        modality: its full-path modality (insertion AUC, visual reliance, evidence regions).
        map_rgb: ``uint8[H, W, 3]``: :func:`~mllm_attr.viz.plot_heatmap` of the token.
        curves_rgb: ``uint8[H, W, 3]``: :func:`~mllm_attr.viz.plot_curves` of the token.
    """

    explanation: Explanation
    modality: TokenModality
    map_rgb: np.ndarray
    curves_rgb: np.ndarray

    @property
    def summary(self) -> str:
        """One line: the token, both AUCs, the regions, the forwards and the seconds."""
        e = self.explanation
        return (
            f"token {e.positions[0]} {_shown(e.target_tokens[0])}: insertion AUC {e.insertion_auc():.3f} (higher is "
            f"better), deletion AUC {e.deletion_auc():.3f} (lower is better), highest confidence "
            f"{e.highest_confidence():.3f}; {e.n_regions} regions, {int(e.forwards)} forwards in "
            f"{float(e.seconds):.1f} s"
        )

    @property
    def modality_text(self) -> str:
        """The token's modality label and the numbers behind it (Markdown)."""
        m = self.modality
        text = (
            f"**{m.label}**: p(token | full image) = {m.p_full:.3f}, p(token | no image evidence) = {m.p_blank:.3f}; "
            f"the language prior carries {100 * m.prior_share:.0f} %, the image adds {100 * m.image_share:.0f} %"
        )
        if m.visual_reliance is not None:
            text += f"; visual reliance (insertion AUC - curve minimum) {m.visual_reliance:.3f}"
        return text


class Explorer:
    """The explorer's two actions on one model, without any user interface.

    Args:
        adapter: the model (:func:`~mllm_attr.load_adapter`).
        n_regions: requested regions of each explanation (the page can change it per click).
        search: the search (see :data:`mllm_attr.search.SEARCHES`; the page can change it).
        max_new_tokens: answer length.
        explainer_options: further :class:`~mllm_attr.Explainer` keywords (``segmenter``,
            ``fill``, ``lambda1``, ``lambda2``, ``batch_size``, ``max_forwards``, ``seed``,
            ``fast_path``, ...).
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        n_regions: int = DEFAULT_N_REGIONS,
        search: str = "greedy",
        max_new_tokens: int = 64,
        explainer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.adapter = adapter
        self.n_regions = int(n_regions)
        self.search = search
        self.max_new_tokens = int(max_new_tokens)
        self.explainer_options: dict[str, Any] = dict(explainer_options or {})

    def generate(self, image: Any, prompt: str | None) -> Answer:
        """Answer ``prompt`` about ``image`` (a path, PIL image or ``uint8`` array) and label its tokens.

        Raises:
            ExplorerInputError: no image, or an empty prompt.
        """
        if image is None:
            raise ExplorerInputError("no image: upload one (or use the example)")
        if prompt is None or not str(prompt).strip():
            raise ExplorerInputError("the prompt is empty: type a question or an instruction about the image")
        pixels = load_image(image).array
        gen = self.adapter.generate(pixels, str(prompt), max_new_tokens=self.max_new_tokens)
        modality = analyze_modality(self.adapter, pixels, gen, fill=self.explainer_options.get("fill", "black"))
        logger.info("generated %r for %r (%d tokens)", gen.text, prompt, len(gen.tokens))
        return Answer(generation=gen, image=pixels, modality=modality)

    def explain(
        self, answer: Answer | None, position: int | None, *, n_regions: int | None = None, search: str | None = None
    ) -> TokenView:
        """Explain the token at ``position`` of ``answer`` (on the pixels it was generated on).

        Raises:
            ExplorerInputError: no answer yet, no token picked, or a position outside the answer.
        """
        from .explainer import Explainer
        from .targets import Positions
        from .viz import _new_figure, _style, figure_to_rgb, plot_curves, plot_heatmap

        if answer is None:
            raise ExplorerInputError("no answer yet: press Generate first")
        if position is None:
            raise ExplorerInputError("no token picked: click a token of the answer")
        position = int(position)
        if position not in answer.positions:
            raise ExplorerInputError(f"token {position} is not an explainable token of the answer {answer.positions}")
        explainer = Explainer(
            self.adapter,
            n_regions=int(n_regions or self.n_regions),
            search=search or self.search,
            max_new_tokens=self.max_new_tokens,
            **self.explainer_options,
        )
        expl = explainer(answer.image, answer.generation, target=Positions((position,)))
        with _style():
            fig = _new_figure(4.4, 4.6)
            plot_heatmap(expl, fig.add_subplot())
            map_rgb = figure_to_rgb(fig, dpi=150)
            fig = _new_figure(4.4, 3.2)
            plot_curves(expl, fig.add_subplot(), token=0)
            curves_rgb = figure_to_rgb(fig, dpi=150)
        modality = modality_from_explanation(expl).tokens[0]
        logger.info("explained %r: %r", expl.target_text, expl)
        return TokenView(explanation=expl, modality=modality, map_rgb=map_rgb, curves_rgb=curves_rgb)


def _shown(token: str) -> str:
    """A token as a label: quoted, with its leading space visible as a quote boundary."""
    return repr(token)


def _error_text(exc: BaseException) -> str:
    """The page's error message (Markdown): the message of a user error, the type of anything else."""
    if isinstance(exc, INPUT_ERRORS):
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return f"**Error:** {msg}"
    return f"**Error:** {type(exc).__name__}: {exc} (details in the server log)"


# -- the Gradio page --------------------------------------------------------------------------------

_CSS = """
#input-image img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
#status p { margin: 0; }
"""


def build_app(explorer: Explorer, *, example_image: str | None = None, prompt: str = DEFAULT_PROMPT) -> Any:
    """The explorer's Gradio ``Blocks`` (not launched): image, prompt, Generate, the answer as
    clickable tokens coloured by modality, the options, and the map, curves, modality label and
    summary of the clicked token.

    Args:
        explorer: the model and the explanation settings.
        example_image: the image shown first and offered as an example (default: the shipped scene).
        prompt: the prompt shown first.
    """
    gr = require_gradio()
    from .assets import example_image_path
    from .search import SEARCHES
    from .viz import modality_palette

    example = str(example_image or example_image_path())
    palette = modality_palette(LABELS)

    def on_generate(image: Any, text: str) -> tuple[Any, ...]:
        try:
            answer = explorer.generate(image, text)
        except Exception as exc:  # noqa: BLE001 - shown on the page, logged with its traceback
            _log(exc)
            return (None, None, gr.update(choices=[], value=None), _error_text(exc), *_cleared())
        status = f"Answer: **{answer.generation.text.strip()}**. Click a token to see its map."
        return (answer, answer.spans(), gr.update(choices=answer.choices(), value=None), status, *_cleared())

    def on_explain(answer: Answer | None, position: int | None, n_regions: float, search: str) -> tuple[Any, ...]:
        try:
            view = explorer.explain(answer, position, n_regions=int(n_regions), search=search)
        except Exception as exc:  # noqa: BLE001 - shown on the page, logged with its traceback
            _log(exc)
            return (_error_text(exc), *_cleared())
        e = view.explanation
        status = f"Explained token {e.positions[0]} {_shown(e.target_tokens[0])}: **{view.modality.label}**."
        return (status, view.map_rgb, view.curves_rgb, view.modality_text, view.summary)

    def on_pick(answer: Answer | None, evt: gr.SelectData) -> Any:
        if answer is None or evt.index is None:
            return gr.update()
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        positions = answer.positions
        return gr.update(value=positions[int(index)]) if 0 <= int(index) < len(positions) else gr.update()

    # Gradio finds the event-data argument by its annotation, evaluated: ``gr`` is local here.
    on_pick.__annotations__ = {"answer": Any, "evt": gr.SelectData, "return": Any}

    def _cleared() -> tuple[Any, ...]:
        return (None, None, "", "")

    with gr.Blocks(title="mllm-attr explorer", analytics_enabled=False) as demo:
        gr.Markdown(
            "## mllm-attr explorer\nWhich image regions made the model say this token, and how much came from the "
            "image at all (EAGLE attribution, black-box)."
        )
        answer_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    value=example,
                    type="numpy",
                    image_mode="RGB",
                    sources=["upload", "clipboard"],
                    label="Image",
                    height=260,
                    elem_id="input-image",
                )
                gr.Examples(examples=[[example]], inputs=[image], label="Example")
                text = gr.Textbox(value=prompt, label="Prompt", lines=1, elem_id="prompt")
                generate = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Accordion("Options", open=False):
                    n_regions = gr.Slider(
                        2, 200, value=explorer.n_regions, step=1, label="Regions (requested)", elem_id="n-regions"
                    )
                    search = gr.Dropdown(sorted(SEARCHES), value=explorer.search, label="Search", elem_id="search")
            with gr.Column(scale=2):
                status = gr.Markdown("Press Generate, then click a token of the answer.", elem_id="status")
                answer = gr.HighlightedText(
                    label="Answer (click a token; colour: modality from the full and the blank image)",
                    color_map=palette,
                    show_legend=True,
                    combine_adjacent=False,
                    interactive=False,
                    elem_id="answer",
                )
                tokens = gr.Radio(choices=[], label="Token to explain", elem_id="tokens")
                explain = gr.Button("Explain the selected token", elem_id="explain")
                with gr.Row():
                    heatmap = gr.Image(label="Map", type="numpy", interactive=False, elem_id="map", height=440)
                    curves = gr.Image(label="Insertion / deletion", type="numpy", interactive=False, elem_id="curves")
                modality = gr.Markdown(elem_id="modality")
                summary = gr.Markdown(elem_id="summary")

        shown = [heatmap, curves, modality, summary]
        explain_inputs = [answer_state, tokens, n_regions, search]
        gen_event: dict[str, Any] = {
            "fn": on_generate,
            "inputs": [image, text],
            "outputs": [answer_state, answer, tokens, status, *shown],
        }
        generate.click(**gen_event)
        text.submit(**gen_event)
        tokens.input(on_explain, inputs=explain_inputs, outputs=[status, *shown])
        explain.click(on_explain, inputs=explain_inputs, outputs=[status, *shown])
        answer.select(on_pick, inputs=[answer_state], outputs=[tokens]).then(
            on_explain, inputs=explain_inputs, outputs=[status, *shown]
        )
    return demo


def _log(exc: BaseException) -> None:
    if isinstance(exc, INPUT_ERRORS):
        logger.info("explorer: %s: %s", type(exc).__name__, exc)
    else:
        logger.error("explorer: unexpected error", exc_info=exc)


def launch(
    explorer: Explorer,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> Any:
    """Serve :func:`build_app` at ``http://host:port/`` (Gradio picks a free port from 7860 when
    ``port`` is None): no share link, no analytics, no server-side rendering, the API page off.

    Returns the launched ``Blocks`` (``prevent_thread_lock=True`` returns at once; ``.close()`` stops it).
    """
    gr = require_gradio()
    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=1)  # one explanation at a time: the model is shared
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        show_error=False,
        footer_links=[],
        run_history=False,
        mcp_server=False,
        quiet=quiet,
        prevent_thread_lock=prevent_thread_lock,
        css=_CSS,
        theme=gr.themes.Default(),
    )
    return demo


__all__ = [
    "Answer",
    "DEFAULT_N_REGIONS",
    "Explorer",
    "ExplorerInputError",
    "INSTALL_HINT",
    "TokenView",
    "build_app",
    "launch",
    "require_gradio",
]
