# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.bpfquota.nfs.plugins.module_utils import bootcfg
from ansible_collections.bpfquota.nfs.plugins.module_utils.bootcfg import (
    BootConfigError,
    RunCommand,
    WriteFile,
    apply_plan,
    boot_lsm,
    detect_family,
    drop_in_text,
    grub_cfg_kernel_args,
    grub_cmdline_linux,
    parse_grubby_info,
    plan_boot_lsm,
    set_grub_cmdline_lsm,
    set_lsm_arg,
)
from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import parse_cmdline_lsm
from ansible_collections.bpfquota.nfs.tests.unit.plugins.boot_hosts import (
    RHEL_9_MERGED,
    UBUNTU_2204_MERGED,
    BootTools,
    fixture,
    read,
    rhel_9,
    ubuntu_2204,
    write_files,
)

DROP_IN = "etc/default/grub.d/50-bpfquota.cfg"
LSM_VALUE = "lsm=" + ",".join(UBUNTU_2204_MERGED)


def write(path, text):
    """The plain writer the module's atomic one stands for."""
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        handle.write(text)


def snapshot(root):
    """Every file under root with its text: proves that nothing was written."""
    files = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files


def kernel_lsms(grub_cfg):
    return [parse_cmdline_lsm(args) for args in grub_cfg_kernel_args(grub_cfg)]


# The lsm= value ------------------------------------------------------------------------------

def test_boot_lsm_keeps_every_active_lsm_in_order_and_appends_bpf():
    active = ["lockdown", "capability", "landlock", "yama", "integrity", "apparmor"]
    assert boot_lsm(active) == UBUNTU_2204_MERGED
    assert boot_lsm(active, ["apparmor"], ["selinux"]) == UBUNTU_2204_MERGED  # active wins


def test_boot_lsm_falls_back_to_the_booted_lsm_then_config_lsm():
    assert boot_lsm(None, ["capability", "selinux"], ["landlock"]) == ["capability", "selinux", "bpf"]
    assert boot_lsm(None, None, ["landlock", "lockdown", "yama"]) == ["landlock", "lockdown", "yama", "bpf"]


def test_boot_lsm_never_yields_bpf_alone():
    with pytest.raises(BootConfigError, match="lsm=bpf alone"):
        boot_lsm([])
    with pytest.raises(BootConfigError, match="lsm=bpf alone"):
        boot_lsm(None, ["bpf"])
    with pytest.raises(BootConfigError, match="unknown.*mount -t securityfs"):
        boot_lsm(None, None, None)


def test_plan_refuses_a_list_without_bpf_or_with_bpf_alone(tmp_path):
    tools = BootTools(str(tmp_path))
    for lsm in (["bpf"], ["apparmor"]):
        with pytest.raises(BootConfigError, match="must keep the current LSMs and add bpf"):
            plan_boot_lsm(str(tmp_path), lsm, tools.run, tools.which)


# Parsing -------------------------------------------------------------------------------------

def test_grub_cfg_kernel_args_skip_memtest_and_keep_recovery():
    root_text = fixture("grub.cfg-ubuntu2204.in").replace("@LINUX_DEFAULT@", "quiet").replace("@LINUX@", "lsm=a,bpf")
    args = grub_cfg_kernel_args(root_text)
    assert args == ["root=LABEL=cloudimg-rootfs ro lsm=a,bpf quiet"] * 2 + [
        "root=LABEL=cloudimg-rootfs ro recovery nomodeset dis_ucode_ldr lsm=a,bpf"]


def test_parse_grubby_info_bls():
    entries = parse_grubby_info(fixture("grubby-info-rhel9.txt"))
    assert [entry["index"] for entry in entries] == ["0", "1", "2"]
    assert entries[0]["kernel"] == "/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"
    assert entries[1]["initrd"] == "/boot/initramfs-5.14.0-362.24.1.el9_3.x86_64.img $tuned_initrd"
    assert entries[2]["args"].endswith("rd.lvm.lv=rhel/swap rhgb quiet")
    assert parse_cmdline_lsm(entries[0]["args"]) == ["lockdown", "yama", "integrity", "selinux"]


def test_parse_grubby_info_legacy_unquoted_with_a_non_linux_entry():
    entries = parse_grubby_info(fixture("grubby-info-rhel7.txt"))
    assert len(entries) == 3
    assert entries[0]["kernel"] == "/boot/vmlinuz-3.10.0-1160.119.1.el7.x86_64"
    assert entries[0]["title"] == "CentOS Linux (3.10.0-1160.119.1.el7.x86_64) 7 (Core)"
    assert entries[1]["args"].startswith("ro crashkernel=auto")
    assert entries[2] == {"index": "2"}


@pytest.mark.parametrize("args, expected", [
    ("ro quiet", "ro quiet lsm=a,bpf"),
    ("ro lsm=a quiet", "ro lsm=a,bpf quiet"),
    ("lsm=x ro lsm=y quiet", "lsm=a,bpf ro quiet"),
    ("", "lsm=a,bpf"),
    ("ro $tuned_params", "ro $tuned_params lsm=a,bpf"),
])
def test_set_lsm_arg_replaces_in_place(args, expected):
    assert set_lsm_arg(args, ["a", "bpf"]) == expected


def test_set_grub_cmdline_lsm_on_rhel_9():
    text = fixture("default-grub-rhel9")
    after = set_grub_cmdline_lsm(text, RHEL_9_MERGED)
    changed = [(b, a) for b, a in zip(text.splitlines(), after.splitlines()) if b != a]
    assert changed == [(
        'GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap '
        'rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap lsm=lockdown,yama,integrity,selinux rhgb quiet"',
        'GRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap '
        'rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap lsm=lockdown,capability,yama,integrity,selinux,bpf rhgb quiet"')]
    assert set_grub_cmdline_lsm(after, RHEL_9_MERGED) == after


@pytest.mark.parametrize("text, expected", [
    ('GRUB_CMDLINE_LINUX=""\n', 'GRUB_CMDLINE_LINUX="lsm=a,bpf"\n'),
    ("GRUB_CMDLINE_LINUX='quiet'  # keep\n", "GRUB_CMDLINE_LINUX='quiet lsm=a,bpf'  # keep\n"),
    ("GRUB_CMDLINE_LINUX=quiet\n", 'GRUB_CMDLINE_LINUX="quiet lsm=a,bpf"\n'),
    ('export GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX="b"', 'export GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX="b lsm=a,bpf"'),
    ("GRUB_TIMEOUT=5", 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="lsm=a,bpf"\n'),
    ("", 'GRUB_CMDLINE_LINUX="lsm=a,bpf"\n'),
])
def test_set_grub_cmdline_lsm_forms(text, expected):
    assert set_grub_cmdline_lsm(text, ["a", "bpf"]) == expected


def test_grub_cmdline_linux_that_cant_be_parsed_names_the_line():
    with pytest.raises(BootConfigError, match=r"line 2 of /etc/default/grub .*by hand"):
        grub_cmdline_linux('GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="quiet $(cat x)" rest\n')


def test_detect_family_from_release_files_then_tools(tmp_path):
    root = str(tmp_path)
    nothing = BootTools(root, installed=())
    assert detect_family(root, nothing.which) is None
    assert detect_family(root, BootTools(root, installed=("grubby",)).which) == bootcfg.REDHAT
    assert detect_family(root, BootTools(root, installed=("update-grub",)).which) == bootcfg.DEBIAN
    write_files(root, {"etc/redhat-release": "Fedora release 40 (Forty)\n"})
    assert detect_family(root, nothing.which) == bootcfg.REDHAT
    write_files(root, {"etc/debian_version": "12.5\n"})
    assert detect_family(root, nothing.which) == bootcfg.DEBIAN


def test_unknown_boot_setup_fails_with_the_manual_fix(tmp_path):
    tools = BootTools(str(tmp_path), installed=())
    with pytest.raises(BootConfigError, match="cannot tell how this host boots.*add lsm=a,bpf to the kernel"):
        plan_boot_lsm(str(tmp_path), ["a", "bpf"], tools.run, tools.which)


# Debian / Ubuntu -----------------------------------------------------------------------------

def test_ubuntu_plan_writes_the_drop_in_and_runs_update_grub(tmp_path):
    root = ubuntu_2204(str(tmp_path))
    tools = BootTools(root)
    before = snapshot(root)
    plan = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    assert plan.family == bootcfg.DEBIAN and plan.changed
    assert plan.descriptions() == ["create %s/%s" % (root, DROP_IN), "run /usr/sbin/update-grub"]
    assert plan.diffs() == [{"before_header": os.path.join(root, DROP_IN), "after_header": os.path.join(root, DROP_IN),
                             "before": "", "after": drop_in_text(UBUNTU_2204_MERGED)}]
    assert tools.calls == [] and snapshot(root) == before  # planning only reads

    apply_plan(plan, tools.run, write)
    assert tools.calls == [["/usr/sbin/update-grub"]]
    assert read(root, DROP_IN).splitlines()[-1] == 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX %s"' % (LSM_VALUE,)
    assert kernel_lsms(read(root, "boot/grub/grub.cfg")) == [UBUNTU_2204_MERGED] * 3

    again = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    assert not again.changed and again.descriptions() == []


def test_ubuntu_stale_grub_cfg_only_reruns_update_grub(tmp_path):
    root = ubuntu_2204(str(tmp_path), extra_files={DROP_IN: drop_in_text(UBUNTU_2204_MERGED)})
    write_files(root, {"boot/grub/grub.cfg": fixture("grub.cfg-ubuntu2204.in").replace("@LINUX@", "").replace(
        "@LINUX_DEFAULT@", "console=tty1 console=ttyS0")})  # update-grub never ran after the drop-in
    tools = BootTools(root)
    plan = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    assert plan.descriptions() == ["run /usr/sbin/update-grub"] and plan.diffs() == []
    apply_plan(plan, tools.run, write)
    assert not plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which).changed


def test_boot_config_that_already_has_bpf_is_left_alone(tmp_path):
    # The admin put their own lsm= with bpf in /etc/default/grub: nothing to do, no drop-in.
    root = ubuntu_2204(str(tmp_path), extra_files={
        "etc/default/grub": fixture("default-grub-ubuntu2204").replace(
            'GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="lsm=landlock,lockdown,yama,integrity,apparmor,bpf"')})
    tools = BootTools(root)
    plan = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    assert not plan.changed
    assert read(root, DROP_IN) is None


def test_drop_in_with_another_list_is_rewritten(tmp_path):
    old = drop_in_text(["capability", "apparmor", "bpf"])
    root = ubuntu_2204(str(tmp_path), extra_files={DROP_IN: old})
    write_files(root, {"boot/grub/grub.cfg": fixture("grub.cfg-ubuntu2204.in").replace("@LINUX@", "").replace(
        "@LINUX_DEFAULT@", "")})
    tools = BootTools(root)
    plan = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    assert plan.descriptions() == ["update %s/%s" % (root, DROP_IN), "run /usr/sbin/update-grub"]
    assert plan.diffs()[0]["before"] == old


def test_lsm_in_grub_cmdline_linux_default_wins_and_apply_says_so(tmp_path):
    cloud = fixture("50-cloudimg-settings.cfg").replace(
        'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"',
        'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0 lsm=landlock,lockdown,yama,apparmor"')
    root = ubuntu_2204(str(tmp_path), extra_files={"etc/default/grub.d/50-cloudimg-settings.cfg": cloud})
    tools = BootTools(root)
    plan = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    with pytest.raises(BootConfigError, match=r"still boots a kernel without bpf in lsm= \(lsm=landlock,lockdown,"
                                              r"yama,apparmor, lsm=lockdown,.*GRUB_CMDLINE_LINUX_DEFAULT"):
        apply_plan(plan, tools.run, write)


def test_update_grub_failure_names_the_command_and_its_error(tmp_path):
    root = ubuntu_2204(str(tmp_path))
    tools = BootTools(root)
    tools.fail["update-grub"] = (1, "/usr/sbin/grub-mkconfig: 12: /etc/default/grub.d/99-x.cfg: Syntax error\n")
    plan = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    with pytest.raises(BootConfigError, match=r"/usr/sbin/update-grub failed \(rc=1\): .*Syntax error"):
        apply_plan(plan, tools.run, write)


def test_debian_without_update_grub_says_what_to_install(tmp_path):
    root = ubuntu_2204(str(tmp_path))
    tools = BootTools(root, installed=())
    with pytest.raises(BootConfigError, match=r"update-grub not found.*grub2-common.*lsm=lockdown,capability"):
        plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)


def test_no_grub_cfg_yet_writes_and_regenerates_once(tmp_path):
    root = ubuntu_2204(str(tmp_path))
    os.remove(os.path.join(root, "boot/grub/grub.cfg"))
    tools = BootTools(root)
    plan = plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which)
    assert [type(action) for action in plan.actions] == [WriteFile, RunCommand]
    apply_plan(plan, tools.run, write)
    assert not plan_boot_lsm(root, UBUNTU_2204_MERGED, tools.run, tools.which).changed


# RHEL family ---------------------------------------------------------------------------------

def test_rhel_plan_runs_grubby_and_keeps_default_grub_in_step(tmp_path):
    root = rhel_9(str(tmp_path))
    tools = BootTools(root, grubby_info=fixture("grubby-info-rhel9.txt"))
    before = snapshot(root)
    plan = plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which)
    value = "lsm=" + ",".join(RHEL_9_MERGED)
    assert plan.family == bootcfg.REDHAT
    assert plan.descriptions() == ["update %s/etc/default/grub" % (root,),
                                   "run /usr/sbin/grubby --update-kernel=ALL --args=" + value]
    assert tools.changing_calls() == [] and snapshot(root) == before

    grubby_diff = plan.diffs()[1]
    assert grubby_diff["before"].count("lsm=lockdown,yama,integrity,selinux ") == 2
    assert grubby_diff["after"].count(value + " ") == 2 and grubby_diff["after"].count(value + "\n") == 1

    apply_plan(plan, tools.run, write)
    assert tools.changing_calls() == [["/usr/sbin/grubby", "--update-kernel=ALL", "--args=" + value]]
    entries = parse_grubby_info(tools.grubby_info())
    assert [parse_cmdline_lsm(entry["args"]) for entry in entries] == [RHEL_9_MERGED] * 3
    assert grub_cmdline_linux(read(root, "etc/default/grub"))[3].split()[4] == value

    assert not plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which).changed


def test_rhel_entries_done_but_default_grub_not(tmp_path):
    root = rhel_9(str(tmp_path))
    tools = BootTools(root, grubby_info=fixture("grubby-info-rhel9.txt"))
    tools.run(["/usr/sbin/grubby", "--update-kernel=ALL", "--args=lsm=" + ",".join(RHEL_9_MERGED)])
    plan = plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which)
    assert plan.descriptions() == ["update %s/etc/default/grub" % (root,)]
    apply_plan(plan, tools.run, write)
    assert not plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which).changed


def test_rhel_without_default_grub_only_runs_grubby(tmp_path):
    root = rhel_9(str(tmp_path))
    os.remove(os.path.join(root, "etc/default/grub"))
    tools = BootTools(root, grubby_info=fixture("grubby-info-rhel9.txt"))
    plan = plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which)
    assert [type(action) for action in plan.actions] == [RunCommand]


def test_grubby_that_changes_nothing_is_reported(tmp_path):
    root = rhel_9(str(tmp_path))
    tools = BootTools(root, grubby_info=fixture("grubby-info-rhel9.txt"))
    tools._grubby_args = lambda new_args: None  # a grubby that exits 0 and edits nothing
    plan = plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which)
    with pytest.raises(BootConfigError, match=r"still lack bpf in lsm= \(lsm=lockdown,yama,integrity,selinux, no lsm=\)"):
        apply_plan(plan, tools.run, write)


def test_grubby_info_failure_and_no_entries(tmp_path):
    root = rhel_9(str(tmp_path))
    tools = BootTools(root, grubby_info="")
    with pytest.raises(BootConfigError, match="lists no kernel with arguments"):
        plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which)
    tools.fail["grubby"] = (1, "grubby: error: no such file /boot/loader/entries\n")
    with pytest.raises(BootConfigError, match=r"--info=ALL failed \(rc=1\): grubby: error"):
        plan_boot_lsm(root, RHEL_9_MERGED, tools.run, tools.which)
