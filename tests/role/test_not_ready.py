# -*- coding: utf-8 -*-
"""A host booted with an lsm= list that lacks bpf: the rollout fails on it with the reasons and the
fix, and leaves it exactly as it was."""
import pytest

from conftest import booted_node

# Debian's default list without bpf, as an operator's kernel command line might set it.
LSM_WITHOUT_BPF = "lsm=lockdown,capability,landlock,yama,apparmor"
VOLUMES = [{"path": "/mnt/nfs3/pvs/pv-a", "limit": "8Mi"}]
FOOTPRINT = "ls -d /usr/lib/bpfquota /etc/bpfquota /usr/local/sbin/bpfquota /sys/fs/bpf/bpfquota " \
            "/etc/systemd/system/bpfquota-* 2>/dev/null; bpftool -j prog show"


@pytest.fixture(scope="module")
def node():
    with booted_node("role-nobpf", extra_cmdline=LSM_WITHOUT_BPF) as n:
        assert "bpf" not in n.sh("cat /sys/kernel/security/lsm").stdout.split(",")
        yield n


@pytest.mark.parametrize("playbook", ["bpfquota.nfs.rollout", "tests/role/enforcer.yml"])
def test_a_host_without_bpf_lsm_fails_with_its_reasons_and_is_left_unchanged(node, playbook):
    before = node.sh(FOOTPRINT).stdout
    result = node.play(playbook=playbook, bpfquota_volumes=VOLUMES)
    assert result.rc != 0 and result.recap["node"]["failed"] == 1
    message, = result.failure_messages()
    assert "the boot parameter %s overrides CONFIG_LSM and lacks bpf" % LSM_WITHOUT_BPF in message, message
    assert "change it to %s,bpf" % LSM_WITHOUT_BPF in message, "the fix is not shown: %s" % message
    assert node.sh(FOOTPRINT).stdout == before
