"""``mllm-attr explain``: explain generated tokens for one image and prompt."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    add_explainer_args,
    add_model_args,
    check_explainer_args,
    explainer_from_args,
    int_at_least,
    load_model_from_args,
    parse_indices,
    segments_from_args,
)


def add_subcommand(subparsers: Any) -> None:
    """Register ``mllm-attr explain`` on the CLI's subparsers."""
    p = subparsers.add_parser("explain", help="explain generated tokens for one image and prompt")
    p.add_argument("--image", default=None, help="image path (default: the shipped example scene)")
    p.add_argument("--prompt", default=None, help='prompt (default: "Describe the image.")')
    tg = p.add_mutually_exclusive_group()
    tg.add_argument("--target", default=None, help='word or phrase of the answer, or "all" (default: all)')
    tg.add_argument("--target-index", type=parse_indices, default=None, help="token index(es), e.g. 3 or 3,4")
    p.add_argument(
        "--answer",
        default=None,
        help="explain this counterfactual answer (teacher-forced) instead of the generated one; with --target or "
        "--target-index, only those tokens OF THIS ANSWER (e.g. --answer 'a red circle' --target circle)",
    )
    p.add_argument("--occurrence", type=int_at_least(1), default=1, help="which occurrence of --target (default 1)")
    p.add_argument("--include-eos", action="store_true", help="with --target all, explain EOS too")
    sg = p.add_mutually_exclusive_group()
    sg.add_argument(
        "--labels",
        default=None,
        metavar="FILE.npy",
        help="use this int[H, W] label map (np.save) as the regions instead of the segmenter; H, W = the image's",
    )
    sg.add_argument(
        "--masks",
        default=None,
        metavar="FILE.npz",
        help="regions from boolean [H, W] masks (np.savez; archive order, or one [N, H, W] array): overlaps go to "
        "the earlier mask, uncovered pixels form one extra last region",
    )
    p.add_argument("--out", default="mllm_attr_out", help="output directory (default: ./mllm_attr_out)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_model_args(p)
    add_explainer_args(p)
    p.set_defaults(func=run)


def _target(args: argparse.Namespace) -> Any:
    from ..targets import AllTokens, Answer, Positions, Word

    if args.target_index is not None:
        target: Any = Positions(tuple(args.target_index))
    elif args.target is None or args.target == "all":
        target = AllTokens(include_eos=args.include_eos)
    else:
        target = Word(args.target, occurrence=args.occurrence)
    if args.answer is not None:
        # The answer is teacher-forced; --target / --target-index select tokens inside it
        # (all of its tokens without them).
        explicit = args.target is not None or args.target_index is not None
        target = Answer(args.answer, target=target) if explicit else Answer(args.answer)
    return target


def run(args: argparse.Namespace) -> int:
    """Run ``mllm-attr explain``; every input is checked before the model is loaded."""
    from ..assets import example_image_path
    from ..explanation import check_output_dir
    from ..image import load_image

    try:
        out = check_output_dir(args.out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise FileExistsError(
            str(exc).replace("pass overwrite=True", "pass --overwrite or choose another --out")
        ) from None
    target = _target(args)
    image = args.image or str(example_image_path())
    prompt = args.prompt if args.prompt is not None else "Describe the image."

    loaded = load_image(image)  # fail on a bad image before loading the model
    labels, segments_source = segments_from_args(args, loaded)  # and on bad --labels / --masks
    check_explainer_args(args, loaded, labels)  # and on flags that do not fit this image
    adapter = load_model_from_args(args)
    explainer = explainer_from_args(adapter, args, **({"labels": labels} if labels is not None else {}))
    expl = explainer(loaded.array if not loaded.notes else image, target=target, prompt=prompt)
    if segments_source:
        expl.settings["segments_source"] = segments_source
    expl.save(out, overwrite=args.overwrite)
    s = expl.summary()
    gen = expl.generation
    print(f"prompt:           {prompt}")
    if gen.counterfactual:
        print(f"generated text:   {gen.generated_text}")
        print(f"explained answer: {gen.text}  (counterfactual, teacher-forced)")
    else:
        print(f"generated text:   {gen.text}")
    print(f"explained tokens: {', '.join(f'{p}:{t!r}' for p, t in zip(s['target_positions'], s['target_tokens']))}")
    print(f"insertion AUC:    {s['insertion_auc']:.4f}  (higher is better)")
    print(f"deletion AUC:     {s['deletion_auc']:.4f}  (lower is better)")
    print(f"highest conf.:    {s['highest_confidence']:.4f}")
    if labels is not None:
        print(
            f"regions:          {expl.n_regions} (supplied by {'--labels' if args.labels is not None else '--masks'})"
        )
    else:
        print(f"regions:          {expl.n_regions} (requested {args.n_regions})")
    print(f"forwards:         {s['forwards']} in {s['seconds']:.1f}s")
    print(f"wrote:            {out / 'explanation.json'}, {out / 'saliency.npy'}, {out / 'heatmap.png'}")
    return 0
