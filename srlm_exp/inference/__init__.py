"""The inference layer: which engine turns prompts into continuations, under everything that generates.

`generation/sampler.py:sample` is the one entry point (candidates, judgments, evaluation, prompt writing,
teacher and candidate models); it runs the Hugging Face paths itself or hands the call to vLLM
(`vllm_engine.py`) when `generation.backend=vllm`. `checkpoints.py` knows which directory a loaded model's
weights are, since an engine loads a directory, not a Python object.
"""
