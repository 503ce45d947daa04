"""A script run by a fresh Python outside the checkout, as a user without this repository runs it."""

import os
import subprocess
import sys


def run_outside_the_checkout(script_text: str, work, tmp_path_factory) -> tuple[str, dict]:
    """`python child.py <work>` in a new folder outside the repository (so its root is not on the child's
    `sys.path`), offline, with a `HF_HOME` of its own and no `PYTHONPATH`; fails with the end of its stderr.
    Returns the child's working directory and environment."""
    cwd = tmp_path_factory.mktemp("child-cwd")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path_factory.mktemp("child-hf-home")), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    script = cwd / "child.py"
    script.write_text(script_text)
    result = subprocess.run(
        [sys.executable, str(script), str(work)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # the trust_remote_code prompt must fail at once, not wait for an answer
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return str(cwd), env
