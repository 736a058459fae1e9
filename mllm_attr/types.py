"""Plain value types shared across the package."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Generation:
    """A generated (or teacher-forced counterfactual) answer, token by token.

    Attributes:
        prompt: the user prompt the answer responds to.
        token_ids: generated token ids after the prompt (EOS included when the model emitted it).
        tokens: a display string per token (the token's own slice of ``text``; special tokens
            such as EOS show their literal form).
        spans: ``(start, end)`` character offsets of each token in ``text`` (empty for specials).
        text: the decoded answer, special tokens skipped.
        probs: probability of each token at generation time (full image, same prefix).
        special: whether each token is a special token (EOS, padding...).
        counterfactual: True when the answer was supplied by the user, not generated.
        generated_text: for a counterfactual, what the model actually generated.
        image_sha256: SHA-256 of the pixels the model saw (:func:`mllm_attr.image.image_sha256`),
            set by the adapters' ``generate`` / ``teacher_force``; explaining the answer on other
            pixels is refused. ``None`` (a Generation built by hand, or one saved before this field): not
            checked.
    """

    prompt: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    text: str
    probs: tuple[float, ...]
    special: tuple[bool, ...]
    counterfactual: bool = False
    generated_text: str | None = None
    image_sha256: str | None = None

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        for name in ("tokens", "spans", "probs", "special"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Generation.{name} has {len(getattr(self, name))} entries; expected {n}")

    def __len__(self) -> int:
        return len(self.token_ids)

    def __repr__(self) -> str:
        """One line: the answer, its token count, the prompt (never the id, span or probability lists)."""

        def clip(text: str | None, n: int = 60) -> str | None:
            if text is None:
                return None
            text = " ".join(text.split())
            return text if len(text) <= n else text[: n - 1] + "…"

        extra = ", counterfactual=True" if self.counterfactual else ""
        if self.counterfactual and self.generated_text is not None:
            extra += f", generated_text={clip(self.generated_text, 40)!r}"
        return f"Generation(text={clip(self.text)!r}, tokens={len(self)}, prompt={clip(self.prompt, 50)!r}{extra})"

    def describe_tokens(self) -> str:
        """``0:'A' 1:' red' ...``: the token list as shown in error messages."""
        return " ".join(f"{i}:{tok!r}" for i, tok in enumerate(self.tokens))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (``spans`` as lists); the inverse of :meth:`from_dict`."""
        d = asdict(self)
        d["spans"] = [list(s) for s in self.spans]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Generation:
        """Inverse of :meth:`to_dict`; ``counterfactual``, ``generated_text`` and ``image_sha256`` may be
        absent from ``d``."""
        return cls(
            prompt=d["prompt"],
            token_ids=tuple(int(t) for t in d["token_ids"]),
            tokens=tuple(d["tokens"]),
            spans=tuple((int(a), int(b)) for a, b in d["spans"]),
            text=d["text"],
            probs=tuple(float(p) for p in d["probs"]),
            special=tuple(bool(s) for s in d["special"]),
            counterfactual=bool(d.get("counterfactual", False)),
            generated_text=d.get("generated_text"),
            image_sha256=d.get("image_sha256"),
        )


@dataclass
class ForwardCounter:
    """Counts model evaluations: ``images`` scored and batched ``calls`` made."""

    images: int = 0
    calls: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def add(self, n_images: int) -> None:
        """Record one batched call that scored ``n_images`` images."""
        self.images += int(n_images)
        self.calls += 1
