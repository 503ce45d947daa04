"""The parts of `examples/benchmark.py` (docs/benchmark.md): `settings` (its options and presets), `models` (the
models under test), `timing` (interleaved timed rounds, the matmul probe, the sweep, the epoch estimate), `memory`
(peak memory in a fresh process per model: `python -m wave_examples.benchmark.memory`) and `report` (target
ratios, Markdown, plots). Its FLOP counts are those of `wave_examples.flops`.

Nothing is imported here, so that `python -m wave_examples.benchmark.memory` starts the probe module only once.
"""
