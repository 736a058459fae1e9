"""Analyses built on the attribution engine.

- :mod:`.modality`: how much of each token's probability the language prior carries vs the image;
- :mod:`.multiscale`: attributions aggregated over region granularities and input resolutions;
- :mod:`.yes_no`: why a wrong yes/no (POPE) answer, and the minimal correcting removal (AMCR);
- :mod:`.captions`: caption object words (CHAIR) with their modality;
- :mod:`.prompt_tokens`: image regions and prompt words ranked in one ordering;
- :mod:`.multi_image`: the regions of several images of one prompt ranked in one ordering;
- :mod:`.video`: the regions of a video's frames ranked in one ordering (the model's video input).

Bulk POPE runs and their summary (CSR@10%) are evaluation: :mod:`mllm_attr.evaluation.pope`.
Names are imported on first use.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("CaptionDiagnosis", "ObjectMention", "caption_hallucinations", "chair", "find_object_mentions"), ".captions"
    ),
    **dict.fromkeys(
        ("RemovalResult", "YesNoDiagnosis", "diagnose_yes_no", "minimal_correcting_removal", "parse_yes_no"), ".yes_no"
    ),
    **dict.fromkeys(
        (
            "GroundedModality",
            "ModalityReport",
            "ModalityThresholds",
            "TokenModality",
            "analyze_modality",
            "classify",
            "decompose",
            "grounded_modality",
            "modality_from_explanation",
            "modality_from_probs",
            "reference_probs",
        ),
        ".modality",
    ),
    **dict.fromkeys(("MultiScaleExplainer", "MultiScaleExplanation", "ScaleMap", "combine"), ".multiscale"),
    **dict.fromkeys(
        ("PromptAttribution", "PromptWord", "explain_prompt_tokens", "joint_scorer", "prompt_words"), ".prompt_tokens"
    ),
    **dict.fromkeys(("MultiImageAttribution", "MultiImageExplainer", "explain_multi_image"), ".multi_image"),
    **dict.fromkeys(("VideoAttribution", "VideoExplainer", "explain_video"), ".video"),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
