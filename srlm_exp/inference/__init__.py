"""The inference layer: which engine turns prompts into continuations, under everything that generates.

`inference/sampler.py:sample` is the one entry point (candidates, judgments, evaluation, prompt writing,
teacher and candidate models); it runs the Hugging Face paths itself or hands the call to vLLM
(`vllm_engine.py`) when `generation.backend=vllm`, which loads the directory `models/checkpoints.py` says holds
a model's weights, since an engine loads a directory, not a Python object.
"""
