# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Puts bpf into the lsm= boot parameter, so that it is an active LSM from the next boot on.
#
# plan_boot_lsm() only reads (files, `grubby --info=ALL`) and returns the exact actions, so check
# mode predicts `changed` and a second run plans nothing; apply_plan() carries them out.
#   Debian/Ubuntu: a GRUB drop-in appending lsm= to GRUB_CMDLINE_LINUX, then update-grub.
#   RHEL family:   grubby on every boot entry, and the same lsm= in /etc/default/grub, which
#                  grub2-mkconfig and the boot entries of new kernels are built from.
# "Already there" means the boot config yields an lsm= list holding bpf, whoever put it there.

import os
import re
import tempfile

from ansible_collections.bpfquota.nfs.plugins.module_utils.lsm import merge_bpf_into_lsm, parse_cmdline_lsm

DEBIAN = "debian"
REDHAT = "redhat"

DROP_IN = "etc/default/grub.d/50-bpfquota.cfg"
DEFAULT_GRUB = "etc/default/grub"
GRUB_CFG = "boot/grub/grub.cfg"

_FAMILY_MARKERS = ((DEBIAN, "etc/debian_version"), (REDHAT, "etc/redhat-release"),
                   (REDHAT, "etc/fedora-release"))
_FAMILY_TOOLS = ((REDHAT, "grubby"), (DEBIAN, "update-grub"))

# A kernel line of a generated grub.cfg; the image name tells Linux from memtest86+ and the like.
_GRUB_CFG_LINUX = re.compile(r"^\s*linux(?:efi)?\s+(\S+)(.*)$", re.MULTILINE)
_GRUB_CMDLINE_LINUX = re.compile(r"^(\s*(?:export\s+)?GRUB_CMDLINE_LINUX=)(.*?)\s*$")
_QUOTED_VALUE = re.compile(r"""^(["'])(.*?)\1(\s+#.*)?$""")
_BARE_VALUE = re.compile(r"^([^\s\"'#]*)(\s+#.*)?$")


class BootConfigError(Exception):
    """The boot configuration can't be read or changed as planned; the message names the fix."""


class WriteFile(object):
    """Replace the file at path (before: its text, None when missing) with after."""

    def __init__(self, path, before, after):
        self.path = path
        self.before = before
        self.after = after

    def describe(self):
        return "%s %s" % ("update" if self.before is not None else "create", self.path)

    def diff(self):
        return {"before_header": self.path, "after_header": self.path,
                "before": self.before or "", "after": self.after}


class RunCommand(object):
    """Run argv; diff (or None) shows what it changes."""

    def __init__(self, argv, diff=None):
        self.argv = list(argv)
        self._diff = diff

    def describe(self):
        return "run " + " ".join(self.argv)

    def diff(self):
        return self._diff


class Plan(object):
    """What puts lsm (a list) into the boot config of a host of family; no actions: it's already there."""

    def __init__(self, root, family, lsm, actions):
        self.root = root
        self.family = family
        self.lsm = lsm
        self.actions = actions

    @property
    def changed(self):
        return bool(self.actions)

    def descriptions(self):
        return [action.describe() for action in self.actions]

    def diffs(self):
        return [diff for diff in (action.diff() for action in self.actions) if diff is not None]


def boot_lsm(active_lsms, cmdline_lsm=None, config_lsm=None):
    """The lsm= list to boot with: the current list plus bpf, in order, every LSM kept.

    The active list is the truth; the lsm= the kernel booted with, then the compiled-in
    CONFIG_LSM, stand in when securityfs can't be read.
    """
    for current in (active_lsms, cmdline_lsm, config_lsm):
        if current is not None:
            break
    else:
        raise BootConfigError(
            "the current LSM list is unknown (no /sys/kernel/security/lsm, no lsm= on the kernel "
            "command line, no CONFIG_LSM in the kernel config), and lsm= replaces the whole list: "
            "mount securityfs (mount -t securityfs securityfs /sys/kernel/security) and retry")
    if not [name for name in current if name != "bpf"]:
        raise BootConfigError(
            "the current LSM list is empty, and lsm=bpf alone would leave bpf as the only LSM: "
            "add bpf to the lsm= boot parameter by hand, next to the LSMs this host should run")
    return merge_bpf_into_lsm(current)


def bpf_boot_helps(facts):
    """Whether bpf in lsm= would activate BPF LSM (lsm.readiness facts): compiled in but not active."""
    return facts["config_bpf_lsm"] is True and not facts["bpf_lsm_active"]


def booted_without_bpf(facts):
    """Whether the running kernel booted with no bpf in lsm=, so a boot config with it needs a reboot."""
    return facts["cmdline_lsm"] is None or "bpf" not in facts["cmdline_lsm"]


def put_bpf_in_boot(module, facts, root="/"):
    """What lsm_boot does, for an AnsibleModule and the readiness facts of the host under root: plan
    bpf into lsm= of the boot config where it helps, apply the plan outside check mode, warn when a
    reboot is needed. Returns {changed, lsm, boot_changes, reboot_required} (and diff in diff mode
    when it helps); BootConfigError when the boot config can't be read or changed."""
    result = dict(changed=False, lsm=None, boot_changes=[], reboot_required=False)
    if not bpf_boot_helps(facts):
        return result
    lsm = boot_lsm(facts["active_lsms"], facts["cmdline_lsm"], facts["config_lsm"])
    plan = plan_boot_lsm(root, lsm, module.run_command, module.get_bin_path)
    if plan.changed and not module.check_mode:
        apply_plan(plan, module.run_command, file_writer(module))
    result.update(changed=plan.changed, lsm=lsm, boot_changes=plan.descriptions(),
                  reboot_required=booted_without_bpf(facts))
    if module._diff:
        result["diff"] = plan.diffs()
    if result["reboot_required"]:
        module.warn("the boot configuration %s lsm=%s, but the running kernel doesn't have bpf active: "
                    "reboot to activate it (this module never reboots)"
                    % ("now sets" if plan.changed else "already sets", ",".join(lsm)))
    return result


def file_writer(module):
    """write(path, text): atomic, keeping the owner, mode and SELinux label of a file it replaces."""
    def write(path, text):
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, temp = tempfile.mkstemp(prefix=".bpfquota-", dir=directory)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)
        module.atomic_move(temp, path)
    return write


def detect_family(root, which):
    """DEBIAN or REDHAT from the release files under root, else from the boot tools found; None if neither."""
    for family, marker in _FAMILY_MARKERS:
        if os.path.exists(os.path.join(root, marker)):
            return family
    for family, tool in _FAMILY_TOOLS:
        if which(tool):
            return family
    return None


def plan_boot_lsm(root, lsm, run, which):
    """The Plan that makes the host under root boot with lsm= the given list (which must hold bpf).

    run(argv) -> (rc, stdout, stderr) runs a command (only `grubby --info=ALL` here: a read);
    which(name) -> path or None finds a tool.
    """
    if "bpf" not in lsm or len(lsm) < 2:
        raise BootConfigError("refusing lsm=%s: the list must keep the current LSMs and add bpf"
                              % (",".join(lsm),))
    family = detect_family(root, which)
    if family == DEBIAN:
        actions = _plan_debian(root, lsm, which)
    elif family == REDHAT:
        actions = _plan_redhat(root, lsm, run, which)
    else:
        raise BootConfigError(
            "cannot tell how this host boots: no /etc/debian_version or /etc/redhat-release, and "
            "neither grubby nor update-grub is installed; add lsm=%s to the kernel command line "
            "in the boot loader's configuration by hand, then reboot" % (",".join(lsm),))
    return Plan(root, family, lsm, actions)


def apply_plan(plan, run, write):
    """Carry out plan's actions, then check that the boot config now has bpf in lsm=.

    write(path, text) replaces a file atomically, creating its directory if needed.
    """
    for action in plan.actions:
        if isinstance(action, WriteFile):
            write(action.path, action.after)
        else:
            _run_checked(run, action.argv)
    if plan.actions:
        _verify(plan, run)


def drop_in_text(lsm):
    """The GRUB drop-in (Debian/Ubuntu) that appends lsm= to every kernel's command line."""
    return ("# Written by bpfquota.nfs.lsm_boot (bpfquota_fix_boot): adds bpf to the active LSMs.\n"
            "# lsm= replaces the kernel's whole LSM list, so it keeps every LSM that was active.\n"
            "# The last lsm= on the command line wins: nothing after this may set another one.\n"
            'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX lsm=%s"\n' % (",".join(lsm),))


def grub_cfg_kernel_args(text):
    """The arguments of each Linux kernel line of a generated grub.cfg."""
    return [match.group(2).strip() for match in _GRUB_CFG_LINUX.finditer(text)
            if os.path.basename(match.group(1)).startswith("vmlinu")]


def parse_grubby_info(text):
    """The entries of `grubby --info=ALL` as dicts, values unquoted; BLS and legacy grubby formats."""
    entries = []
    for line in text.splitlines():
        if "=" not in line:
            continue  # legacy grubby's "non linux entry"
        key, value = line.split("=", 1)
        key = key.strip()
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        if key == "index" or not entries:
            entries.append({})
        entries[-1][key] = value
    return entries


def set_lsm_arg(args, lsm):
    """args (a kernel command line) with lsm= set to lsm: the first lsm= replaced in place, others dropped."""
    wanted = "lsm=" + ",".join(lsm)
    result = []
    for token in args.split():
        if token.startswith("lsm="):
            if wanted in result:
                continue
            token = wanted
        result.append(token)
    if wanted not in result:
        result.append(wanted)
    return " ".join(result)


def grub_cmdline_linux(text):
    """(line index, prefix, quote, value, comment) of the GRUB_CMDLINE_LINUX assignment that wins, or None."""
    found = None
    for index, line in enumerate(text.splitlines()):
        match = _GRUB_CMDLINE_LINUX.match(line)
        if match:
            found = (index, match.group(1), match.group(2))
    if found is None:
        return None
    index, prefix, raw = found
    quoted = _QUOTED_VALUE.match(raw)
    if quoted:
        return index, prefix, quoted.group(1), quoted.group(2), quoted.group(3) or ""
    bare = _BARE_VALUE.match(raw)
    if bare:
        return index, prefix, '"', bare.group(1), bare.group(2) or ""
    raise BootConfigError(
        "cannot parse line %d of /%s (%s): write GRUB_CMDLINE_LINUX as one quoted string, "
        "or add the lsm= parameter to it by hand" % (index + 1, DEFAULT_GRUB, text.splitlines()[index]))


def set_grub_cmdline_lsm(text, lsm):
    """text of /etc/default/grub with lsm= set in GRUB_CMDLINE_LINUX (added when missing)."""
    found = grub_cmdline_linux(text)
    if found is None:
        separator = "" if not text or text.endswith("\n") else "\n"
        return '%s%sGRUB_CMDLINE_LINUX="%s"\n' % (text, separator, set_lsm_arg("", lsm))
    index, prefix, quote, value, comment = found
    lines = text.splitlines(True)
    ending = "\n" if lines[index].endswith("\n") else ""
    lines[index] = "%s%s%s%s%s%s" % (prefix, quote, set_lsm_arg(value, lsm), quote, comment, ending)
    return "".join(lines)


def _plan_debian(root, lsm, which):
    grub_cfg = _read(os.path.join(root, GRUB_CFG))
    if _grub_cfg_has_bpf(grub_cfg):
        return []
    actions = []
    drop_in = os.path.join(root, DROP_IN)
    before, after = _read(drop_in), drop_in_text(lsm)
    if before != after:
        actions.append(WriteFile(drop_in, before, after))
    # An existing grub.cfg without bpf is stale (e.g. a failed update-grub): regenerate it.
    if actions or grub_cfg is not None:
        actions.append(RunCommand([_tool(which, "update-grub", lsm)]))
    return actions


def _plan_redhat(root, lsm, run, which):
    grubby = _tool(which, "grubby", lsm)
    entries = _grubby_kernels(run, grubby)
    actions = []
    default_grub = os.path.join(root, DEFAULT_GRUB)
    text = _read(default_grub)
    if text is not None:
        found = grub_cmdline_linux(text)
        if found is None or not _args_have_bpf(found[3]):
            actions.append(WriteFile(default_grub, text, set_grub_cmdline_lsm(text, lsm)))
    if not all(_args_have_bpf(entry["args"]) for entry in entries):
        before = "".join("%s %s\n" % (entry["kernel"], entry["args"]) for entry in entries)
        after = "".join("%s %s\n" % (entry["kernel"], set_lsm_arg(entry["args"], lsm)) for entry in entries)
        header = "kernel command lines (grubby --info=ALL)"
        diff = {"before_header": header, "after_header": header, "before": before, "after": after}
        actions.append(RunCommand([grubby, "--update-kernel=ALL", "--args=lsm=" + ",".join(lsm)], diff))
    return actions


def _verify(plan, run):
    """Fail when the applied plan still leaves a kernel to boot without bpf in lsm=."""
    if plan.family == DEBIAN:
        path = os.path.join(plan.root, GRUB_CFG)
        grub_cfg = _read(path)
        if grub_cfg is not None and not _grub_cfg_has_bpf(grub_cfg):
            raise BootConfigError(
                "update-grub ran, but %s still boots a kernel without bpf in lsm= (%s): a later "
                "lsm= overrides the one from /%s; remove lsm= from GRUB_CMDLINE_LINUX_DEFAULT and "
                "from any later /etc/default/grub.d file, or add bpf to it"
                % (path, _lsm_seen(grub_cfg_kernel_args(grub_cfg)), DROP_IN))
        return
    grubby_runs = [action.argv[0] for action in plan.actions if isinstance(action, RunCommand)]
    if not grubby_runs:
        return  # only /etc/default/grub changed: the boot entries had bpf already
    entries = _grubby_kernels(run, grubby_runs[0])
    if not all(_args_have_bpf(entry["args"]) for entry in entries):
        raise BootConfigError(
            "grubby --update-kernel=ALL ran, but some boot entries still lack bpf in lsm= (%s): "
            "check them with grubby --info=ALL and add lsm=%s by hand"
            % (_lsm_seen(entry["args"] for entry in entries), ",".join(plan.lsm)))


def _grubby_kernels(run, grubby):
    """The Linux entries (kernel and args) of `grubby --info=ALL`; fails when there are none."""
    argv = [grubby, "--info=ALL"]
    stdout = _run_checked(run, argv)
    entries = [entry for entry in parse_grubby_info(stdout) if "kernel" in entry and "args" in entry]
    if not entries:
        raise BootConfigError(
            "%s lists no kernel with arguments, so there is no boot entry to add lsm= to: "
            "check the boot loader configuration with grubby --info=ALL" % (" ".join(argv),))
    return entries


def _run_checked(run, argv):
    rc, stdout, stderr = run(argv)
    if rc != 0:
        raise BootConfigError("%s failed (rc=%d): %s; fix the boot loader configuration so it "
                              "succeeds, then retry" % (" ".join(argv), rc, (stderr or stdout).strip()))
    return stdout


def _tool(which, name, lsm):
    path = which(name)
    if not path:
        raise BootConfigError(
            "%s not found, and this host's boot configuration is changed with it: install it "
            "(package %s), or add lsm=%s to the kernel command line by hand, then reboot"
            % (name, "grub2-common" if name == "update-grub" else "grubby", ",".join(lsm)))
    return path


def _grub_cfg_has_bpf(text):
    """Whether grub.cfg text exists, boots some kernel, and every kernel line has bpf in lsm=."""
    if text is None:
        return False
    kernel_args = grub_cfg_kernel_args(text)
    return bool(kernel_args) and all(_args_have_bpf(args) for args in kernel_args)


def _args_have_bpf(args):
    lsm = parse_cmdline_lsm(args)
    return lsm is not None and "bpf" in lsm


def _lsm_seen(args_list):
    """The distinct lsm= values of kernel command lines, for messages."""
    seen = []
    for args in args_list:
        lsm = parse_cmdline_lsm(args)
        value = "no lsm=" if lsm is None else "lsm=" + ",".join(lsm)
        if value not in seen:
            seen.append(value)
    return ", ".join(seen)


def _read(path):
    """The text of path, None when it doesn't exist."""
    try:
        with open(path, "r") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BootConfigError("cannot read %s (%s): run as root" % (path, error.strerror or error))
