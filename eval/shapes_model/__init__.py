"""Scripts that train and evaluate the shipped shapes-llava checkpoint (``mllm_attr/assets/shapes-llava``).

Not part of the installed package (which only ships the trained checkpoint, the scene
generator :mod:`mllm_attr.data.shapes` and the dataset loaders); run from the repository root::

    python eval/shapes_model/train.py --out mllm_attr/assets/shapes-llava --seed 0 --threads 1
    python eval/shapes_model/evaluate.py --model mllm_attr/assets/shapes-llava --n 300 [--card]

Modules: :mod:`shapes_model.model` (sizes, vocabulary, chat template and the model /
tokenizer / processor builders, shared by both scripts), :mod:`shapes_model.train` (the
two-stage optimiser loop; it calls the evaluation at the end) and
:mod:`shapes_model.evaluate` (held-out evaluation, hallucination and removal probes, model
card; it does not import the training script). Run as files, the scripts put ``eval/`` on
``sys.path`` themselves; to import them from elsewhere, put ``eval/`` on ``sys.path`` and
``import shapes_model.evaluate`` (or ``cd eval && python -m shapes_model.train``).
"""
