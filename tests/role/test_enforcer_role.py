# -*- coding: utf-8 -*-
"""The rollout playbook and the bpfquota.nfs.enforcer role, run with ansible-playbook against a VM.

The tests build on each other in file order (one VM, as an operator's host lives through
successive plays): first rollout, re-run, check mode, the change for real, removal, absent.
"""
import json
import re

from conftest import MiB

PV_A, PV_B, PV_C = "/mnt/nfs3/pvs/pv-a", "/mnt/nfs4/pvs/pv-b", "/mnt/nfs4/pvs/pv-c"
VOLUMES = [
    {"path": PV_A, "limit": "8Mi"},
    {"path": PV_B, "limit": "16Mi", "mode": "audit"},
    {"path": PV_C, "limit": "4Mi", "inodes": 100},
]
UNITS = ["bpfquota-restore.service", "bpfquota-apply.service", "bpfquota-agent.service"]
INSTALLED = ["/usr/lib/bpfquota", "/etc/bpfquota", "/usr/local/sbin/bpfquota", "/sys/fs/bpf/bpfquota"] + \
    ["/etc/systemd/system/" + unit for unit in UNITS]
DQUOT = "Disk quota exceeded"
# A writer that keeps trying to grow a full volume until /tmp/hammer.stop appears (at most
# argv[2] seconds, and 16 successful writes should enforcement fail); then prints how many of its
# writes succeeded and how many it tried.
HAMMER = ("rm -f /tmp/hammer.stop /tmp/hammer.out; nohup python3 -c 'import os, sys, time\n"
          "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\nok = tried = 0\n"
          "end = time.monotonic() + float(sys.argv[2])\n"
          "while time.monotonic() < end and ok < 16 and not os.path.exists(\"/tmp/hammer.stop\"):\n"
          "    tried += 1\n    try:\n        os.write(fd, b\"w\" * 65536); ok += 1\n"
          "    except OSError:\n        time.sleep(0.01)\n"
          "print(ok, tried)' %s %d < /dev/null > /tmp/hammer.out 2>&1 &")
STOP_HAMMER = "touch /tmp/hammer.stop; while ! test -s /tmp/hammer.out; do sleep 1; done; cat /tmp/hammer.out"


def with_limit(volumes, path, limit):
    return [dict(v, limit=limit) if v["path"] == path else v for v in volumes]


def test_check_mode_on_a_fresh_host_predicts_the_rollout_and_installs_nothing(node):
    result = node.play(check=True, bpfquota_volumes=VOLUMES)
    assert result.rc == 0, "check mode failed on a fresh host"
    # The quotas (and the volumes file the quota module keeps) wait for the program's first load.
    assert {"Install the bpfquota command", "Install the systemd units"} \
        <= set(result.changed_tasks()), result.changed_tasks()
    notes = [res.get("msg", "") for task, res in result.results("ok")
             if task == "Say that check mode can't tell which packages would be installed"]
    assert notes and notes[0].startswith("python3-apt is missing, so check mode can't tell"), notes
    for path in INSTALLED:
        assert node.sh("test -e %s" % path, check=False).rc != 0, "check mode created %s" % path


def test_first_rollout_enforces_every_volume_in_its_mode(node):
    result = node.play(bpfquota_volumes=VOLUMES)
    assert result.rc == 0 and result.recap["node"]["failed"] == 0
    rows = node.report()
    assert sorted(rows) == sorted(v["path"] for v in VOLUMES)
    assert (rows[PV_A]["limit_bytes"], rows[PV_A]["mode"]) == (8 * MiB, "enforce")
    assert (rows[PV_B]["limit_bytes"], rows[PV_B]["mode"]) == (16 * MiB, "audit")
    assert (rows[PV_C]["limit_bytes"], rows[PV_C]["limit_files"]) == (4 * MiB, 100)
    assert DQUOT in node.fill(PV_A + "/data")
    assert DQUOT in node.fill(PV_C + "/data")
    assert DQUOT not in node.fill(PV_B + "/data", mib=20)
    assert node.size(PV_B + "/data") == 20 * MiB
    assert node.report()[PV_B]["denials"] > 0  # audit counts what it would have refused
    for unit in UNITS:
        assert node.sh("systemctl is-enabled " + unit).stdout.strip() == "enabled"
    assert node.sh("systemctl is-active bpfquota-agent.service").stdout.strip() == "active"


def test_a_second_run_changes_nothing(node):
    result = node.play(bpfquota_volumes=VOLUMES)
    assert result.rc == 0
    assert result.recap["node"]["changed"] == 0, result.changed_tasks()


def test_check_mode_predicts_a_limit_change_and_applies_nothing(node):
    programs = node.program_ids()
    volumes_file = node.sh("cat /etc/bpfquota/volumes.yaml").stdout
    result = node.play(check=True, diff=True, bpfquota_volumes=with_limit(VOLUMES, PV_A, "12Mi"))
    assert result.rc == 0
    assert "Apply the quotas" in result.changed_tasks()
    maps_diff, file_diff = result.diffs("Apply the quotas")
    limits = {side: {v["path"]: v["limit"] for v in maps_diff[side]["volumes"]}[PV_A] for side in ("before", "after")}
    assert limits == {"before": 8 * MiB, "after": 12 * MiB}, maps_diff
    assert re.search(r'^\s+limit: "8Mi"$', file_diff["before"], re.M), file_diff
    assert re.search(r'^\s+limit: "12Mi"$', file_diff["after"], re.M), file_diff
    assert node.report()[PV_A]["limit_bytes"] == 8 * MiB
    assert node.sh("cat /etc/bpfquota/volumes.yaml").stdout == volumes_file
    assert node.program_ids() == programs


def test_the_change_applies_without_reloading_and_without_a_gap(node):
    programs = node.program_ids()
    node.sh(HAMMER % (PV_C + "/data", 240))
    result = node.play(bpfquota_volumes=with_limit(VOLUMES, PV_A, "12Mi"))
    assert result.rc == 0
    assert set(result.changed_tasks()) == {"Apply the quotas"}, result.changed_tasks()
    assert node.program_ids() == programs
    assert node.report()[PV_A]["limit_bytes"] == 12 * MiB
    out = node.sh(STOP_HAMMER).stdout.split()
    assert out and int(out[0]) == 0 and int(out[1]) > 0, "over-quota writes during the play: %s" % out
    size_before = node.size(PV_A + "/data")
    assert DQUOT in node.fill(PV_A + "/data")
    assert node.size(PV_A + "/data") > size_before  # the new room is usable


def test_a_volume_removed_from_the_inventory_is_removed(node):
    result = node.play(bpfquota_volumes=[v for v in VOLUMES if v["path"] != PV_C])
    assert result.rc == 0
    assert PV_C not in node.report()
    assert DQUOT not in node.fill(PV_C + "/more", mib=6)  # more than the old 4 MiB limit
    assert node.size(PV_C + "/more") == 6 * MiB


def test_state_absent_leaves_nothing_behind(node):
    result = node.play(bpfquota_state="absent", bpfquota_volumes=[])
    assert result.rc == 0
    for path in INSTALLED:
        assert node.sh("test -e %s" % path, check=False).rc != 0, "%s is still there" % path
    progs = json.loads(node.sh("bpftool -j prog show").stdout)
    assert [p for p in progs if p.get("type") == "lsm"] == []
    assert DQUOT not in node.fill(PV_A + "/data", mib=6)
    again = node.play(bpfquota_state="absent", bpfquota_volumes=[])
    assert again.rc == 0 and again.recap["node"]["changed"] == 0, again.changed_tasks()
