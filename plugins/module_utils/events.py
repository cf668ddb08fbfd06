# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Denial events from the kernel's ring buffer (libbpf ring_buffer__* through ctypes)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ctypes
import errno
import os

from ansible_collections.bpfquota.nfs.plugins.module_utils import layout
from ansible_collections.bpfquota.nfs.plugins.module_utils import libbpf

# typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);
_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


def _ring_buffer_api():
    dll = libbpf.libbpf()._dll
    api = {}
    for name, restype, argtypes in (
            ("ring_buffer__new", ctypes.c_void_p, [ctypes.c_int, _SAMPLE_FN, ctypes.c_void_p, ctypes.c_void_p]),
            ("ring_buffer__consume", ctypes.c_int, [ctypes.c_void_p]),
            ("ring_buffer__epoll_fd", ctypes.c_int, [ctypes.c_void_p]),
            ("ring_buffer__free", None, [ctypes.c_void_p])):
        function = getattr(dll, name)
        function.restype, function.argtypes = restype, argtypes
        api[name] = function
    return api


def printable(text):
    """`text` with every character that isn't printable escaped: a process name is the process's
    to choose, and a newline in it must not start a log line of its own."""
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c) for c in text)


class EventReader:
    """Calls on_event(Event) for each record; readable when epoll_fd() is."""

    def __init__(self, on_event, pin_dir=layout.PIN_DIR):
        self._api = _ring_buffer_api()
        self._on_event = on_event
        self._callback = _SAMPLE_FN(self._on_sample)  # kept referenced: libbpf calls it later
        self._map_fd = libbpf.obj_get(os.path.join(pin_dir, "events"))
        self._rb = self._api["ring_buffer__new"](self._map_fd, self._callback, None, None)
        if not self._rb:
            err = ctypes.get_errno() or errno.EINVAL
            os.close(self._map_fd)
            raise libbpf.LibbpfError("can't read the events ring buffer: %s" % os.strerror(err), err)

    def _on_sample(self, ctx, data, size):
        self._on_event(layout.unpack_event(ctypes.string_at(data, size)))
        return 0

    def epoll_fd(self):
        return self._api["ring_buffer__epoll_fd"](self._rb)

    def consume(self):
        return self._api["ring_buffer__consume"](self._rb)

    def close(self):
        if self._rb:
            self._api["ring_buffer__free"](self._rb)
            self._rb = None
            os.close(self._map_fd)
