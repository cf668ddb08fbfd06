# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# ctypes binding of the parts of libbpf >= 1.0 needed to load, pin and drive BPF
# objects. Generic on purpose: it knows nothing about bpfquota's maps or programs.
# libbpf 1.x reports errors as NULL + errno (pointer results) or as a negative
# errno (int results); every failure here becomes a LibbpfError carrying .errno.

import collections
import ctypes
import errno
import os

LIBBPF_SONAME = "libbpf.so.1"
MIN_VERSION = (1, 0)

# Flags of bpf_map_update_elem (linux/bpf.h).
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

# enum bpf_map_type (linux/bpf.h).
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_INODE_STORAGE = 28

# enum bpf_prog_type (linux/bpf.h).
BPF_PROG_TYPE_TRACING = 26  # fentry/fexit: BPF trampolines, like LSM programs
BPF_PROG_TYPE_LSM = 29
TRAMPOLINE_TYPES = (BPF_PROG_TYPE_TRACING, BPF_PROG_TYPE_LSM)

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8

# enum libbpf_print_level: DEBUG output is chatty and never explains a failure.
_LIBBPF_DEBUG = 2
_LOG_LINES_KEPT = 500
_LOG_LINES_REPORTED = 25

# How many bytes va_copy() copies on the ABIs where a va_list callback argument
# arrives as a pointer to the va_list state (x86_64: __va_list_tag[1] decays to
# a pointer; aarch64: the 32-byte struct is passed by reference to a copy).
_VA_LIST_SIZES = {"x86_64": 24, "aarch64": 32}
_FALLBACK_MESSAGE_SIZE = 65536


class LibbpfError(Exception):
    """Any failure of the BPF layer; the message says what failed and how to fix it. `problem` is
    the message without the fix and `fix` the fix alone (None when the message names none), for
    callers that keep the two apart (readiness reasons)."""

    def __init__(self, message, err=None, problem=None, fix=None):
        super(LibbpfError, self).__init__(message)
        self.errno = err
        self.problem = message if problem is None else problem
        self.fix = fix


class LsmRefused(LibbpfError):
    """EPERM, as root, for LSM programs (or the fentry/fexit programs serving them): this host has
    BPF LSM off or forbids it. `why` (lsm.refusals_explained() knows it) follows the program names."""

    def __init__(self, what, err, programs, log, why=None):
        hint = "the kernel refused the LSM program%s %s" % ("s" if len(programs) > 1 else "", ", ".join(programs))
        super(LsmRefused, self).__init__(_message(what, err, hint + (": " + why if why else ""), log), err)
        self.what = what
        self.programs = programs
        self.log = log

    def explained(self, why):
        """The same refusal, with why this host refuses and the fix."""
        return LsmRefused(self.what, self.errno, self.programs, self.log, why)


class _BpfMapInfo(ctypes.Structure):
    """Leading fields of struct bpf_map_info; the kernel fills only what we ask for."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class _BpfLinkInfo(ctypes.Structure):
    """Leading fields of struct bpf_link_info (the per-type union is not needed)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
    ]


class _BpfProgInfo(ctypes.Structure):
    """Leading fields of struct bpf_prog_info up to the run statistics (kernel 5.1).

    The zero lengths and NULL pointers tell the kernel not to copy out
    instructions, map ids, symbols or line info.
    """

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),  # a 1-bit field and padding
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),  # counted only while kernel.bpf_stats_enabled=1
        ("run_cnt", ctypes.c_uint64),
    ]


# typedef int (*libbpf_print_fn_t)(enum libbpf_print_level, const char *, va_list);
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_c_void_p = ctypes.c_void_p
_c_char_p = ctypes.c_char_p
_c_int = ctypes.c_int
_c_uint32 = ctypes.c_uint32

# name: (restype, argtypes). Pointers to opaque libbpf structs are c_void_p.
_SIGNATURES = {
    "libbpf_major_version": (_c_uint32, []),
    "libbpf_minor_version": (_c_uint32, []),
    "libbpf_set_print": (_c_void_p, [_PRINT_FN]),
    "libbpf_strerror": (_c_int, [_c_int, _c_char_p, ctypes.c_size_t]),
    "libbpf_num_possible_cpus": (_c_int, []),
    "bpf_object__open_file": (_c_void_p, [_c_char_p, _c_void_p]),
    "bpf_object__load": (_c_int, [_c_void_p]),
    "bpf_object__close": (None, [_c_void_p]),
    "bpf_object__next_map": (_c_void_p, [_c_void_p, _c_void_p]),
    "bpf_object__next_program": (_c_void_p, [_c_void_p, _c_void_p]),
    "bpf_map__name": (_c_char_p, [_c_void_p]),
    "bpf_map__fd": (_c_int, [_c_void_p]),
    "bpf_map__set_pin_path": (_c_int, [_c_void_p, _c_char_p]),
    "bpf_map__is_internal": (ctypes.c_bool, [_c_void_p]),
    "bpf_program__name": (_c_char_p, [_c_void_p]),
    "bpf_program__type": (_c_int, [_c_void_p]),
    "bpf_program__attach": (_c_void_p, [_c_void_p]),
    "bpf_link__fd": (_c_int, [_c_void_p]),
    "bpf_link__pin": (_c_int, [_c_void_p, _c_char_p]),
    "bpf_link__disconnect": (None, [_c_void_p]),
    "bpf_link__destroy": (_c_int, [_c_void_p]),
    "bpf_obj_get": (_c_int, [_c_char_p]),
    "bpf_obj_pin": (_c_int, [_c_int, _c_char_p]),
    "bpf_map_lookup_elem": (_c_int, [_c_int, _c_void_p, _c_void_p]),
    "bpf_map_update_elem": (_c_int, [_c_int, _c_void_p, _c_void_p, ctypes.c_uint64]),
    "bpf_map_delete_elem": (_c_int, [_c_int, _c_void_p]),
    "bpf_map_get_next_key": (_c_int, [_c_int, _c_void_p, _c_void_p]),
    # opts (struct bpf_map_batch_opts *) is always NULL: default flags.
    "bpf_map_lookup_batch": (_c_int, [_c_int, _c_void_p, _c_void_p, _c_void_p, _c_void_p,
                                      ctypes.POINTER(_c_uint32), _c_void_p]),
    "bpf_map_update_batch": (_c_int, [_c_int, _c_void_p, _c_void_p, ctypes.POINTER(_c_uint32), _c_void_p]),
    "bpf_map_delete_batch": (_c_int, [_c_int, _c_void_p, ctypes.POINTER(_c_uint32), _c_void_p]),
    "bpf_obj_get_info_by_fd": (_c_int, [_c_int, _c_void_p, ctypes.POINTER(_c_uint32)]),
    "bpf_map_get_fd_by_id": (_c_int, [_c_uint32]),
    "bpf_prog_get_fd_by_id": (_c_int, [_c_uint32]),
    "bpf_link_get_fd_by_id": (_c_int, [_c_uint32]),
    "libbpf_find_vmlinux_btf_id": (_c_int, [_c_char_p, _c_int]),
    "bpf_map__set_initial_value": (_c_int, [_c_void_p, _c_void_p, ctypes.c_size_t]),
    "btf__load_vmlinux_btf": (_c_void_p, []),
    "btf__parse": (_c_void_p, [_c_char_p, _c_void_p]),
    "btf__free": (None, [_c_void_p]),
    "btf__find_by_name_kind": (_c_int, [_c_void_p, _c_char_p, _c_uint32]),
    "btf__type_by_id": (_c_void_p, [_c_void_p, _c_uint32]),
    "btf__name_by_offset": (_c_char_p, [_c_void_p, _c_uint32]),
}


# The bpf(2) commands and attributes attach_lsm_probe() uses: the kernel's ABI (union bpf_attr), stable.
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_LSM_MAC = 27
PROBE_HOOK = "file_permission"
# mov r0, 0; exit: an LSM program that allows everything.
_PROBE_INSNS = (0x00000000000000b7, 0x0000000000000095)


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", _c_uint32), ("insn_cnt", _c_uint32), ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
        ("log_level", _c_uint32), ("log_size", _c_uint32), ("log_buf", ctypes.c_uint64),
        ("kern_version", _c_uint32), ("prog_flags", _c_uint32), ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _c_uint32), ("expected_attach_type", _c_uint32), ("prog_btf_fd", _c_uint32),
        ("func_info_rec_size", _c_uint32), ("func_info", ctypes.c_uint64), ("func_info_cnt", _c_uint32),
        ("line_info_rec_size", _c_uint32), ("line_info", ctypes.c_uint64), ("line_info_cnt", _c_uint32),
        ("attach_btf_id", _c_uint32), ("attach_prog_fd", _c_uint32), ("pad", _c_uint32),
    ]


class _RawTracepointAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", _c_uint32), ("pad", _c_uint32)]


def _bpf(cmd, attr):
    """bpf(2): (the new fd, 0), or (-1, errno)."""
    libc = _load_libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(_BPF_SYSCALL[os.uname().machine]), ctypes.c_int(cmd), ctypes.byref(attr),
                       _c_uint32(ctypes.sizeof(attr)))
    return (ret, 0) if ret >= 0 else (-1, ctypes.get_errno())


def attach_lsm_probe(lib=None):
    """Load a do-nothing LSM program, attach it to file_permission and drop it at once: the proof
    that this kernel runs BPF LSM programs, with no object and no compiler (a kernel can list bpf
    among its active LSMs and still refuse them). Returns None, or raises LibbpfError why not
    (LsmRefused for EPERM: lsm.probe_lsm() adds why this host refuses, and the fix)."""
    lib = lib or libbpf()
    program = "bq_probe"
    btf_id = lib.libbpf_find_vmlinux_btf_id(PROBE_HOOK.encode(), BPF_LSM_MAC)
    if btf_id < 0:
        raise _error("the LSM hook %s is not in the kernel's BTF" % PROBE_HOOK, -btf_id,
                     "use a kernel built with CONFIG_BPF_LSM=y and CONFIG_DEBUG_INFO_BTF=y")
    insns = (ctypes.c_uint64 * len(_PROBE_INSNS))(*_PROBE_INSNS)
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    attr = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_LSM, insn_cnt=len(_PROBE_INSNS), insns=ctypes.addressof(insns),
                         license=ctypes.addressof(license), log_level=1, log_size=len(log),
                         log_buf=ctypes.addressof(log), prog_name=program.encode(),
                         expected_attach_type=BPF_LSM_MAC, attach_btf_id=btf_id)
    prog_fd, err = _bpf(BPF_PROG_LOAD, attr)
    if prog_fd < 0:
        _raise_load_error("loading a BPF LSM probe program failed", err, [program],
                          log.value.decode("utf-8", "replace").strip())
    try:
        link_fd, err = _bpf(BPF_RAW_TRACEPOINT_OPEN, _RawTracepointAttr(name=0, prog_fd=prog_fd))
        if link_fd < 0:
            _raise_load_error("attaching a BPF LSM probe program to %s failed" % PROBE_HOOK, err, [program], None)
        os.close(link_fd)
    finally:
        os.close(prog_fd)


def _load_libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.vsnprintf.restype = ctypes.c_int
    libc.vsnprintf.argtypes = [_c_void_p, ctypes.c_size_t, _c_char_p, _c_void_p]
    return libc


class _LogCapture:
    """The recent WARN/INFO lines libbpf printed, so errors can quote them."""

    def __init__(self, libc):
        self._libc = libc
        self._lines = collections.deque(maxlen=_LOG_LINES_KEPT)
        self._va_list_size = _VA_LIST_SIZES.get(os.uname().machine)
        # Kept referenced: libbpf holds the raw function pointer.
        self.callback = _PRINT_FN(self._on_print)

    def clear(self):
        self._lines.clear()

    def tail(self, count=_LOG_LINES_REPORTED):
        return "\n".join(list(self._lines)[-count:])

    def _on_print(self, level, fmt, va_list):
        if level < _LIBBPF_DEBUG:
            text = self._format(fmt, va_list)
            self._lines.extend(line for line in text.splitlines() if line.strip())
        return 0

    def _format(self, fmt, va_list):
        """vsnprintf() the message; measure first on a copy so long verifier logs stay whole."""
        if self._va_list_size is None:
            size = _FALLBACK_MESSAGE_SIZE
        else:
            size = self._libc.vsnprintf(None, 0, fmt, self._va_copy(va_list)) + 1
        buf = ctypes.create_string_buffer(size)
        self._libc.vsnprintf(buf, size, fmt, va_list)
        return buf.value.decode("utf-8", "replace")

    def _va_copy(self, va_list):
        # va_copy() is a plain memory copy of the va_list state on these ABIs.
        copy = ctypes.create_string_buffer(self._va_list_size)
        ctypes.memmove(copy, va_list, self._va_list_size)
        return ctypes.cast(copy, _c_void_p)


class Libbpf:
    """libbpf loaded through ctypes, with typed functions as attributes.

    Use libbpf(): each instance installs its own libbpf_set_print callback, which
    is process-global, so a second instance would take the log over.
    """

    def __init__(self, soname=LIBBPF_SONAME):
        self.soname = soname
        self._dll = self._open(soname)
        self.version = self._read_version()
        self._check_version()
        self._bind_functions()
        self.log = _LogCapture(_load_libc())
        self.libbpf_set_print(self.log.callback)

    @staticmethod
    def _open(soname):
        try:
            return ctypes.CDLL(soname, use_errno=True)
        except OSError as exc:
            raise LibbpfError(
                "%s not found (%s): install the libbpf1 package (Debian/Ubuntu) "
                "or libbpf (RHEL/Fedora)" % (soname, exc), errno.ENOENT)

    def _read_version(self):
        try:
            major = self._dll.libbpf_major_version
            minor = self._dll.libbpf_minor_version
        except AttributeError:
            raise LibbpfError(
                "%s is not libbpf >= 0.6 (it lacks libbpf_major_version): bpfquota needs "
                "libbpf >= %d.%d; install the libbpf1 package" % ((self.soname,) + MIN_VERSION),
                errno.ENOSYS)
        major.restype = minor.restype = _c_uint32
        return (major(), minor())

    def _check_version(self):
        if self.version < MIN_VERSION:
            raise LibbpfError(
                "libbpf %d.%d is too old: bpfquota needs libbpf >= %d.%d; install the "
                "libbpf1 package" % (self.version + MIN_VERSION), errno.ENOSYS)

    def _bind_functions(self):
        for name, (restype, argtypes) in _SIGNATURES.items():
            try:
                function = getattr(self._dll, name)
            except AttributeError:
                raise LibbpfError(
                    "%s %d.%d lacks %s: upgrade libbpf" % ((self.soname,) + self.version + (name,)),
                    errno.ENOSYS)
            function.restype = restype
            function.argtypes = argtypes
            setattr(self, name, function)

    def strerror(self, err):
        buf = ctypes.create_string_buffer(256)
        self.libbpf_strerror(err, buf, len(buf))
        return buf.value.decode("utf-8", "replace")


_LIBBPF = []


def libbpf():
    """The process-wide Libbpf (libbpf_set_print is global, so there is one)."""
    if not _LIBBPF:
        _LIBBPF.append(Libbpf())
    return _LIBBPF[0]


def _fsencode(path):
    return os.fsencode(os.fspath(path))


def _strerror(err):
    # libbpf_strerror also knows libbpf's own codes (4000+, e.g. "BPF object format invalid").
    return _LIBBPF[0].strerror(err) if _LIBBPF else os.strerror(err)


def _message(what, err, hint=None, log=None):
    """What failed for a positive errno, with the fix and libbpf's log tail."""
    message = "%s: %s" % (what, _strerror(err))
    if hint:
        message += "; " + hint
    if log:
        message += "\nlibbpf log (last lines):\n" + log
    return message


def _error(what, err, hint=None, log=None):
    """A LibbpfError for a positive errno: its problem (with libbpf's log tail) and its fix apart."""
    return LibbpfError(_message(what, err, hint, log), err, _message(what, err, None, log), hint)


def _privilege_hint(err):
    if err in (errno.EPERM, errno.EACCES) and os.geteuid() != 0:
        return "BPF needs root (CAP_BPF and CAP_SYS_ADMIN): run as root"
    return None


def _check(ret, what, hint=None):
    """Raise for a negative-errno return of a libbpf int function."""
    if ret < 0:
        raise _error(what, -ret, hint or _privilege_hint(-ret))
    return ret


def _raise_load_error(what, err, lsm_programs, log):
    if os.geteuid() != 0:
        raise _error(what, err, _privilege_hint(err), log)
    if err == errno.EPERM and lsm_programs:
        raise LsmRefused(what, err, lsm_programs, log)
    if err == errno.EACCES:
        raise _error(what, err, "the verifier rejected a program (its log is below)", log)
    raise _error(what, err, None, log)


class BpfObject:
    """One BPF ELF object opened with libbpf; close() (or the with block) frees it."""

    def __init__(self, lib, handle, path):
        self._lib = lib
        self._handle = handle
        self.path = path
        self._pin_paths = {}

    @classmethod
    def open(cls, path, lib=None):
        lib = lib or libbpf()
        if not os.path.isfile(path):
            raise LibbpfError("BPF object file %s not found" % path, errno.ENOENT)
        lib.log.clear()
        handle = lib.bpf_object__open_file(_fsencode(path), None)
        if not handle:
            raise _error("opening BPF object %s failed" % path, ctypes.get_errno(),
                         "is it a BPF ELF object built with clang -target bpf?", lib.log.tail())
        return cls(lib, handle, path)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Free the object; pinned maps and attached links outlive it."""
        if self._handle:
            self._lib.bpf_object__close(self._handle)
            self._handle = None

    def _object(self):
        if not self._handle:
            raise LibbpfError("BPF object %s is already closed" % self.path, errno.EBADF)
        return self._handle

    def _iterate(self, next_function):
        item = next_function(self._object(), None)
        while item:
            yield item
            item = next_function(self._object(), item)

    def _maps(self):
        return dict((self._lib.bpf_map__name(m).decode(), m)
                    for m in self._iterate(self._lib.bpf_object__next_map))

    def _programs(self):
        return dict((self._lib.bpf_program__name(p).decode(), p)
                    for p in self._iterate(self._lib.bpf_object__next_program))

    def _map(self, name):
        maps = self._maps()
        if name not in maps:
            raise LibbpfError("%s has no map named %r (maps: %s)"
                              % (self.path, name, ", ".join(self.map_names())), errno.ENOENT)
        return maps[name]

    def _program(self, name):
        programs = self._programs()
        if name not in programs:
            raise LibbpfError("%s has no program named %r (programs: %s)"
                              % (self.path, name, ", ".join(programs)), errno.ENOENT)
        return programs[name]

    def map_names(self):
        """Maps declared by the program; libbpf's internal .bss/.data/.rodata maps are left out."""
        # libbpf 1.1 names internal maps "<object>.bss", later versions ".bss".
        return [name for name, bpf_map in self._maps().items()
                if not (name.startswith(".") or self._lib.bpf_map__is_internal(bpf_map))]

    def program_names(self):
        return list(self._programs())

    def set_rodata(self, data):
        """The initial value of the object's read-only globals (before load(): the verifier
        then knows them as constants and prunes the branches they rule out)."""
        found = [m for name, m in self._maps().items()
                 if name.endswith(".rodata") and self._lib.bpf_map__is_internal(m)]
        if not found:
            raise LibbpfError("%s has no .rodata: is it this collection's object?" % self.path, errno.ENOENT)
        buf = ctypes.create_string_buffer(bytes(data), len(data))
        _check(self._lib.bpf_map__set_initial_value(found[0], buf, len(data)),
               "setting the .rodata of %s (%d bytes) failed" % (self.path, len(data)),
               "the object and this collection's loader differ: rebuild the object")

    def set_pin_path(self, map_name, path):
        """load() will reuse the map pinned at path (if compatible) or pin the new one there."""
        ret = self._lib.bpf_map__set_pin_path(self._map(map_name), _fsencode(path))
        _check(ret, "setting the pin path of map %r to %s failed" % (map_name, path))
        self._pin_paths[map_name] = path

    def _lsm_programs(self):
        """The LSM programs and the fentry/fexit programs that serve them: what a host without
        BPF LSM (or a sandbox that forbids BPF trampolines) refuses."""
        return [name for name, prog in self._programs().items()
                if self._lib.bpf_program__type(prog) in TRAMPOLINE_TYPES]

    def load(self):
        """Create the maps (reusing pinned ones) and load every program into the kernel."""
        for path in self._pin_paths.values():
            _make_pin_parent(path)
        self._lib.log.clear()
        ret = self._lib.bpf_object__load(self._object())
        if ret < 0:
            _raise_load_error("loading BPF object %s failed" % self.path, -ret,
                              self._lsm_programs(), self._lib.log.tail())

    def map_fd(self, map_name):
        """The map's fd, owned by this object: valid until close()."""
        fd = self._lib.bpf_map__fd(self._map(map_name))
        if fd < 0:
            raise LibbpfError("map %r of %s has no fd: call load() first" % (map_name, self.path),
                              errno.EBADF)
        return fd

    def attach(self, program_name):
        """Attach the program as its SEC() name says; the Link keeps it attached."""
        program = self._program(program_name)
        self._lib.log.clear()
        handle = self._lib.bpf_program__attach(program)
        if not handle:
            is_lsm = self._lib.bpf_program__type(program) in TRAMPOLINE_TYPES
            _raise_load_error("attaching BPF program %r failed" % program_name, ctypes.get_errno(),
                              [program_name] if is_lsm else [], self._lib.log.tail())
        return Link(self._lib, handle, program_name)


def _make_pin_parent(path):
    # libbpf creates only the last directory level itself.
    try:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    except OSError as exc:
        raise LibbpfError("cannot create the pin directory for %s: %s; is bpffs mounted?"
                          % (path, exc.strerror), exc.errno)


def _pin_hint(err):
    if err == errno.EBUSY:
        return ("libbpf pins a link only once: use obj_pin(link.fd, path) or "
                "loader.replace_pinned_link() for another pin")
    if err == errno.EEXIST:
        return "something is already pinned there: unlink it first or use loader.replace_pinned_link()"
    if err == errno.EPERM and os.geteuid() == 0:
        return "pin paths must be on a mounted bpffs (/sys/fs/bpf) and pin names may not contain '.'"
    if err == errno.ENOENT:
        return "the parent directory does not exist"
    return _privilege_hint(err)


class Link:
    """An attached program. destroy() detaches it unless it is pinned (or disconnected)."""

    def __init__(self, lib, handle, program_name):
        self._lib = lib
        self._handle = handle
        self.program_name = program_name
        self.pin_path = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.destroy()

    def _link(self):
        if not self._handle:
            raise LibbpfError("link of %r is already destroyed" % self.program_name, errno.EBADF)
        return self._handle

    @property
    def fd(self):
        return self._lib.bpf_link__fd(self._link())

    def pin(self, path):
        """Pin in bpffs: the program stays attached after this process exits."""
        ret = self._lib.bpf_link__pin(self._link(), _fsencode(path))
        if ret < 0:
            raise _error("pinning the link of %r at %s failed" % (self.program_name, path),
                         -ret, _pin_hint(-ret))
        self.pin_path = os.fspath(path)

    def disconnect(self):
        """After this, destroy() only frees memory and closes the fd: it won't detach."""
        self._lib.bpf_link__disconnect(self._link())

    def destroy(self):
        """Close the link; the kernel detaches the program once no pin or fd holds it."""
        if self._handle:
            handle, self._handle = self._handle, None
            _check(self._lib.bpf_link__destroy(handle),
                   "destroying the link of %r failed" % self.program_name)


def obj_get(path):
    """fd of the map, program or link pinned at path; the caller closes it with os.close()."""
    ret = libbpf().bpf_obj_get(_fsencode(path))
    if ret == -errno.ENOENT:
        raise _error("nothing is pinned at %s" % path, errno.ENOENT,
                     "is bpffs mounted and the object loaded and pinned?")
    return _check(ret, "opening the pinned BPF object %s failed" % path)


def obj_pin(fd, path):
    ret = libbpf().bpf_obj_pin(fd, _fsencode(path))
    if ret < 0:
        raise _error("pinning fd %d at %s failed" % (fd, path), -ret, _pin_hint(-ret))


def map_lookup(fd, key, value_size):
    """The value bytes stored under key (exactly the map's key_size bytes), or None.

    For per-CPU maps value_size is the value size rounded up to 8, times
    num_possible_cpus().
    """
    value = ctypes.create_string_buffer(value_size)
    ret = libbpf().bpf_map_lookup_elem(fd, key, value)
    if ret == -errno.ENOENT:
        return None
    _check(ret, "looking up a key in map fd %d failed" % fd)
    return value.raw


def _update_hint(err):
    if err == errno.EEXIST:
        return "the key exists and BPF_NOEXIST was given"
    if err == errno.ENOENT:
        return "the key does not exist and BPF_EXIST was given"
    if err == errno.E2BIG:
        return "the map is full (max_entries reached)"
    return None


def map_update(fd, key, value, flags=BPF_ANY):
    ret = libbpf().bpf_map_update_elem(fd, key, value, flags)
    if ret < 0:
        raise _error("updating map fd %d failed" % fd, -ret,
                     _update_hint(-ret) or _privilege_hint(-ret))


def map_delete(fd, key):
    """True if the key was deleted, False if it was not there."""
    ret = libbpf().bpf_map_delete_elem(fd, key)
    if ret == -errno.ENOENT:
        return False
    _check(ret, "deleting a key from map fd %d failed" % fd,
           "array map entries cannot be deleted" if ret == -errno.EINVAL else None)
    return True


def _next_key(lib, fd, key, key_size):
    next_key = ctypes.create_string_buffer(key_size)
    ret = lib.bpf_map_get_next_key(fd, key, next_key)
    if ret == -errno.ENOENT:
        return None
    _check(ret, "iterating the keys of map fd %d failed" % fd)
    return next_key.raw


def map_keys(fd, key_size):
    """Yield every key. The following key is fetched before a key is yielded,
    so the caller may delete the key it was given."""
    lib = libbpf()
    key = _next_key(lib, fd, None, key_size)
    while key is not None:
        following = _next_key(lib, fd, key, key_size)
        yield key
        key = following


# Bytes of keys and values one BPF_MAP_LOOKUP_BATCH call copies out at most.
_BATCH_BYTES = 1 << 20


def map_lookup_batch(fd, key_size, value_size, count, token=None):
    """One BPF_MAP_LOOKUP_BATCH of up to `count` entries, starting after `token` (None: at the start).

    Returns (keys, values, n, next token): the n keys and values packed back to back, and the
    token to pass next, None once the map is exhausted. A token is opaque: for hash maps a bucket
    index, for arrays the last index read (so pack(i - 1) starts an array read at index i).
    """
    keys = ctypes.create_string_buffer(key_size * count)
    values = ctypes.create_string_buffer(value_size * count)
    out = ctypes.create_string_buffer(max(key_size, 4))  # a hash map's token is a u32 bucket index
    found = _c_uint32(count)
    ret = libbpf().bpf_map_lookup_batch(fd, token, out, keys, values, ctypes.byref(found), None)
    if ret != -errno.ENOENT:  # ENOENT: the end of the map, after `found` more entries
        _check(ret, "reading a batch of map fd %d failed" % fd)
    n = found.value
    return keys.raw[:n * key_size], values.raw[:n * value_size], n, out.raw if ret == 0 else None


def map_batches(fd, key_size, value_size, token=None, limit=None):
    """Yield (keys, values, n) batches of the whole map, or (arrays) of at most `limit` entries after `token`."""
    per_call = max(1, _BATCH_BYTES // (key_size + value_size))
    while limit is None or limit > 0:
        count = per_call if limit is None else min(per_call, limit)
        try:
            keys, values, n, token = map_lookup_batch(fd, key_size, value_size, count, token)
        except LibbpfError as e:
            if e.errno != errno.ENOSPC or limit is not None:
                raise
            per_call *= 2  # a hash bucket holds more entries than one call may return
            continue
        if n:
            yield keys, values, n
        if limit is not None:
            limit -= n
        if token is None:
            return


def map_update_batch(fd, keys, values, count):
    """Store `count` entries given as packed keys and values (BPF_ANY), in one syscall.

    A hash map without preallocation takes its elements from a per-CPU cache that is refilled
    between syscalls, so one long batch can run it dry (ENOMEM, seen on 6.12 and 6.18 kernels):
    the rest then goes one entry a syscall.
    """
    done = _c_uint32(count)
    ret = libbpf().bpf_map_update_batch(fd, keys, values, ctypes.byref(done), None)
    if ret == -errno.ENOMEM:
        key_size, value_size = len(keys) // count, len(values) // count
        for index in range(done.value, count):
            map_update(fd, keys[index * key_size:(index + 1) * key_size],
                       values[index * value_size:(index + 1) * value_size])
    elif ret < 0:
        raise _error("updating map fd %d failed at entry %d of %d" % (fd, done.value, count), -ret,
                     _update_hint(-ret) or _privilege_hint(-ret))


def map_delete_batch(fd, keys, key_size):
    """Delete the packed `keys` in as few syscalls as possible; keys already gone are skipped.
    Returns how many were deleted."""
    count = len(keys) // key_size
    deleted = offset = 0
    while offset < count:
        done = _c_uint32(count - offset)
        ret = libbpf().bpf_map_delete_batch(fd, keys[offset * key_size:], ctypes.byref(done), None)
        deleted += done.value
        offset += done.value
        if ret == -errno.ENOENT:
            offset += 1  # the kernel stops at a missing key: skip it
        else:
            _check(ret, "deleting a batch of keys from map fd %d failed" % fd)
    return deleted


def _fd_by_id(getter, kind, object_id):
    ret = getter(object_id)
    if ret == -errno.ENOENT:
        raise _error("there is no BPF %s with id %d" % (kind, object_id), errno.ENOENT)
    return _check(ret, "opening BPF %s id %d failed" % (kind, object_id))


def _info(fd, info, kind):
    size = _c_uint32(ctypes.sizeof(info))
    ret = libbpf().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
    _check(ret, "reading the info of BPF %s fd %d failed" % (kind, fd))
    return info


def _info_by_fd_or_id(fd, object_id, getter_name, info_type, kind):
    if (fd is None) == (object_id is None):
        raise LibbpfError("give either an fd or an id of the BPF %s" % kind, errno.EINVAL)
    if fd is not None:
        return _info(fd, info_type(), kind)
    fd = _fd_by_id(getattr(libbpf(), getter_name), kind, object_id)
    try:
        return _info(fd, info_type(), kind)
    finally:
        os.close(fd)


def map_info(fd=None, map_id=None):
    """dict(type, id, key_size, value_size, max_entries, flags, name) of a map fd or id."""
    info = _info_by_fd_or_id(fd, map_id, "bpf_map_get_fd_by_id", _BpfMapInfo, "map")
    return {
        "type": info.type,
        "id": info.id,
        "key_size": info.key_size,
        "value_size": info.value_size,
        "max_entries": info.max_entries,
        "flags": info.map_flags,
        "name": info.name.decode("utf-8", "replace"),
    }


def link_info(fd=None, link_id=None):
    """dict(id, prog_id, type) of a link fd or id; LibbpfError(ENOENT) for a gone id."""
    info = _info_by_fd_or_id(fd, link_id, "bpf_link_get_fd_by_id", _BpfLinkInfo, "link")
    return {"id": info.id, "prog_id": info.prog_id, "type": info.type}


def prog_info(fd=None, prog_id=None):
    """dict(id, name, tag, type, run_time_ns, run_cnt) of a program fd or id; tag is the hex
    program hash; the run statistics stay 0 unless kernel.bpf_stats_enabled=1."""
    info = _info_by_fd_or_id(fd, prog_id, "bpf_prog_get_fd_by_id", _BpfProgInfo, "program")
    return {
        "id": info.id,
        "name": info.name.decode("utf-8", "replace"),
        "tag": bytes(info.tag).hex(),
        "type": info.type,
        "run_time_ns": info.run_time_ns,
        "run_cnt": info.run_cnt,
    }


def num_possible_cpus():
    """CPUs a per-CPU map keeps a value for (not just the online ones)."""
    return _check(libbpf().libbpf_num_possible_cpus(), "counting the possible CPUs failed")
