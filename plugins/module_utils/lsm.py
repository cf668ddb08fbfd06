# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# Is BPF LSM usable on this host, and if not, what exactly fixes it?
#
# A BPF LSM program loads and attaches even when "bpf" is not an active LSM, but then never runs,
# so the active list (/sys/kernel/security/lsm) is the fact that counts. "lsm=" on the kernel
# command line replaces the compiled-in CONFIG_LSM list as a whole: the fix is the current list
# plus bpf, never a fixed list (that would silently drop AppArmor or SELinux).

import contextlib
import errno
import gzip
import os
import re
import subprocess

from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import read_mountinfo

# The oldest kernel whose verifier accepts the program: bpf_loop (5.17), bpf_task_pt_regs (5.15), atomic
# exchange (5.12); BPF LSM itself is 5.7. tests/unit/test_kernel_floor.py derives it from the object.
MIN_KERNEL = (5, 17)
MIN_KERNEL_WHY = "bpf_loop, which the enforcer's programs use"
# Kernels that backport BPF features past their version (RHEL's): judged by the trial load instead.
_BACKPORTING = re.compile(r"\.el\d+")
# arm64 got BPF trampolines in 6.0, but attaching one to a kernel function (an LSM hook's bpf_lsm_*,
# fentry, fexit) needs ftrace direct calls (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS), arm64's from 6.4:
# on 6.0-6.3 the attach fails with ENOTSUPP (524), as Debian 12's 6.1 arm64 kernel does in the test bed.
MIN_KERNEL_ARM64 = (6, 4)
MIN_LIBBPF = (1, 0)        # older libbpf can't parse the BTF of 6.0+ kernels (ENUM64)

SECURITYFS = "/sys/kernel/security"
LSM_FILE = "sys/kernel/security/lsm"
BTF_FILE = "sys/kernel/btf/vmlinux"
BPFFS = "/sys/fs/bpf"
MOUNT_SECURITYFS = "mount -t securityfs securityfs " + SECURITYFS

_VERSION = re.compile(r"\s*(\d+)\.(\d+)")

# Every readiness reason is a record {code, text, fix}: `text` names the problem, `fix` the remedy,
# and `code` is what callers decide on (the role, the playbook, the modules); the prose may change,
# the codes don't. Each code with what it means:
REASON_CODES = {
    "kernel_too_old": "the kernel is older than 5.17 (what the program needs) and is no RHEL kernel with backports",
    "kernel_too_old_arm64": "an arm64 kernel older than 6.0, which lacks the BPF trampolines",
    "no_config_bpf_lsm": "the kernel was built without CONFIG_BPF_LSM",
    "bpf_not_in_lsm": "bpf is not an active LSM; bpf in the lsm= boot parameter and a reboot fix it",
    "securityfs_unreadable": "the active LSM list can't be read: securityfs is not mounted",
    "no_lsm_file": "securityfs is mounted but lists no LSMs (a kernel without CONFIG_SECURITY)",
    "no_btf": "the kernel has no BTF (CONFIG_DEBUG_INFO_BTF)",
    "libbpf_missing": "no usable libbpf",
    "libbpf_too_old": "libbpf is older than 1.0",
    "not_root": "loading BPF programs needs root",
    "lsm_load_refused": "the kernel refused a BPF LSM program (EPERM) although the host's files say ready",
    "lsm_probe_failed": "the probe LSM program failed to load or attach for another reason",
    "trial_load_failed": "the enforcer's object failed its trial load",
}


def reason(code, text, fix):
    """A readiness reason record; code is one of REASON_CODES."""
    if code not in REASON_CODES:
        raise KeyError("unknown readiness reason code %r" % (code,))
    return {"code": code, "text": text, "fix": fix}


def reason_line(record):
    """A reason as one line of a message: "text: fix"."""
    return "%s: %s" % (record["text"], record["fix"])


def load_failure_reason(error, code):
    """The reason of a LibbpfError from loading BPF programs (the probe, a trial load): not_root,
    lsm_load_refused (EPERM as root: BPF LSM programs are forbidden here), or else `code`."""
    if error.errno in (errno.EPERM, errno.EACCES) and os.geteuid() != 0:
        return reason("not_root", error.problem, "run it as root (BPF needs CAP_BPF and CAP_SYS_ADMIN)")
    if error.errno == errno.EPERM:
        # The message explains who forbids them (libbpf's LSM advice); the remedy is on that side.
        return reason("lsm_load_refused", str(error),
                      "allow BPF LSM programs on this host (lift the sandbox, lockdown or security policy "
                      "that forbids them), or enforce on hosts that allow them")
    return reason(code, error.problem, error.fix or _LOAD_FAILURE_FIXES[code])


_LOAD_FAILURE_FIXES = {
    "lsm_probe_failed": "BPF LSM programs need a kernel with CONFIG_BPF_LSM=y and CONFIG_DEBUG_INFO_BTF=y and "
                        "bpf in the active LSMs; the error above says what this kernel lacks",
    "trial_load_failed": "rebuild the object from this collection's sources (bpfquota.nfs.bpf_build or "
                         "'bpfquota build'); the error above says what the kernel rejected",
}


def parse_active_lsms(text):
    """The active LSMs, in order, from /sys/kernel/security/lsm ("lockdown,capability,...")."""
    return _split_list(text)


def parse_cmdline_lsm(cmdline):
    """The LSM list of the kernel's "lsm=" parameter (the last one wins), or None when there is none."""
    chosen = None
    for param, value in split_kernel_params(cmdline):
        if param == "--" and value is None:
            break  # everything after "--" is for init, not the kernel
        if param == "lsm" and value is not None:
            chosen = value
    return None if chosen is None else _split_list(chosen)


def split_kernel_params(cmdline):
    """(param, value or None) pairs as the kernel's next_arg() splits them, quotes included."""
    params = []
    rest = cmdline.strip()
    while rest:
        quoted = rest.startswith('"')
        if quoted:
            rest = rest[1:]
        in_quote = quoted
        equals = None
        end = 0
        while end < len(rest):
            char = rest[end]
            if char.isspace() and not in_quote:
                break
            if equals is None and char == "=":
                equals = end
            if char == '"':
                in_quote = not in_quote
            end += 1
        token, rest = rest[:end], rest[end:].lstrip()
        if equals is None:
            param, value = token, None
        else:
            param, value = token[:equals], token[equals + 1:]
        value_quoted = value is not None and value.startswith('"')
        # The kernel drops one closing quote: the one of a quoted value or of a quoted parameter.
        if token.endswith('"') and (quoted or value_quoted):
            if value:
                value = value[:-1]
            else:
                param = param[:-1]
        if value_quoted:
            value = value[1:]
        params.append((param, value))
    return params


def parse_kconfig(text):
    """{"CONFIG_X": value} from a kernel .config; "# CONFIG_X is not set" gives "n", strings lose quotes."""
    config = {}
    for line in text.splitlines():
        line = line.strip()
        unset = re.match(r"#\s*(CONFIG_\w+) is not set$", line)
        if unset:
            config[unset.group(1)] = "n"
            continue
        if not line.startswith("CONFIG_") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        config[name] = value
    return config


def merge_bpf_into_lsm(active):
    """The lsm= list to boot with: every LSM of active, in its order, plus bpf at the end if missing."""
    merged = list(active)
    if "bpf" not in merged:
        merged.append("bpf")
    return merged


def version_tuple(text):
    """(major, minor) from "6.1.0-18-amd64" or "1.3.0", or None when text doesn't start with one."""
    match = _VERSION.match(text or "")
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def readiness(root="/", kernel_release=None, libbpf_version=None, machine=None, mount=True):
    """Facts about BPF LSM on the host whose files are under root, with ready and the reasons why not
    (records: reason()).

    mount: on the live host, as root, mount securityfs when it isn't (False: never, as in check mode
    and in lsm_facts, which change nothing; the unmounted securityfs is then a reason).

    kernel_release defaults to the running kernel's, and machine (for the arm64 limit) to the
    running machine, but only when kernel_release isn't given: a given release describes
    recorded files of some other host. libbpf_version comes from the caller (None: not found).
    """
    if kernel_release is None:
        uname = os.uname()
        kernel_release = uname.release
        machine = machine or uname.machine

    active_text, securityfs_reason = _read_active_lsms(root, mount)
    active = None if active_text is None else parse_active_lsms(active_text)
    cmdline_text = _read_text(root, "proc/cmdline")
    cmdline_lsm = None if cmdline_text is None else parse_cmdline_lsm(cmdline_text)
    kconfig = _read_kconfig(root, kernel_release)
    config_bpf_lsm = None if kconfig is None else kconfig.get("CONFIG_BPF_LSM") == "y"
    config_lsm = None
    if kconfig is not None and "CONFIG_LSM" in kconfig:
        config_lsm = _split_list(kconfig["CONFIG_LSM"])

    facts = {
        "kernel": kernel_release,
        "bpf_lsm_active": active is not None and "bpf" in active,
        "active_lsms": active,
        "cmdline_lsm": cmdline_lsm,
        "config_bpf_lsm": config_bpf_lsm,
        "config_lsm": config_lsm,
        "btf": os.path.exists(os.path.join(root, BTF_FILE)),
        "bpffs": _mounted(root, BPFFS, "bpf"),
        "libbpf_version": libbpf_version,
    }
    facts["proposed_lsm"] = _proposed_lsm(facts)
    reasons = _kernel_reasons(facts, machine)
    if active is None:
        reasons.append(securityfs_reason)
    if not facts["btf"]:
        reasons.append(reason("no_btf", "no BTF at /%s" % (BTF_FILE,), "use a kernel built with CONFIG_DEBUG_INFO_BTF=y"))
    reasons.extend(_libbpf_reasons(libbpf_version))
    facts["ready"] = not reasons
    facts["reasons"] = reasons
    return facts


def _kernel_reasons(facts, machine):
    reasons = []
    release = facts["kernel"]
    version = version_tuple(release)
    # RHEL backports BPF features (and BPF LSM) into older versions: its trial load decides there. Elsewhere
    # (Debian 11's 5.10 has CONFIG_BPF_LSM=y) an older kernel loads the maps and then fails the verifier.
    backports = _BACKPORTING.search(release or "") and (facts["config_bpf_lsm"] or facts["bpf_lsm_active"])
    if version is not None and version < MIN_KERNEL and not backports:
        floor = "%d.%d" % MIN_KERNEL
        return [reason("kernel_too_old", "kernel %s is older than %s, the first with %s" % (release, floor, MIN_KERNEL_WHY),
                       "boot a kernel >= %s with CONFIG_BPF_LSM=y (Debian 12 and later, Ubuntu 22.04 with its HWE "
                       "kernel or 24.04, RHEL 9)" % floor)]
    if version is not None and version < MIN_KERNEL_ARM64 and machine in ("aarch64", "arm64"):
        reasons.append(reason("kernel_too_old_arm64",
                              "kernel %s on arm64 can't attach BPF LSM programs (arm64 has the ftrace direct "
                              "calls their trampolines need from %d.%d)" % ((release,) + MIN_KERNEL_ARM64),
                              "boot a kernel >= %d.%d (Debian 13, or Debian 12's backports kernel)" % MIN_KERNEL_ARM64))
    if facts["config_bpf_lsm"] is False:
        reasons.append(reason("no_config_bpf_lsm", "kernel built without CONFIG_BPF_LSM",
                              "use a kernel with CONFIG_BPF_LSM=y"))
        return reasons
    if facts["bpf_lsm_active"]:
        return reasons
    proposed = ",".join(facts["proposed_lsm"] or ["bpf"])
    cmdline_lsm = facts["cmdline_lsm"]
    if cmdline_lsm is not None and "bpf" not in cmdline_lsm:
        reasons.append(reason("bpf_not_in_lsm",
                              "the boot parameter lsm=%s overrides CONFIG_LSM and lacks bpf, so bpf is not an "
                              "active LSM" % (",".join(cmdline_lsm),),
                              "change it to lsm=%s, e.g. with bpfquota_fix_boot: true, then reboot" % (proposed,)))
    elif facts["active_lsms"] is not None:
        problem = ("bpf is compiled in but not active" if facts["config_bpf_lsm"]
                   else "bpf is not active (kernel config not found: it also needs CONFIG_BPF_LSM=y)")
        reasons.append(reason("bpf_not_in_lsm", "%s (active: %s)" % (problem, ",".join(facts["active_lsms"])),
                              "add bpf to the lsm= boot parameter: lsm=%s, e.g. with bpfquota_fix_boot: true, "
                              "then reboot" % (proposed,)))
    return reasons


def _proposed_lsm(facts):
    """The lsm= list that activates bpf, from the best known current list; None if no change would help."""
    if facts["bpf_lsm_active"] or facts["config_bpf_lsm"] is False:
        return None
    for current in (facts["active_lsms"], facts["cmdline_lsm"], facts["config_lsm"]):
        if current is not None:
            return None if "bpf" in current else merge_bpf_into_lsm(current)
    return None


def _libbpf_reasons(libbpf_version):
    if not libbpf_version:
        return [reason("libbpf_missing", "libbpf not found",
                       "install libbpf >= 1.0 (Debian/Ubuntu: libbpf1, RHEL/Fedora: libbpf)")]
    version = version_tuple(libbpf_version)
    if version is None or version < MIN_LIBBPF:
        return [reason("libbpf_too_old",
                       "libbpf %s is older than 1.0 and can't read the BTF of 6.0+ kernels" % (libbpf_version,),
                       "install libbpf >= 1.0")]
    return []


def proven(facts, probe):
    """facts once the kernel has had its say: when the files say ready, probe() (probe_lsm on
    the live host) loads and attaches a real LSM program, as a kernel may list bpf among its active
    LSMs and still refuse BPF LSM programs. lsm_probe: True, False, or None when not tried."""
    facts["lsm_probe"] = None
    if facts["ready"]:
        try:
            probe()
        except libbpf.LibbpfError as error:
            facts.update(lsm_probe=False, ready=False,
                         reasons=facts["reasons"] + [load_failure_reason(error, "lsm_probe_failed")])
        else:
            facts["lsm_probe"] = True
    return facts


def probe_lsm():
    """Prove this kernel runs BPF LSM programs: libbpf.attach_lsm_probe(), a refusal explained
    (see refusals_explained)."""
    with refusals_explained():
        libbpf.attach_lsm_probe()


@contextlib.contextmanager
def refusals_explained():
    """A refusal of LSM programs (libbpf.LsmRefused) in the block gets why this host refuses them,
    from its active LSM list, and the fix."""
    try:
        yield
    except libbpf.LsmRefused as refused:
        raise refused.explained(refusal_reason())


def refusal_reason(root="/"):
    """Why the host whose files are under root refuses BPF LSM programs (EPERM, as root), and the fix."""
    path = "/" + LSM_FILE
    text = _read_text(root, LSM_FILE)
    active = None if text is None else text.strip()
    if active is None:
        advice = ("%s is unreadable (mount securityfs to see the list); if bpf is missing, add it "
                  "to the lsm= kernel command line and reboot" % path)
    elif "bpf" in parse_active_lsms(active):
        # The bpf LSM is only listed when built in: something else says no.
        advice = ("bpf is active (%s: %r), so a sandbox, lockdown or security policy (seccomp, "
                  "SELinux, a hypervisor) forbids BPF LSM programs on this host" % (path, active))
    else:
        advice = ("bpf is missing from %s (%r): boot with lsm=%s,bpf on the kernel command line"
                  % (path, active, active))
    return ("BPF LSM programs need a kernel built with CONFIG_BPF_LSM=y and 'bpf' in the active LSM "
            "list (%s); %s" % (path, advice))


def gather(root, open_libbpf, probe, mount, warn):
    """What the readiness modules report: readiness() of the host under root, proven by probe().
    open_libbpf() gives the usable Libbpf; when there is none, warn() hears why and libbpf is a reason."""
    try:
        libbpf_version = "%d.%d" % open_libbpf().version
    except libbpf.LibbpfError as error:
        warn("libbpf: %s" % (error,))
        libbpf_version = None
    return proven(readiness(root=root, libbpf_version=libbpf_version, mount=mount), probe)


def _read_active_lsms(root, mount):
    """(text, None) or (None, the reason); on the live host, as root, mounts securityfs first if `mount`."""
    path = os.path.join(root, LSM_FILE)
    try:
        return _read_file(path), None
    except OSError as error:
        problem = error.strerror or str(error)
    no_lsm_file = reason("no_lsm_file", "/%s is missing although securityfs is mounted" % (LSM_FILE,),
                         "use a kernel built with CONFIG_SECURITY=y and CONFIG_BPF_LSM=y")
    if _is_live_root(root) and not os.path.exists(path):
        if _mounted(root, SECURITYFS, "securityfs"):
            return None, no_lsm_file  # mounting again would only stack another securityfs
        if not mount:
            problem = "securityfs not mounted"
        elif os.geteuid() != 0:
            problem = "securityfs not mounted, and mounting it needs root"
        else:
            problem = _mount_securityfs()
            if problem is None:
                try:
                    return _read_file(path), None
                except OSError:
                    return None, no_lsm_file
    return None, reason("securityfs_unreadable", "cannot read /%s (%s)" % (LSM_FILE, problem),
                        "mount securityfs as root: %s" % (MOUNT_SECURITYFS,))


def _mount_securityfs():
    """None when mounted, else why not."""
    try:
        result = subprocess.run(MOUNT_SECURITYFS.split(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return "securityfs not mounted, and %s failed: %s" % (MOUNT_SECURITYFS, error)
    if result.returncode != 0:
        return "securityfs not mounted, and %s failed: %s" % (MOUNT_SECURITYFS, result.stderr.strip())
    return None


def _read_kconfig(root, release):
    """Parsed kernel config from boot/config-<release>, else proc/config.gz; None if neither exists."""
    text = _read_text(root, "boot/config-" + release)
    if text is None:
        try:
            with gzip.open(os.path.join(root, "proc/config.gz"), "rt", errors="replace") as handle:
                text = handle.read()
        except (OSError, EOFError):
            return None
    return parse_kconfig(text)


def _mounted(root, mount_point, fstype):
    """Whether root/proc/self/mountinfo shows a mount of fstype at mount_point."""
    try:
        mounts = read_mountinfo(os.path.join(root, "proc/self/mountinfo"))
    except (OSError, ValueError):
        return False
    return any(m.mount_point == mount_point and m.fstype == fstype for m in mounts)


def _is_live_root(root):
    return os.path.normpath(root) == "/"


def _read_text(root, relative):
    try:
        return _read_file(os.path.join(root, relative))
    except OSError:
        return None


def _read_file(path):
    with open(path, "r", errors="replace") as handle:
        return handle.read()


def _split_list(text):
    return [name.strip() for name in text.strip().split(",") if name.strip()]
