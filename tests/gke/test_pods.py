"""Pod namespaces on this machine: a stale namespace whose owners died is swept at the next
start, and a live one is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

from keyless.gke import netns
from tests.gke.pod_helpers import leftovers


def _dead_owner() -> list[object]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    entry = netns.owner(proc.pid)
    proc.wait()
    return entry


def test_sweep_removes_what_a_killed_owner_left_and_keeps_live_ones() -> None:
    netns.require_available()
    node, pod, live = "kl-n-testsweep0", "kl-p-testsweep0", "kl-p-testsweep1"
    netns.write_record(node, {"kind": "node", "owners": [_dead_owner()]})
    netns.create_node(node, "10.99.99.1")
    netns.write_record(pod, {"kind": "pod", "node": node, "ip": "10.99.99.2", "owners": [_dead_owner()]})
    netns.create_pod(pod, node, netns.veth_name(pod), "10.99.99.2", "10.99.99.1", metadata_egress=True)
    netns.write_record(live, {"kind": "pod", "node": "", "owners": [netns.owner(os.getpid())]})
    netns.ip("netns", "add", live)
    try:
        assert netns.bridge_ports(node) == 1
        removed = netns.sweep()
        assert pod in removed and node in removed and live not in removed
        assert netns.namespaces("kl-p-testsweep") == [live] and not netns.exists(node)
    finally:
        netns.delete_pod(live)
    assert leftovers() == []
