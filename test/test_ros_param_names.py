"""The nested parameter names, live: a `localization_node` process started with a params YAML whose
core parameters nest (``localizer: {pnp: {max_reproj_px: ...}}``, read by rcl's own YAML parser) and
``-p localizer.retrieval.top_k:=2`` holds those values under the dotted names; old flat names given at
start (``-p top_k_keyframes:=3``, ``pnp_reprojection_px`` in the YAML) are each logged as one error line
naming the new name and put in the node's diagnostics, and the node keeps running; ``set_parameters``
with an old name is refused naming the new one, a nested dynamic gate is changed, a bad value refused.
"""
from __future__ import annotations

import sys
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

import subprocess  # noqa: E402

from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402

from mast3r_ros.paths import REPO_ROOT  # noqa: E402

from .live_client import LiveClient, ros_env, stop_process_tree, unique_domain_id  # noqa: E402

NODE = "/mast3r/localization_node"
RENAMED_TOP_K = "parameter 'top_k_keyframes' was renamed to 'localizer.retrieval.top_k'"
RENAMED_PNP = "parameter 'pnp_reprojection_px' was renamed to 'localizer.pnp.max_reproj_px'"


def _call(client, request, timeout_s: float = 30.0):
    assert client.wait_for_service(timeout_sec=timeout_s), f"{client.srv_name} not available"
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert future.done(), f"no answer from {client.srv_name}"
    return future.result()


def _get(live: LiveClient, names: list[str]) -> list:
    client = live.node.create_client(GetParameters, f"{NODE}/get_parameters")
    resp = _call(client, GetParameters.Request(names=names))
    return [parameter_value_to_python(v) for v in resp.values]


def _set(live: LiveClient, name: str, value):
    client = live.node.create_client(SetParameters, f"{NODE}/set_parameters")
    (result,) = _call(client, SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg()])).results
    return result


def test_nested_names_live_and_old_names_named(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "config" / "localization.yaml").read_text()
                      .replace("max_reproj_px: 8.0", "max_reproj_px: 7.5")
                      + "    pnp_reprojection_px: 9.0\n")
    domain = unique_domain_id()
    log_path = tmp_path / "node.log"
    cmd = [sys.executable, "-m", "mast3r_ros.ros.nodes.localization_node", "--ros-args", "-r", "__ns:=/mast3r",
           "--params-file", str(params), "-p", "localizer.retrieval.top_k:=2", "-p", "top_k_keyframes:=3"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ros_env(domain), start_new_session=True)
    live = LiveClient(domain)
    try:
        assert _get(live, ["localizer.retrieval.top_k", "localizer.pnp.max_reproj_px"]) == [2, 7.5]
        # an old name at start: one error line each, the node runs on (and says so in its diagnostics)
        text = log_path.read_text()
        for reason in (RENAMED_TOP_K, RENAMED_PNP):
            assert text.count(f"{reason}; the old name is ignored") == 1, text[-3000:]
        deadline = time.monotonic() + 30
        warned = []
        while time.monotonic() < deadline and not warned:
            warned = [s.message for m in live.messages("diagnostics") for s in m.status
                      if "localization_node" in s.name and RENAMED_TOP_K in s.message]
            time.sleep(0.2)
        assert warned and RENAMED_PNP in warned[0], "the diagnostics never named the old parameters"
        # set_parameters: the old name is refused naming the new one; the nested dynamic gate changes
        result = _set(live, "top_k_keyframes", 4)
        assert not result.successful and result.reason == RENAMED_TOP_K
        assert _set(live, "localizer.gates.min_inliers", 25).successful
        assert _get(live, ["localizer.gates.min_inliers"]) == [25]
        bad = _set(live, "localizer.gates.min_inliers_global", 24)  # the schema's cross-check, by nested name
        assert not bad.successful and bad.reason == ("localizer.gates.min_inliers_global (24) must be >= "
                                                     "localizer.gates.min_inliers (25)")
        assert not _set(live, "localizer.retrieval.top_k", 4).successful  # read-only: set at start
        assert proc.poll() is None, "the node stopped"
    finally:
        live.close()
        stop_process_tree(proc)
