"""The example scripts as modules, for the tests that call their `main` or patch their parts in-process.

The scripts in `examples/` are run, not installed (what they share is: `wave_examples`), so they are imported from
their files here rather than through `sys.path`.
"""

import importlib.util
import sys
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


def load_example(relative_path: str):
    """`examples/<relative_path>.py` (e.g. "run_classification", "analysis/convergence"), imported once."""
    name = Path(relative_path).name
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES_DIR / f"{relative_path}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it, as `import` does (dataclasses look their module up)
        spec.loader.exec_module(module)
    return sys.modules[name]
