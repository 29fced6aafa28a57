"""Two localization nodes in one namespace would both answer every service and publish every pose twice:
the one started second refuses to start (exit code 2, reason logged); another namespace is fine."""
from __future__ import annotations

import signal
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("mast3r_ros.msg")

from std_srvs.srv import Trigger  # noqa: E402

from .live_client import LiveClient, start_launch, stop_process_tree, unique_domain_id  # noqa: E402


def _wait_exit(proc, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        time.sleep(0.2)
    return None


def test_second_node_in_one_namespace_refuses_to_start(tmp_path):
    domain = unique_domain_id()
    first = start_launch("localization", domain, [], tmp_path / "first.log")
    client = LiveClient(domain)
    procs = [first]
    try:
        assert client.wait_for_service(Trigger, "reset", 60), (tmp_path / "first.log").read_text()[-3000:]
        other_ns = start_launch("localization", domain, ["--namespace", "second_robot"], tmp_path / "other.log")
        twin = start_launch("localization", domain, [], tmp_path / "twin.log")
        procs += [other_ns, twin]
        code = _wait_exit(twin, 90)
        log = (tmp_path / "twin.log").read_text()
        assert code not in (None, 0), log[-3000:]
        assert "/mast3r/localization_node is already running" in log, log[-3000:]
        # the first node still serves; the node in its own namespace started and was not refused
        assert client.call(Trigger, "reset", Trigger.Request(), 30).success
        other = LiveClient(domain, namespace="second_robot")
        try:
            assert other.wait_for_service(Trigger, "reset", 60), (tmp_path / "other.log").read_text()[-3000:]
        finally:
            other.close()
        assert other_ns.poll() is None and "already running" not in (tmp_path / "other.log").read_text()
        assert first.poll() is None and "already running" not in (tmp_path / "first.log").read_text()
    finally:
        client.close()
        for proc in procs:
            _, left = stop_process_tree(proc, signal.SIGTERM, 10.0)
            assert not left
