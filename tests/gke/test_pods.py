"""Pod namespaces on this machine: a stale namespace whose owners died is swept at the next
start, and a live one is left alone."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from keyless.gke import netns
from tests.gke.pod_helpers import remains


def _dead_owner() -> list[object]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    entry = netns.owner(proc.pid)
    proc.wait()
    return entry


def test_sweep_removes_what_a_killed_owner_left_and_keeps_live_ones() -> None:
    netns.require_available()
    # Names and a subnet of this run's own: other xdist workers and the other CI leg run this test
    # (and pods, whose starts sweep too) at the same time.
    tag = secrets.token_hex(4)
    node, pod, live = f"kl-n-ts{tag}0", f"kl-p-ts{tag}0", f"kl-p-ts{tag}1"
    subnet = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    me = netns.owner(os.getpid())
    # Made while owned (a concurrent sweep leaves them be), then their owners die.
    netns.write_record(node, {"kind": "node", "owners": [me]})
    netns.create_node(node, f"{subnet}.1")
    netns.write_record(pod, {"kind": "pod", "node": node, "ip": f"{subnet}.2", "owners": [me]})
    netns.create_pod(pod, node, netns.veth_name(pod), f"{subnet}.2", f"{subnet}.1", metadata_egress=True)
    netns.write_record(live, {"kind": "pod", "node": "", "owners": [me]})
    netns.ip("netns", "add", live)
    try:
        assert netns.bridge_ports(node) == 1
        netns.write_record(pod, {"kind": "pod", "node": node, "ip": f"{subnet}.2", "owners": [_dead_owner()]})
        netns.write_record(node, {"kind": "node", "owners": [_dead_owner()]})
        removed = netns.sweep()
        # Gone (by this sweep, or by a pod start's sweep elsewhere on the machine in between).
        assert remains([pod, node]) == [] and live not in removed
        assert netns.namespaces(f"kl-p-ts{tag}") == [live] and not netns.exists(node)
    finally:
        netns.delete_pod(live)
    assert remains([node, pod, live]) == []
