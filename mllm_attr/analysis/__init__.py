"""Analyses built on the attribution engine.

- :mod:`.modality`: how much of each token's probability the language prior carries vs the image;
- :mod:`.multiscale`: attributions aggregated over region granularities and input resolutions;
- :mod:`.hallucination`: yes/no (POPE) diagnosis with the minimal correcting removal (AMCR,
  CSR@10%), and caption object words (CHAIR) with their modality;
- :mod:`.prompt_tokens`: image regions and prompt words ranked in one ordering.
"""

from .hallucination import (
    CaptionDiagnosis,
    ObjectMention,
    RemovalResult,
    YesNoDiagnosis,
    caption_hallucinations,
    chair,
    diagnose_pope,
    diagnose_yes_no,
    find_object_mentions,
    minimal_correcting_removal,
    parse_yes_no,
    summarize,
)
from .modality import (
    GroundedModality,
    ModalityReport,
    ModalityThresholds,
    TokenModality,
    analyze_modality,
    classify,
    decompose,
    grounded_modality,
    modality_from_explanation,
    modality_from_probs,
    reference_probs,
)
from .multiscale import MultiScaleExplainer, MultiScaleExplanation, ScaleMap, combine
from .prompt_tokens import PromptAttribution, PromptWord, explain_prompt_tokens, joint_scorer, prompt_words

__all__ = [
    "CaptionDiagnosis",
    "GroundedModality",
    "ModalityReport",
    "ModalityThresholds",
    "MultiScaleExplainer",
    "MultiScaleExplanation",
    "ObjectMention",
    "PromptAttribution",
    "PromptWord",
    "RemovalResult",
    "ScaleMap",
    "TokenModality",
    "YesNoDiagnosis",
    "analyze_modality",
    "caption_hallucinations",
    "chair",
    "classify",
    "combine",
    "decompose",
    "diagnose_pope",
    "diagnose_yes_no",
    "explain_prompt_tokens",
    "find_object_mentions",
    "grounded_modality",
    "joint_scorer",
    "minimal_correcting_removal",
    "modality_from_explanation",
    "modality_from_probs",
    "parse_yes_no",
    "prompt_words",
    "reference_probs",
    "summarize",
]
