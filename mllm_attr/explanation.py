"""The :class:`Explanation` result: arrays, curves, metrics, settings; save and load.

:class:`AttributionResult` is the base of every result that orders features of one
explanation (ordering, curves, AUCs, settings, summary, save/load): :class:`Explanation` orders
image regions, :class:`~mllm_attr.analysis.prompt_tokens.PromptAttribution` image regions and
prompt words. Their curves run over different x axes (:attr:`AttributionResult.x_axis`).

On disk (a directory, the same layout for every result type):

- ``explanation.json``: everything human-readable (text, tokens, positions, AUCs,
  forwards, seconds, settings, versions, curves as lists; ``result_type`` says which result
  class wrote it, and its ``load`` refuses another type);
- ``saliency.npy``: ``float32[H, W]`` in ``[0, 1]``, the size of the explained image;
- ``arrays.npz``: image, label map, ordering, per-token curves (loaded with
  ``allow_pickle=False``); the words of a prompt-word attribution are in the JSON;
- ``heatmap.png``: the saliency overlaid on the image, titled with the explained words.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from . import metrics
from .types import Generation

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .search import SearchResult

SCHEMA_VERSION = 1
logger = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    """Versions of the packages that determine a result."""
    from ._version import __version__

    out = {"mllm_attr": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "transformers", "skimage", "PIL"):
        try:
            m = __import__(mod)
            out["scikit-image" if mod == "skimage" else ("pillow" if mod == "PIL" else mod)] = str(m.__version__)
        except Exception:  # noqa: BLE001 - a missing optional package is just not reported
            pass
    return out


#: rank -> value rules of :func:`region_values` (the first is the default).
MAP_RULES: tuple[str, ...] = ("evidence", "reference")


def region_values(ordering: np.ndarray, value: np.ndarray, f0: float, rule: str = "evidence") -> np.ndarray:
    """Per-region attribution in ``[0, 1]`` from the ordering and the objective of each prefix.

    With ``g_t = F_t − F_{t−1}`` the marginal gain of the region at rank ``t`` (``F_0 = f0``, the
    objective of the empty set, so the first region's own gain counts):

    * ``"evidence"`` (default): ``v_t = ĝ_t / ĝ_1``, where ``ĝ`` is the non-increasing
      least-squares fit (isotonic regression) to the clipped gains ``max(g_t, 0)``. A region's
      value is its own marginal contribution relative to the top region's, smoothed only where
      a later region gained more than an earlier one. When one region carries the objective,
      it alone is bright. All zeros (up to the tie-break) when no region gained anything.
    * ``"reference"``: the research code's rule, ``v_t = −Σ_{s≤t} |g_s|`` (the value is taken
      AFTER subtracting the region's own gain), min-max normalised. Kept for comparison with
      published figures: the first region's gain vanishes, so most regions end up near 1.

    Both add a tie-break of ``1e-6 · (n − 1 − t) / (n − 1)`` (relative), so values strictly
    decrease with rank and the map keeps the ordering (curves and pointing game unchanged)
    even where steps gained exactly the same.

    Args:
        ordering: ``int[n]`` region ids, most important first.
        value: ``float[n]`` objective of each prefix (``value[t]`` after ``t + 1`` regions).
        f0: objective of the empty prefix.
        rule: one of :data:`MAP_RULES`.

    Returns:
        ``float64[n]`` indexed by region id.
    """
    if rule not in MAP_RULES:
        raise ValueError(f"unknown map rule {rule!r}; expected one of {list(MAP_RULES)}")
    n = len(ordering)
    gains = np.diff(np.concatenate([[float(f0)], np.asarray(value, dtype=np.float64)]))
    ramp = 1e-6 * (np.arange(n - 1, -1, -1) / max(n - 1, 1))
    if rule == "reference":
        abs_gains = np.abs(gains)
        eps = max(float(abs_gains.sum()), 1.0) * 1e-6
        v = -np.cumsum(abs_gains + eps)
        v = (v - v.min()) / (v.max() - v.min()) if n > 1 else np.ones(1)
    else:
        from scipy.optimize import isotonic_regression

        fit = isotonic_regression(np.maximum(gains, 0.0), increasing=False).x if n > 1 else np.maximum(gains, 0.0)
        top = float(fit[0])
        v = (fit / top if top > 0 else np.zeros(n)) * (1.0 - 1e-6) + ramp
    out = np.empty(n)
    out[np.asarray(ordering, dtype=np.int64)] = v
    return out


_R = TypeVar("_R", bound="AttributionResult")

#: ``insertion`` / ``deletion``: the two curve kinds of :meth:`AttributionResult.curve`.
CURVE_KINDS: tuple[str, ...] = ("insertion", "deletion")


class AttributionResult:
    """Common base of the results that order the features of one explanation by the EAGLE objective.

    Features are the ``n`` image regions of ``labels`` (ids ``0..n-1``), possibly followed by
    features of another kind (:class:`~mllm_attr.analysis.prompt_tokens.PromptAttribution`: the
    prompt words). The base holds what does not depend on the kind of feature: validation,
    the ordering and its ranks, the insertion / deletion curves and their AUCs over
    :meth:`curve_x`, the objective and per-feature scores, :meth:`summary`, :meth:`to_json`,
    and :meth:`save` / :meth:`load` (the directory format of the module docstring).

    Each subclass is a dataclass declaring these common fields (in its own order) plus its own:

    Attributes:
        image: ``uint8[H, W, 3]`` RGB image that was explained.
        labels: ``int32[H, W]`` region label map (``n_regions`` regions).
        ordering: ``int64[N]`` features, most important first (``N = n_features``).
        ins: ``float64[N, K]`` per-token insertion scores of each prefix.
        dele: ``float64[N, K]`` per-token deletion scores of each prefix.
        value: ``float64[N]`` objective of each prefix.
        p_full: ``float64[K]`` per-token probability with every feature present.
        p_blank: ``float64[K]`` per-token probability with every feature removed.
        generation: the answer whose tokens are explained.
        positions: explained token positions (0-based, into ``generation``).
        forwards: images scored; seconds: wall time.
        settings: every option used; versions: package versions.

    What the curves' x axis measures differs by subclass and is named by :attr:`x_axis`: the
    revealed fraction of the image AREA for :class:`Explanation` (a region advances ``x`` by its
    share of the pixels), the revealed fraction of FEATURES for a prompt-word attribution (every
    region and every word advances ``x`` by ``1 / N``). AUCs of different kinds are therefore not
    comparable; :meth:`summary` names them accordingly (:attr:`auc_names`).
    """

    #: the kind of result, written as ``result_type`` into ``explanation.json``; :meth:`load` refuses another.
    result_type: ClassVar[str] = ""
    #: what the x axis of :meth:`curve` (and so of :meth:`auc`) measures.
    x_axis: ClassVar[str] = ""
    #: keys of the insertion and deletion AUCs in :meth:`summary` and :meth:`to_json`.
    auc_names: ClassVar[tuple[str, str]] = ("insertion_auc", "deletion_auc")
    #: how error messages name the result.
    _noun: ClassVar[str] = "result"
    #: real-valued array fields (validated, stored as float64, saved in ``arrays.npz``).
    _float_fields: ClassVar[tuple[str, ...]] = ("ins", "dele", "value", "p_full", "p_blank")
    #: keys ``explanation.json`` must hold for :meth:`load`.
    _meta_keys: ClassVar[tuple[str, ...]] = ("generation", "target_positions", "forwards", "seconds")

    image: np.ndarray
    labels: np.ndarray
    ordering: np.ndarray
    ins: np.ndarray
    dele: np.ndarray
    value: np.ndarray
    p_full: np.ndarray
    p_blank: np.ndarray
    generation: Generation
    positions: list[int]
    forwards: int
    seconds: float
    settings: dict[str, Any]
    versions: dict[str, str]

    # -- validation ----------------------------------------------------------------------------
    def __post_init__(self) -> None:
        name = type(self).__name__
        if not isinstance(self.generation, Generation):
            raise TypeError(f"{name}.generation must be a Generation; got {type(self.generation).__name__}")
        arrays = {f: np.asarray(getattr(self, f)) for f in ("image", "labels", "ordering", *self._float_fields)}
        if arrays["labels"].ndim != 2 or not np.issubdtype(arrays["labels"].dtype, np.integer):
            raise ValueError(
                f"{name}.labels must be an integer [H, W] label map; got {arrays['labels'].dtype} "
                f"shape {arrays['labels'].shape}"
            )
        if arrays["image"].dtype != np.uint8:
            raise ValueError(f"{name}.image must be uint8 RGB; got {arrays['image'].dtype}")
        if arrays["ordering"].ndim != 1 or not np.issubdtype(arrays["ordering"].dtype, np.integer):
            raise ValueError(f"{name}.ordering must be a 1-D integer array; got {arrays['ordering'].dtype}")
        for f in self._float_fields:
            if not np.issubdtype(arrays[f].dtype, np.number) or np.issubdtype(arrays[f].dtype, np.complexfloating):
                raise ValueError(f"{name}.{f} must be a real numeric array; got {arrays[f].dtype}")
        n = len(arrays["ordering"])
        k = len(self.positions)
        h, w = arrays["labels"].shape
        checks = {"image": (arrays["image"].shape, (h, w, 3))}
        for f in self._float_fields:
            want = (n, k) if f in ("ins", "dele") else (k,) if f in ("p_full", "p_blank") else (n,)
            checks[f] = (arrays[f].shape, want)
        for f, (got, want) in checks.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"{name}.{f} has shape {tuple(got)}; expected {want}")
        empty = h * w == 0 or int(arrays["labels"].min()) < 0
        if empty or n != int(arrays["labels"].max()) + 1 + self._n_other_features():
            raise ValueError(self._count_error(n, arrays["labels"]))
        if sorted(arrays["ordering"].tolist()) != list(range(n)):
            raise ValueError(f"{name}.ordering must contain each of the {n} {self._feature_noun()} exactly once")
        m = len(self.generation)
        if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < m for p in self.positions):
            raise ValueError(f"{name}.positions {list(self.positions)} must be token positions in [0, {m})")
        self._check_more(h, w)
        self.image, self.labels, self.ordering = arrays["image"], arrays["labels"], arrays["ordering"].astype(np.int64)
        for f in self._float_fields:
            setattr(self, f, arrays[f].astype(np.float64))

    def _n_other_features(self) -> int:
        """Features after the regions (0 for image regions only)."""
        return 0

    def _feature_noun(self) -> str:
        return "features"

    def _count_error(self, n: int, labels: np.ndarray) -> str:
        return (
            f"ordering has {n} features but the label map holds labels {np.unique(labels)[:8]}... "
            f"and there are {self._n_other_features()} other features"
        )

    def _check_more(self, h: int, w: int) -> None:
        """Subclass checks run after the common ones (before the arrays are converted)."""

    # -- selection -----------------------------------------------------------------------------
    @property
    def n_regions(self) -> int:
        """Number of image regions (the largest label plus one)."""
        return int(np.asarray(self.labels).max()) + 1

    @property
    def n_features(self) -> int:
        """Number of ordered features ``N`` (regions, plus any features of another kind)."""
        return len(self.ordering)

    @property
    def target_tokens(self) -> list[str]:
        """The display string of each explained token, in position order."""
        return [self.generation.tokens[p] for p in self.positions]

    @property
    def target_text(self) -> str:
        """The explained words as they appear in the answer."""
        spans = [
            self.generation.spans[p]
            for p in self.positions
            if self.generation.spans[p][1] > self.generation.spans[p][0]
        ]
        if not spans:
            return "".join(self.target_tokens)
        return self.generation.text[min(s for s, _ in spans) : max(e for _, e in spans)].strip()

    def ranks(self) -> np.ndarray:
        """``int64[N]``: 0-based rank of each feature (0 = most important)."""
        r = np.empty(self.n_features, dtype=np.int64)
        r[self.ordering] = np.arange(self.n_features)
        return r

    def _tok(self, arr: np.ndarray, token: int | None) -> np.ndarray:
        if token is None:
            return arr.mean(axis=-1)
        if not -len(self.positions) <= token < len(self.positions):
            raise IndexError(f"token {token} out of range for {len(self.positions)} explained tokens")
        return arr[..., token]

    # -- curves and metrics --------------------------------------------------------------------
    def curve_x(self) -> np.ndarray:
        """``float64[N]``: the x value after each step of the ordering (:attr:`x_axis`; the last is 1)."""
        raise NotImplementedError(f"{type(self).__name__} defines no curve x axis")

    def curve(self, kind: str, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of the ``"insertion"`` or ``"deletion"`` curve; ``x`` is :attr:`x_axis`
        (from 0), ``y`` the probability; ``token`` picks one explained token (default: the mean)."""
        x = self.curve_x()
        if kind == "insertion":
            return metrics.insertion_curve(x, self._tok(self.ins, token), float(self._tok(self.p_blank, token)))
        if kind == "deletion":
            return metrics.deletion_curve(x, self._tok(self.dele, token), float(self._tok(self.p_full, token)))
        raise ValueError(f"unknown curve kind {kind!r}; expected one of {list(CURVE_KINDS)}")

    def auc(self, kind: str, token: int | None = None) -> float:
        """Area under :meth:`curve` ``kind`` over :attr:`x_axis` (insertion: higher is better; deletion: lower)."""
        return metrics.auc(*self.curve(kind, token))

    def highest_confidence(self, token: int | None = None) -> float:
        """Maximum of the insertion curve."""
        return float(self.curve("insertion", token)[1].max())

    def value_empty(self) -> float:
        """Objective value of the empty subset: ``lambda1 * mean(p_blank) + lambda2 * (1 - mean(p_full))``."""
        lam1 = float(self.settings.get("lambda1", 1.0))
        lam2 = float(self.settings.get("lambda2", 1.0))
        return lam1 * float(self.p_blank.mean()) + lam2 * (1.0 - float(self.p_full.mean()))

    def objective_curve(self, token: int | None = None) -> tuple[float, np.ndarray]:
        """``(F_0, F[N])``: the objective of the empty prefix and of every prefix of the ordering,
        for the token mean (``token=None``) or one explained token (its own insight + necessity)."""
        lam1 = float(self.settings.get("lambda1", 1.0))
        lam2 = float(self.settings.get("lambda2", 1.0))
        if token is None:
            return self.value_empty(), self.value
        ins, dele = self._tok(self.ins, token), self._tok(self.dele, token)
        f0 = lam1 * float(self._tok(self.p_blank, token)) + lam2 * (1.0 - float(self._tok(self.p_full, token)))
        return f0, lam1 * ins + lam2 * (1.0 - dele)

    def feature_scores(self, *, rule: str = "evidence", token: int | None = None) -> np.ndarray:
        """``float64[N]``: per-feature attribution in ``[0, 1]``, strictly decreasing with rank.

        ``rule`` is ``"evidence"`` (each feature's marginal gain from the empty set, relative to
        the top feature's) or ``"reference"`` (the research code's rule); see :func:`region_values`.
        ``token`` picks one explained token's own objective (default: the token mean).
        """
        f0, value = self.objective_curve(token)
        return region_values(self.ordering, value, f0, rule)

    def region_scores(self, *, rule: str = "evidence", token: int | None = None) -> np.ndarray:
        """``float64[n_regions]``: the image regions' part of :meth:`feature_scores`."""
        return self.feature_scores(rule=rule, token=token)[: self.n_regions]

    def saliency(self, *, rule: str = "evidence", token: int | None = None) -> np.ndarray:
        """``float32[H, W]`` in ``[0, 1]``: :meth:`region_scores` painted on the label map."""
        return self.region_scores(rule=rule, token=token)[self.labels].astype(np.float32)

    # -- display -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line: the class, the explained words, the answer, the feature counts, the AUCs and
        the forwards (never array contents)."""
        from .viz import short_text as _clip

        ins_name, del_name = self.auc_names
        counts = ", ".join(f"{k.removeprefix('n_')}={v}" for k, v in self._counts().items())
        return (
            f"{type(self).__name__}(target={_clip(self.target_text, 48)!r}, "
            f"answer={_clip(self.generation.text, 48)!r}, "
            f"{counts}, {ins_name}={self.auc('insertion'):.3f}, {del_name}={self.auc('deletion'):.3f}, "
            f"forwards={int(self.forwards)})"
        )

    def plot(self, token: int | None = None, ax: Axes | None = None, **kw: Any) -> Figure:
        """The map over the greyed image with the top regions outlined, titled with the explained
        words and the answer, with a labelled colour bar (:func:`mllm_attr.viz.plot_heatmap`;
        ``kw`` are its options, e.g. ``rule="reference"``, ``outline=False``).

        Args:
            token: index into the explained tokens: that token's own map (default: the joint map).
            ax: axes to draw on (default: a new figure).
        Returns:
            The figure (in Jupyter a returned figure displays itself).
        """
        from .viz import plot_heatmap

        return plot_heatmap(self, ax, token=token, **kw).figure

    def show(self, token: int | None = None, **kw: Any) -> None:
        """Display :meth:`plot` (inline in Jupyter, else in a matplotlib window)."""
        from .viz import show_figure

        show_figure(self.plot(token, **kw))

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the map (an inline PNG), the explained tokens, the answer and
        the headline numbers."""
        from .viz import html_card
        from .viz import short_text as _clip

        gen = self.generation
        ins_name, del_name = self.auc_names
        rows: list[tuple[str, Any]] = [("prompt", _clip(gen.prompt, 120))]
        if gen.counterfactual:
            rows.append(("generated", _clip(gen.generated_text or "", 120)))
        rows += [
            ("counterfactual answer" if gen.counterfactual else "answer", _clip(gen.text, 120)),
            ("explained", _clip(f"{self.target_text!r} (tokens {', '.join(map(str, self.positions))})", 160)),
            *((k.removeprefix("n_"), v) for k, v in self._counts().items()),
            (ins_name.replace("_", " ") + " ↑", f"{self.auc('insertion'):.3f}"),
            (del_name.replace("_", " ") + " ↓", f"{self.auc('deletion'):.3f}"),
            ("highest confidence", f"{self.highest_confidence():.3f}"),
            ("forwards", f"{int(self.forwards)} in {float(self.seconds):.1f} s"),
        ]
        fig = self.plot()
        return html_card(f"{type(self).__name__}: {_clip(self.target_text, 60)!r}", rows, figure=fig)

    # -- serialisation -------------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        """Feature counts reported by :meth:`summary`."""
        return {"n_regions": self.n_regions}

    def summary(self) -> dict[str, Any]:
        """The headline numbers (what the CLI prints and ``explanation.json`` starts with);
        the AUCs are named by :attr:`auc_names` (their x axis is :attr:`x_axis`)."""
        ins_name, del_name = self.auc_names
        return {
            "generated_text": self.generation.text,
            "target_text": self.target_text,
            "tokens": list(self.generation.tokens),
            "target_positions": list(self.positions),
            "target_tokens": self.target_tokens,
            ins_name: self.auc("insertion"),
            del_name: self.auc("deletion"),
            "highest_confidence": self.highest_confidence(),
            "p_full": self.p_full.tolist(),
            "p_blank": self.p_blank.tolist(),
            **self._counts(),
            "forwards": int(self.forwards),
            "seconds": float(self.seconds),
        }

    def _json_extra(self) -> dict[str, Any]:
        """Subclass entries of :meth:`to_json` (after ``ordering``)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """:meth:`summary` plus the result type, the curves' x axis, per-token metrics, ordering,
        curves, generation, settings and versions (a JSON-serialisable dict)."""
        ins_name, del_name = self.auc_names
        d = self.summary()
        d.update(
            {
                "schema_version": SCHEMA_VERSION,
                "result_type": self.result_type,
                "curve_x_axis": self.x_axis,
                "per_token": [
                    {
                        "position": p,
                        "token": self.generation.tokens[p],
                        ins_name: self.auc("insertion", i),
                        del_name: self.auc("deletion", i),
                        "highest_confidence": self.highest_confidence(i),
                        "p_full": float(self.p_full[i]),
                        "p_blank": float(self.p_blank[i]),
                    }
                    for i, p in enumerate(self.positions)
                ],
                "ordering": self.ordering.tolist(),
                **self._json_extra(),
                "insertion_curve": self.curve("insertion")[1].tolist(),
                "deletion_curve": self.curve("deletion")[1].tolist(),
                "generation": self.generation.to_dict(),
                "settings": self.settings,
                "versions": self.versions,
            }
        )
        return d

    # -- persistence ---------------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike, *, overwrite: bool = False, heatmap: bool = True) -> Path:
        """Write the result into ``out_dir``, atomically: a temporary directory next to it is
        filled, then renamed into place; a failure at any point leaves no partial output.

        The path is resolved first (``..`` and symlinks, as any Unix tool writing into
        ``out/`` would), and nothing is written outside the resolved directory apart from
        creating its missing parents. ``overwrite=True`` replaces an empty directory or a
        previous output of this method; never a directory that holds other files.

        Returns:
            The resolved output directory.

        Raises:
            FileExistsError: ``out_dir`` is a file, or is not empty and ``overwrite`` is False,
                or holds files this method did not write.
            ValueError: ``out_dir`` is the working directory or one of its parents.
        """
        out = check_output_dir(out_dir, overwrite=overwrite)
        created = _missing_parents(out)
        tmp: Path | None = None
        trash: Path | None = None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            from .store import make_temp_dir

            # Renamed into place as the output: the usual 0o777 & ~umask, not mkdtemp's 0700.
            tmp = make_temp_dir(out.parent, prefix=f".{out.name}.tmp-")
            self._write_files(tmp, heatmap=heatmap)
            if out.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, trash / "old")
                try:
                    os.replace(tmp, out)
                except BaseException:
                    os.rename(trash / "old", out)  # put the previous output back
                    raise
            else:
                os.replace(tmp, out)
            tmp = None
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None and (trash / "old").exists():
                logger.error("the previous output could not be restored; it is in %s", trash / "old")
                trash = None
            for parent in reversed(created):
                with contextlib.suppress(OSError):
                    parent.rmdir()
            raise
        finally:
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        """What ``arrays.npz`` holds (plain numeric arrays only)."""
        out = {"image": self.image, "labels": self.labels.astype(np.int32), "ordering": self.ordering.astype(np.int64)}
        out.update({f: getattr(self, f) for f in self._float_fields})
        return out

    def _write_files(self, into: Path, *, heatmap: bool) -> None:
        (into / "explanation.json").write_text(json.dumps(self.to_json(), indent=2, allow_nan=True), encoding="utf-8")
        np.save(into / "saliency.npy", self.saliency())
        np.savez_compressed(into / "arrays.npz", **self._arrays())
        if heatmap:
            from .viz import save_heatmap

            save_heatmap(self, into / "heatmap.png")

    @classmethod
    def _array_keys(cls) -> tuple[str, ...]:
        return ("image", "labels", "ordering", *cls._float_fields)

    @classmethod
    def _from_saved(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], common: dict[str, Any]
    ) -> AttributionResult:
        """Build the result from the saved files (``common``: the fields every result has, parsed)."""
        return cls(**common)

    @classmethod
    def load(cls: type[_R], in_dir: str | os.PathLike) -> _R:
        """Read a result written by :meth:`save` of this class (no pickle is ever loaded):
        ``Explanation.load(d)``, ``PromptAttribution.load(d)``.

        Raises:
            FileNotFoundError: a file of the result is missing.
            ValueError: a file is damaged, its contents are inconsistent, or it holds another
                kind of result (``result_type``; files without one are explanations).
        """
        if not cls.result_type:
            raise TypeError("load a result through its class: Explanation.load or PromptAttribution.load")
        name = cls.__name__
        d = Path(in_dir)
        meta_path, arr_path = d / "explanation.json", d / "arrays.npz"
        for p in (meta_path, arr_path):
            if not p.is_file():
                raise FileNotFoundError(f"{str(p)!r} not found; expected a directory written by {name}.save")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{str(meta_path)!r} is not valid JSON ({exc}); the result is damaged") from exc
        if not isinstance(meta, dict):
            raise ValueError(f"{str(meta_path)!r} holds a JSON {type(meta).__name__}; expected an object")
        kind = meta.get("result_type", Explanation.result_type)
        if kind != cls.result_type:
            raise ValueError(
                f"{str(d)!r} holds a result of type {kind!r}, not a {cls.result_type!r} ({name}); "
                f"load it with the class that wrote it"
            )
        try:
            with np.load(arr_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - zipfile, zlib, EOF, format errors: all mean "damaged"
            raise ValueError(
                f"{str(arr_path)!r} could not be read ({type(exc).__name__}: {exc}); expected the .npz of plain "
                f"numeric arrays written by {name}.save (object arrays, which need pickle, are refused)"
            ) from exc
        missing = [k for k in cls._array_keys() if k not in arrays] + [k for k in cls._meta_keys if k not in meta]
        if missing:
            raise ValueError(f"{str(d)!r} is not a complete saved {cls._noun}: missing {missing}")
        for key in ("settings", "versions"):
            if not isinstance(meta.get(key, {}), dict):
                raise ValueError(f"{str(meta_path)!r}: {key!r} must be an object; got {meta[key]!r}")
        try:
            positions = meta["target_positions"]
            if not isinstance(positions, list) or not all(
                isinstance(p, int) and not isinstance(p, bool) for p in positions
            ):
                raise ValueError(f"target_positions must be a list of integers; got {positions!r}")
            common = {
                "image": arrays["image"],
                "labels": arrays["labels"],
                "ordering": arrays["ordering"],
                **{f: arrays[f] for f in cls._float_fields},
                "generation": Generation.from_dict(meta["generation"]),
                "positions": list(positions),
                "forwards": _nonneg(meta["forwards"], "forwards", int),
                "seconds": _nonneg(meta["seconds"], "seconds", float),
                "settings": meta.get("settings", {}),
                "versions": meta.get("versions", {}),
            }
            return cls._from_saved(meta, arrays, common)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{str(d)!r} is not a valid saved {cls._noun}: {type(exc).__name__}: {exc}") from exc


@dataclass(repr=False)  # the base's one-line repr, not one that prints every array
class Explanation(AttributionResult):
    """What a generated token relied on: an ordering of image regions and its curves.

    The curves run over the revealed (insertion) / removed (deletion) fraction of the image
    AREA (:attr:`x_axis`): after step ``t`` the x value is ``areas[t]``, the pixel share of the
    first ``t + 1`` regions, so large regions weigh more in the AUCs than small ones.

    Attributes:
        image: ``uint8[H, W, 3]`` RGB image that was explained.
        labels: ``int32[H, W]`` region label map.
        ordering: ``int64[n]`` regions, most important first.
        areas: ``float64[n]`` revealed area fraction after each step (last = 1).
        ins: ``float64[n, K]`` per-token insertion scores of each prefix.
        dele: ``float64[n, K]`` per-token deletion scores of each prefix.
        value: ``float64[n]`` objective of each prefix.
        p_full: ``float64[K]`` per-token probability with the full image.
        p_blank: ``float64[K]`` per-token probability with every region removed.
        generation: the answer whose tokens are explained.
        positions: explained token positions (0-based, into ``generation``).
        forwards: images scored; seconds: wall time.
        settings: every option used; versions: package versions.
        saliency_map: for map-based methods, the map itself (else derived from the ordering).

    Example:
        >>> expl = Explainer(adapter, n_regions=64)(image, gen, target="cat")   # doctest: +SKIP
        >>> expl.saliency().shape, expl.insertion_auc(), expl.deletion_auc()     # doctest: +SKIP
    """

    result_type: ClassVar[str] = "explanation"
    x_axis: ClassVar[str] = "fraction of image area"
    _noun: ClassVar[str] = "explanation"
    _float_fields: ClassVar[tuple[str, ...]] = ("areas", "ins", "dele", "value", "p_full", "p_blank")

    image: np.ndarray
    labels: np.ndarray
    ordering: np.ndarray
    areas: np.ndarray
    ins: np.ndarray
    dele: np.ndarray
    value: np.ndarray
    p_full: np.ndarray
    p_blank: np.ndarray
    generation: Generation
    positions: list[int]
    forwards: int
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    saliency_map: np.ndarray | None = None

    def _feature_noun(self) -> str:
        return "regions"

    def _count_error(self, n: int, labels: np.ndarray) -> str:
        return f"ordering has {n} regions but the label map holds labels {np.unique(labels)[:8]}..."

    def _check_more(self, h: int, w: int) -> None:
        if self.saliency_map is not None and np.asarray(self.saliency_map).shape != (h, w):
            raise ValueError(
                f"Explanation.saliency_map has shape {np.asarray(self.saliency_map).shape}; expected {(h, w)}"
            )

    @classmethod
    def from_search(
        cls,
        result: SearchResult,
        *,
        image: np.ndarray,
        labels: np.ndarray,
        p_full: np.ndarray,
        p_blank: np.ndarray,
        generation: Generation,
        positions: Sequence[int],
        forwards: int,
        seconds: float,
        settings: dict[str, Any],
        saliency_map: np.ndarray | None = None,
    ) -> Explanation:
        """An explanation from a search's ordering and prefix curves on the label map ``labels``;
        the revealed areas come from the regions' sizes (the last is exactly 1)."""
        n = int(labels.max()) + 1
        areas = np.cumsum((np.bincount(labels.ravel(), minlength=n) / labels.size)[np.asarray(result.ordering)])
        areas[-1] = 1.0
        return cls(
            image=np.asarray(image),
            labels=labels,
            ordering=result.ordering,
            areas=areas,
            ins=result.ins,
            dele=result.dele,
            value=result.value,
            p_full=np.asarray(p_full, dtype=np.float64),
            p_blank=np.asarray(p_blank, dtype=np.float64),
            generation=generation,
            positions=list(positions),
            forwards=forwards,
            seconds=seconds,
            settings=settings,
            versions=versions(),
            saliency_map=saliency_map,
        )

    @property
    def n_regions(self) -> int:
        """Number of regions in the ordering."""
        return len(self.ordering)

    # -- curves over the image area ------------------------------------------------------------
    def curve_x(self) -> np.ndarray:
        """``float64[n]``: :attr:`areas`, the fraction of the image area revealed after each step."""
        return self.areas

    def insertion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: revealed fraction of the image area (area-weighted, from 0) vs probability;
        ``token`` picks one explained token (default: mean)."""
        return self.curve("insertion", token)

    def deletion_curve(self, token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: removed fraction of the image area vs probability."""
        return self.curve("deletion", token)

    def insertion_auc(self, token: int | None = None) -> float:
        """Area under the insertion curve over the image area (higher is better)."""
        return self.auc("insertion", token)

    def deletion_auc(self, token: int | None = None) -> float:
        """Area under the deletion curve over the image area (lower is better)."""
        return self.auc("deletion", token)

    def region_scores(self, *, rule: str = "evidence", token: int | None = None) -> np.ndarray:
        """``float64[n]``: per-region attribution in ``[0, 1]``, strictly decreasing with rank.

        ``rule`` is ``"evidence"`` (each region's marginal gain from the empty set, relative to
        the top region's) or ``"reference"`` (the research code's rule); see :func:`region_values`.
        ``token`` picks one explained token's own objective (default: the token mean).
        """
        return self.feature_scores(rule=rule, token=token)

    def saliency(self, *, rule: str = "evidence", token: int | None = None) -> np.ndarray:
        """``float32[H, W]`` in ``[0, 1]``, the size of the explained image.

        Region-based results paint :meth:`region_scores` (``rule``, ``token``) on the label
        map; a map-based method's own map is returned as it is (``rule``/``token`` do not apply).
        """
        if self.saliency_map is not None:
            return self.saliency_map.astype(np.float32)
        return self.region_scores(rule=rule, token=token)[self.labels].astype(np.float32)

    def _json_extra(self) -> dict[str, Any]:
        return {"areas": self.areas.tolist()}

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = super()._arrays()
        if self.saliency_map is not None:
            arrays["saliency_map"] = self.saliency_map.astype(np.float32)
        return arrays

    @classmethod
    def _from_saved(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], common: dict[str, Any]) -> Explanation:
        return cls(**common, saliency_map=arrays.get("saliency_map"))


#: every file :meth:`Explanation.save` writes (``overwrite`` replaces only directories of these).
OUTPUT_NAMES = frozenset({"explanation.json", "saliency.npy", "arrays.npz", "heatmap.png", "report.html"})


def check_output_dir(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Resolve ``out_dir`` and check that :meth:`Explanation.save` may write there.

    Returns:
        The resolved directory (``..`` and symlinks resolved).

    Raises:
        FileExistsError: it is a file, or not empty without ``overwrite``, or holds files
            that :meth:`Explanation.save` did not write.
        ValueError: it is the working directory or one of its parents.
    """
    out = Path(os.path.realpath(os.fspath(out_dir)))
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path {str(out)!r} exists and is a file; expected a directory")
    if out.exists():
        cwd = Path(os.path.realpath(os.getcwd()))
        if out == cwd or out in cwd.parents:
            raise ValueError(
                f"refusing to write into {str(out)!r}: it is the working directory (or a parent of it); "
                "choose a new directory such as ./out"
            )
        contents = sorted(p.name for p in out.iterdir())
        if contents and not overwrite:
            raise FileExistsError(f"output directory {str(out)!r} exists and is not empty; pass overwrite=True")
        foreign = [name for name in contents if name not in OUTPUT_NAMES]
        if foreign:
            raise FileExistsError(
                f"refusing to replace {str(out)!r}: it holds files that Explanation.save did not write "
                f"({foreign[:5]}{' ...' if len(foreign) > 5 else ''}); choose another output directory"
            )
    return out


def _nonneg(value: Any, name: str, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return kind(value)


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, outermost first."""
    out = []
    for parent in path.parents:
        if parent.exists():
            break
        out.append(parent)
    return list(reversed(out))
