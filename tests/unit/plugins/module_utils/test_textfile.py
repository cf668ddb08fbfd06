# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""textfile: the metrics of the maps and the host, and the file node_exporter reads, replaced whole."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat
import threading

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import enforcement, layout, scantimes, textfile
from ansible_collections.bpfquota.nfs.plugins.module_utils.usage import ScanResult

from quota_testlib import FakeMaps, Kernel


def maps_with_two_volumes():
    maps = FakeMaps()
    maps.set_vol_cfg(1, layout.VolCfg(1000, 0, 400, 4, layout.MODES["enforce"], 0, 0))
    maps.set_vol_cfg(2, layout.VolCfg(2000, 10, 0, 0, layout.MODES["audit"], 0, 0, layout.USAGE_UNKNOWN))
    maps.set_paths({1: "/mnt/nfs/pv-a", 2: "/mnt/nfs/pv-b"})
    Kernel(maps).set_stats(1, denied=dict((op, 2 if op == "write" else 0) for op in layout.OPS))
    return maps


def series(text, name):
    return [line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


def test_metrics_of_the_maps_with_the_recorded_scan_times(tmp_path, private_scan_times):
    scantimes.record([ScanResult(1, "/mnt/nfs/pv-a", True, 400, 4, 0.1, "")], ["/mnt/nfs/pv-a", "/mnt/nfs/pv-b"],
                     now=1000)
    text = textfile.metrics_text(maps_with_two_volumes(), now=1030, link_dir=str(tmp_path / "no-links"))
    assert series(text, "bpfquota_volume_used_bytes") == ['bpfquota_volume_used_bytes{volume="/mnt/nfs/pv-a"} 400',
                                                          'bpfquota_volume_used_bytes{volume="/mnt/nfs/pv-b"} 0']
    assert series(text, "bpfquota_volume_last_scan_age_seconds") == [
        'bpfquota_volume_last_scan_age_seconds{volume="/mnt/nfs/pv-a"} 30']
    assert 'bpfquota_volume_refused_operations_total{volume="/mnt/nfs/pv-a",operation="write"} 2' in text
    assert 'bpfquota_volume_state{volume="/mnt/nfs/pv-b",state="usage_unknown"} 1' in text
    assert series(text, "bpfquota_volume_files_limit") == ['bpfquota_volume_files_limit{volume="/mnt/nfs/pv-b"} 10']
    assert series(text, "bpfquota_enforcer_loaded") == ["bpfquota_enforcer_loaded 0"]  # no programs pinned there
    assert "bpfquota_agent_" not in text


def test_without_maps_only_the_host_is_described(tmp_path):
    text = textfile.metrics_text(None, now=0, link_dir=str(tmp_path))
    assert "bpfquota_volume_" not in text and series(text, "bpfquota_enforcer_loaded") == ["bpfquota_enforcer_loaded 0"]


def test_the_stats_switch_is_read_from_the_sysctl(tmp_path):
    switch = tmp_path / "bpf_stats_enabled"
    switch.write_text("1\n")
    assert textfile.stats_enabled(str(switch)) is True
    switch.write_text("0\n")
    assert textfile.stats_enabled(str(switch)) is False
    assert textfile.stats_enabled(str(tmp_path / "none")) is None


def test_the_file_is_written_whole_readable_by_all_and_alone(tmp_path):
    path = textfile.write_textfile(str(tmp_path), "a 1\n")
    assert path == str(tmp_path / "bpfquota.prom")
    assert open(path).read() == "a 1\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    textfile.write_textfile(str(tmp_path), "a 2\n")
    assert open(path).read() == "a 2\n" and os.listdir(str(tmp_path)) == ["bpfquota.prom"]


def test_a_reader_never_sees_half_a_file(tmp_path):
    texts = ["x %d\n" % n * 20000 for n in (1, 2)]  # large enough to take several writes
    textfile.write_textfile(str(tmp_path), texts[0])
    stop = threading.Event()
    seen = set()

    def read():
        while not stop.is_set():
            with open(str(tmp_path / "bpfquota.prom")) as f:
                seen.add(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(200):
            textfile.write_textfile(str(tmp_path), texts[n % 2])
    finally:
        stop.set()
        reader.join()
    assert seen and seen <= set(texts)


def test_a_missing_directory_is_bad_input_with_its_fix(tmp_path):
    with pytest.raises(enforcement.BpfquotaError) as raised:
        textfile.write_textfile(str(tmp_path / "node-exporter"), "a 1\n")
    assert raised.value.kind == enforcement.USAGE
    assert str(raised.value).startswith("metrics directory %s does not exist: install node_exporter"
                                        % (tmp_path / "node-exporter"))
    assert not os.path.exists(str(tmp_path / "node-exporter"))
