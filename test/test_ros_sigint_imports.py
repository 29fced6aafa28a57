"""Ctrl-C while a node's console script is still importing (rclpy, numpy, OpenCV: ~1.1 s for the
localization node, more for mapping, before its first log line) exits quietly: code 0, no traceback
(issue 13; it printed a KeyboardInterrupt traceback). The command is the one pip's console script
runs for the entry point declared in pyproject.toml, so the declared entry point is tested, not an
installed script that may predate it. Ctrl-C after start-up: test_ros_live_sigint.py."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import tomllib

pytest.importorskip("rclpy")

from mast3r_ros.paths import REPO_ROOT  # noqa: E402
from mast3r_ros.ros.live_client import ros_env, unique_domain_id  # noqa: E402


def _console_script(name: str) -> list[str]:
    spec = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"][name]
    module, func = spec.split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]


@pytest.mark.parametrize("delay_s", [0.4, 0.8])
@pytest.mark.parametrize("name", ["localization_node", "mapping_node"])
def test_sigint_during_imports_exits_quietly(name, delay_s, tmp_path):
    proc = subprocess.Popen(_console_script(name) + ["--ros-args", "-p", f"map_path:={tmp_path / 'map'}"],
                            env=ros_env(unique_domain_id()), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "[INFO]" not in out and "[WARN]" not in out, f"the node had started: not a Ctrl-C during imports\n{out}"
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert proc.returncode == 0, out
