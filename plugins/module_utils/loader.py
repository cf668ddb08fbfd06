# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load, upgrade and unload the LSM programs; links and maps are pinned so enforcement
outlives this process. An upgrade attaches the new programs before the old ones go."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import shutil
import subprocess
import tempfile

from ansible_collections.bpfquota.nfs.plugins.module_utils import hookbtf
from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf
from ansible_collections.bpfquota.nfs.plugins.module_utils import lsm
from ansible_collections.bpfquota.nfs.plugins.module_utils.bpffs import ensure_bpffs
from ansible_collections.bpfquota.nfs.plugins.module_utils.digest import file_sha256
from ansible_collections.bpfquota.nfs.plugins.module_utils.maps import QuotaMaps, is_loaded
from ansible_collections.bpfquota.nfs.plugins.module_utils.mountinfo import volume_key

DEFAULT_EVENT_GAP_MS = 1000
NFS_MODULE = "/sys/module/nfs"


class ProbeFailed(Exception):
    pass


def pinned_links(link_dir=layout.LINK_DIR):
    try:
        return sorted(os.listdir(link_dir))
    except OSError:
        return []


def status(pin_dir=layout.PIN_DIR):
    """What is loaded: {loaded, sha256, programs: {name: prog id}, pin_dir}."""
    link_dir = os.path.join(pin_dir, "links")
    if not is_loaded(pin_dir) or not pinned_links(link_dir):
        return {"loaded": False, "sha256": None, "programs": {}, "pin_dir": pin_dir}
    programs = program_ids(link_dir)
    with QuotaMaps(pin_dir) as maps:
        sha = maps.config().obj_sha256.hex()
    return {"loaded": True, "sha256": sha, "programs": programs, "pin_dir": pin_dir}


def program_ids(link_dir=layout.LINK_DIR):
    """{program name: prog id} of the pinned links (their pins are named after the programs)."""
    programs = {}
    for name in pinned_links(link_dir):
        fd = libbpf.obj_get(os.path.join(link_dir, name))
        try:
            programs[name] = libbpf.link_info(fd)["prog_id"]
        finally:
            os.close(fd)
    return programs


def ensure_nfs_types(module=NFS_MODULE):
    """The programs read NFS superblocks with the nfs module's own types (CO-RE against its BTF),
    found only while the module is loaded: load it first (best effort: without it, NFS volumes
    refuse growth until the next load)."""
    if not os.path.isdir(module):
        subprocess.call(["modprobe", "-q", "nfs"])


def load(object_path, pin_dir=layout.PIN_DIR, probe=True):
    """Load `object_path` (or upgrade to it). Returns {changed, upgraded, sha256, programs}."""
    ensure_bpffs()
    ensure_nfs_types()
    sha = file_sha256(object_path)
    before = status(pin_dir)
    if before["loaded"] and before["sha256"] == sha:
        return dict(before, changed=False, upgraded=False)
    link_dir = os.path.join(pin_dir, "links")
    os.makedirs(link_dir, exist_ok=True)
    with lsm.refusals_explained(), libbpf.BpfObject.open(object_path) as obj:
        for name in obj.map_names():
            obj.set_pin_path(name, os.path.join(pin_dir, name))
        set_hook_layouts(obj)
        obj.load()
        names = obj.program_names()
        for name in names:
            link = obj.attach(name)
            try:
                replace_pinned_link(link, os.path.join(link_dir, name))
            finally:
                link.destroy()
    for stale in set(pinned_links(link_dir)) - set(names):
        os.unlink(os.path.join(link_dir, stale))
    with QuotaMaps(pin_dir) as maps:
        cfg = maps.config()
        maps.set_config(cfg._replace(gen=cfg.gen or 1, event_gap_ms=cfg.event_gap_ms or DEFAULT_EVENT_GAP_MS,
                                     obj_sha256=bytes.fromhex(sha)))
    if probe:
        try:
            probe_enforcement(pin_dir)
        except ProbeFailed:
            if not before["loaded"]:
                unload(pin_dir)
            raise
    retired = retire_other_abis(pin_dir)
    return dict(status(pin_dir), changed=True, upgraded=before["loaded"] or bool(retired))


def retire_other_abis(pin_dir, pin_root=layout.PIN_ROOT):
    """Unload what an object of another ABI left pinned beside pin_dir (an upgrade across ABIs):
    only once the new programs are attached, so no moment is left unenforced. Returns their dirs."""
    if os.path.dirname(os.path.abspath(pin_dir)) != os.path.abspath(pin_root):
        return []  # a private pin dir (tests): nothing beside it is ours
    retired = []
    for name in sorted(os.listdir(pin_root)):
        other = os.path.join(pin_root, name)
        if other != os.path.abspath(pin_dir) and name[:1] == "v" and name[1:].isdigit():
            shutil.rmtree(other)  # bpffs: unlinking a pin releases the link or map it held
            retired.append(other)
    return retired


def trial_load(object_path):
    """Load the programs into the kernel and drop them at once: the verifier and the LSM
    program type are accepted here, or LibbpfError says why. Nothing is attached or pinned."""
    with lsm.refusals_explained(), libbpf.BpfObject.open(object_path) as obj:
        set_hook_layouts(obj)
        obj.load()


def set_hook_layouts(obj, btf_path=None):
    """Tell the programs their hooks' argument layouts, read from this kernel's BTF (hookbtf)."""
    with hookbtf.KernelBtf(btf_path) as btf:
        try:
            data = hookbtf.rodata(btf)
        except hookbtf.LayoutError as e:
            raise libbpf.LibbpfError(str(e), errno.ENOTSUP)
    obj.set_rodata(data)


def replace_pinned_link(link, pin_path):
    """Make-before-break: pin the attached new link, then rename it over pin_path.

    Both programs are attached between the pin and the rename, so no event is
    missed. The old link loses its pin in the rename and detaches once no fd
    refers to it any more. Works when nothing is pinned at pin_path yet.
    """
    pin_path = os.fspath(pin_path)
    temporary_path = pin_path + "_new"  # bpffs rejects '.' in names
    _unlink_stale_pin(temporary_path)
    # bpf_obj_pin, not bpf_link__pin: libbpf would refuse an already pinned link
    # and remember the temporary path as the link's pin path.
    libbpf.obj_pin(link.fd, temporary_path)
    try:
        os.rename(temporary_path, pin_path)
    except OSError as exc:
        raise libbpf.LibbpfError("replacing the pinned link %s with %s failed: %s"
                                 % (pin_path, temporary_path, exc.strerror), exc.errno)
    link.pin_path = pin_path


def _unlink_stale_pin(path):
    # Left behind when an earlier replacement died between pin and rename.
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise libbpf.LibbpfError("cannot remove the stale pin %s: %s" % (path, exc.strerror), exc.errno)


def unload(pin_dir=layout.PIN_DIR):
    """Detach everything (links go with their pins) and drop the maps. Returns changed."""
    if not os.path.isdir(pin_dir):
        return False
    shutil.rmtree(pin_dir)  # bpffs: unlinking a pin releases the link or map it held
    try:
        os.rmdir(layout.PIN_ROOT)
    except OSError:
        pass
    return True


def probe_enforcement(pin_dir=layout.PIN_DIR, where="/run"):
    """Prove the hooks run: a full volume in a scratch directory must refuse a create.

    A BPF LSM program loads and attaches even when `bpf` is not an active LSM,
    and then never runs; only a real refusal shows enforcement is live.
    """
    scratch = tempfile.mkdtemp(prefix="bpfquota-probe-", dir=where)
    key = volume_key(scratch)
    vol = layout.PROBE_VOLUME
    with QuotaMaps(pin_dir) as maps:
        devs = maps.devs()
        try:
            maps.reset_vol_stats(vol)
            maps.set_vol_cfg(vol, layout.VolCfg(1, 0, 1, 0, layout.MODES["enforce"], 0, 0))
            maps.set_key(key, vol)
            maps.set_dev(key[0], devs.get(key[0], 0) + 1)
            maps.bump_gen()
            try:
                open(os.path.join(scratch, "probe"), "w").close()
            except OSError as e:
                if e.errno == errno.EDQUOT:
                    return
                raise ProbeFailed("the enforcement probe failed unexpectedly: %s" % e)
            raise ProbeFailed(
                "the BPF LSM programs loaded but did not run (a create in a full volume was allowed): "
                "bpf is not an active LSM on this kernel. Add bpf to the lsm= boot parameter "
                "(see 'bpfquota check') and reboot.")
        finally:
            maps.delete_key(key)
            maps.set_dev(key[0], devs.get(key[0], 0))
            maps.set_vol_cfg(vol, layout.VolCfg(0, 0, 0, 0, layout.MODE_UNUSED, 0, 0))
            maps.bump_gen()
            shutil.rmtree(scratch, ignore_errors=True)
