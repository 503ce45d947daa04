"""Running an example script as its own command, for the scripts that run many (`run_ablation.py`, `run_suite.py`):
every run is a command that can be printed and rerun by hand, logs to a file, and leaves `all_results.json`."""

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from wave_examples import REPO_ROOT


def script_command(script: str, preset: str | None, settings: dict, extra: list[str] = ()) -> list[str]:
    """`python script [preset] --key value ...` (JSON objects as JSON, everything else as its string)."""
    command = [sys.executable, script] + ([preset] if preset else [])
    for key, value in settings.items():
        command += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return command + list(extra)


def printable(command: list[str]) -> str:
    """The command as a person would type it: `python` for this interpreter."""
    return shlex.join(["python" if command[0] == sys.executable else command[0], *command[1:]])


def run_script(command: list[str], output_dir: Path, results_name: str = "all_results.json") -> dict:
    """Run `command` from the repository root, its output in `<output_dir>.log`; its results (`all_results.json`, or
    what `results_name` names), with the command's wall-clock seconds (start-up, data, training and evaluation) as
    `end_to_end_seconds`."""
    output_dir = Path(output_dir) if Path(output_dir).is_absolute() else REPO_ROOT / output_dir
    log_path = output_dir.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{printable(command)} failed (exit {completed.returncode}); see {log_path}")
    return {**json.loads((output_dir / results_name).read_text()), "end_to_end_seconds": seconds}
