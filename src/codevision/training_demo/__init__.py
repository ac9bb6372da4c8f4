"""``codevision demo train``: the whole life of a tiny model (data, SFT, GRPO, evaluation) on a laptop.

A synthetic task whose answer needs an image operation (turning a picture upright, then looking at
one corner), a scripted teacher that solves it from the pixels, a tiny Qwen2.5-VL built from a
config with a tokenizer trained on the task's own text, and the real commands run one after the
other: ``data synth``, ``train sft``, ``data export rl``, ``train grpo`` and ``eval``.
"""
