# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The volume list: what operators write in inventory or a volumes file, validated
# as a whole so that every mistake is reported at once, plus its canonical form.

import difflib
import json
import math
import os
import re
import stat as stat_module
from collections import namedtuple

from ansible_collections.bpfquota.nfs.plugins.module_utils.layout import MAX_LIMIT, MAX_VOLUMES, MODES, UNKNOWN_USAGE
from ansible_collections.bpfquota.nfs.plugins.module_utils.durations import DurationError, parse_duration
from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import SizeError, parse_size

VOLUME_KEYS = ("path", "source", "limit", "inodes", "soft", "inodes_soft", "grace", "mode", "unknown_usage", "labels")
DEFAULT_KEYS = ("mode", "unknown_usage", "soft", "inodes_soft", "grace")  # top-level defaults of a volumes file
FILE_KEYS = ("volumes",) + DEFAULT_KEYS
DEFAULT_UNKNOWN_USAGE = "refuse"  # of UNKNOWN_USAGE: what a volume does while its usage is unknown (not scanned, nothing saved)
DEFAULT_GRACE = 7 * 86400  # XFS's default grace period: how long a volume may stay over its soft limit

_MODE_HELP = "enforce refuses writes over the limit, audit allows them but counts them"
_UNKNOWN_USAGE_HELP = ("refuse refuses growth until the volume's first scan succeeds, allow counts its usage "
                       "from zero meanwhile")

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")  # Prometheus label names: report and metrics carry them
MAX_META = 4095  # the volume's name and labels, as vol_meta holds them (PATH_MAX bytes with the NUL)

Volume = namedtuple("Volume", ["path", "limit_bytes", "limit_files", "mode", "unknown_usage", "labels",
                               "soft_bytes", "soft_files", "grace_seconds"])
Volume.__new__.__defaults__ = (DEFAULT_UNKNOWN_USAGE, (), 0, 0, 0)
Volume.__doc__ = ("One volume: path is its name, the directory's absolute path or, for a volume addressed by the "
                  "export, 'server:/export/path' (is_source tells); limit_files 0 means no file-count limit; mode "
                  "is 'enforce' or 'audit'; unknown_usage is 'refuse' or 'allow'; labels a sorted tuple of "
                  "(name, value) string pairs; soft_bytes and soft_files the soft limits (0: none), "
                  "grace_seconds how long usage may stay over them (0 when neither is set).")


def is_source(name):
    """True for a volume named by its export (server:/export/path), False for a local path."""
    return not name.startswith("/")


class VolumeError(ValueError):
    """Every problem found, one per line (also as the list `problems`)."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super(VolumeError, self).__init__("\n".join(self.problems))


def validate_volumes(entries, default_mode="enforce", capacity=MAX_VOLUMES, stat=os.stat, examine_paths=True):
    """Check raw entries (mappings with path, limit, inodes, mode) and return Volumes in input order.

    Raises one VolumeError naming every problem, so a run never fixes them one at a time.
    examine_paths=False checks the paths as written only, for paths already examined on this
    mount table (see quota.sync_stamp): not that they exist, nor nesting or bind-mount twins.
    stat is os.stat, a StatMemo shared with the route lookup that follows, or a test's fake
    filesystem (without symbolic links: it then answers lstat too).
    """
    if not isinstance(entries, (list, tuple)):
        raise VolumeError("volumes must be a list of entries with path and limit, not %s: "
                          "write 'volumes: []' for no volumes" % _type_name(entries))
    problems = []
    if default_mode not in MODES:
        problems.append("default mode %r is not one of %s: set the top-level mode to one of them (%s)"
                        % (default_mode, ", ".join(MODES), _MODE_HELP))
    if len(entries) > capacity:
        problems.append("volumes: %d entries, but one host supports at most %d volumes: remove %d of them"
                        % (len(entries), capacity, len(entries) - capacity))
    volumes = []
    located = []  # _Located for every entry whose path is an existing directory
    resolver = _RealPaths(stat) if examine_paths else None
    limits = {}  # parsed limits by (type, text): inventories repeat a few sizes many times
    for index, entry in enumerate(entries):
        volume, where = _check_entry(index, entry, default_mode, resolver, limits, problems)
        if volume is not None:
            volumes.append(volume)
        if where is not None:
            located.append(where)
    reported = _check_duplicate_paths(entries, problems)
    _check_same_directories(located, reported, problems)
    _check_nesting(located, stat, problems)
    if problems:
        raise VolumeError(problems)
    return volumes


# One volume directory as found on disk, for the checks across entries.
_Located = namedtuple("_Located", ["index", "label", "path", "real_path", "identity"])


def _check_entry(index, entry, default_mode, resolver, limits, problems):
    """Append this entry's own problems; return (Volume or None, _Located or None)."""
    if not isinstance(entry, dict):
        problems.append("volumes[%d]: each entry must be a mapping, not %s: write it as "
                        "'- path: /mnt/nfs/pv-a' with 'limit: 50Gi' on the next line" % (index, _type_name(entry)))
        return None, None
    raw_path, raw_source = entry.get("path"), entry.get("source")
    label = _label(index, raw_path if raw_source is None else raw_source)
    count_before = len(problems)
    _check_keys(label, entry, problems)
    where, name = None, raw_path
    if raw_source is None:
        where = _check_path(index, label, raw_path, resolver, problems)
    elif raw_path is not None:
        problems.append("%s: both path and source: give one of them (path: the directory through a mount on this "
                        "host; source: server:/export/path, the export's directory, mounted or not)" % label)
    else:
        name = _check_source(label, raw_source, problems)
    limit_bytes = _check_limit(label, entry.get("limit"), limits, problems)
    limit_files = _check_inodes(label, entry.get("inodes"), problems)
    mode = _check_mode(label, entry.get("mode"), default_mode, problems)
    unknown_usage = _check_unknown_usage(label, entry.get("unknown_usage"), problems)
    labels = _check_labels(label, entry.get("labels"), problems)
    soft_bytes = _check_soft(label, entry.get("soft"), limit_bytes, limits, problems)
    soft_files = _check_inodes_soft(label, entry.get("inodes_soft"), limit_files, problems)
    grace = _check_grace(label, entry.get("grace"), problems)
    grace = grace if soft_bytes or soft_files else 0  # canonical: a grace without a soft limit means nothing
    if len(problems) == count_before and len(volume_meta_text(name, labels).encode("utf-8", "surrogateescape")) > MAX_META:
        problems.append("%s: the name and labels take more than %d bytes: shorten the labels" % (label, MAX_META))
    if len(problems) > count_before:
        return None, where
    return Volume(name, limit_bytes, limit_files, mode, unknown_usage, labels, soft_bytes, soft_files, grace), where


def _label(index, raw_path):
    if isinstance(raw_path, str) and raw_path:
        return "volumes[%d] (%s)" % (index, _shown(raw_path))
    return "volumes[%d]" % index


def _shown(path):
    # a newline in a path must not split a problem over two lines
    return path if path.isprintable() else repr(path)


def _type_name(value):
    """What a wrong value is, for messages: "a string ('50')", "null"."""
    if value is None:
        return "null"
    names = {dict: "a mapping", list: "a list", tuple: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return "%s (%s)" % (names.get(type(value), type(value).__name__), shown)


def _check_keys(label, entry, problems):
    unknown = sorted((key for key in entry if key not in VOLUME_KEYS), key=str)
    for key in unknown:
        close = difflib.get_close_matches(str(key), VOLUME_KEYS, n=1)
        hint = " (did you mean %r?)" % close[0] if close else ""
        problems.append("%s: unknown key %r%s: allowed keys are %s" % (label, key, hint, ", ".join(VOLUME_KEYS)))


def listed_paths(entries):
    """The normalized names of the entries that have one: absolute paths, and sources (the others
    fail validation)."""
    names = []
    for entry in entries:
        name = _entry_name(entry)
        if name is not None:
            names.append(name)
    return names


def _entry_name(entry):
    """An entry's normalized path or source, or None when it has no valid one."""
    if not isinstance(entry, dict):
        return None
    raw_path, raw_source = entry.get("path"), entry.get("source")
    if raw_source is None:
        if isinstance(raw_path, str) and raw_path.startswith("/") and "\0" not in raw_path:
            return normalized_path(raw_path)
        return None
    return normalized_source(raw_source) if raw_path is None else None


def normalized_source(raw_source):
    """'server:/export/path' with its path normalized, or None when it isn't one."""
    if not isinstance(raw_source, str) or "\0" in raw_source:
        return None
    if raw_source.startswith("["):
        host, sep, path = raw_source[1:].partition("]:")
        host_text = "[%s]" % host
    else:
        host, sep, path = raw_source.partition(":")
        host_text = host
    if not sep or not host or not path.startswith("/") or any(c.isspace() or c in "/[]" for c in host):
        return None
    return "%s:%s" % (host_text, normalized_path(path))


def _check_source(label, raw_source, problems):
    """The normalized source, or None (a problem appended)."""
    normal = normalized_source(raw_source)
    if normal is None:
        problems.append("%s: source must be server:/export/path (a host name or address, a colon, an absolute "
                        "path; an IPv6 address in brackets), not %s: write it as kubelet and mount do, e.g. "
                        "nfs-server:/export/pv-a" % (label, _type_name(raw_source)))
        return None
    if normal != raw_source:
        problems.append("%s: source is not normalized: write it as %s" % (label, _shown(normal)))
        return None
    return normal


def _check_labels(label, raw_labels, problems):
    """The labels as a sorted tuple of (name, value) pairs; () when not given."""
    if raw_labels is None:
        return ()
    if not isinstance(raw_labels, dict):
        problems.append("%s: labels must be a mapping of names to strings, not %s: write e.g. "
                        "'labels: {pv: pv-a, namespace: shop, claim: data}'" % (label, _type_name(raw_labels)))
        return ()
    pairs = []
    for name, value in sorted(raw_labels.items(), key=lambda item: str(item[0])):
        if not isinstance(name, str) or not LABEL_NAME.match(name):
            problems.append("%s: label name %s is not a letter or _ followed by letters, digits or _: rename it "
                            "(report and metrics carry it)" % (label, _type_name(name)))
        elif not isinstance(value, str) or "\0" in value:
            problems.append("%s: label %s must be a string, not %s: quote it" % (label, name, _type_name(value)))
        else:
            pairs.append((name, value))
    return tuple(pairs)


def volume_meta_text(name, labels):
    """What vol_meta holds for a volume: its name, then (after a NUL, which no name has) its labels
    as JSON; readers of the name alone stop at the NUL."""
    if not labels:
        return name or ""
    return "%s\0%s" % (name or "", json.dumps(dict(labels), sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def parse_volume_meta(text):
    """(name, labels) of a vol_meta text (volume_meta_text's inverse); labels that don't parse are ()."""
    name, sep, rest = text.partition("\0")
    if not sep:
        return name, ()
    try:
        labels = json.loads(rest)
    except ValueError:
        return name, ()
    return name, tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else ()


def normalized_path(path):
    """The path written without '.', '..', '//' or a trailing slash."""
    if path.startswith("/") and "//" not in path and "/." not in path and (path == "/" or path[-1] != "/"):
        return path  # already normal: the common case, 3 times per volume
    normal = os.path.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")  # POSIX normpath keeps exactly two leading slashes
    return normal


def _check_path(index, label, raw_path, resolver, problems):
    """Append problems with the path; return _Located when it names an existing directory."""
    if raw_path is None:
        problems.append("%s: missing path: add 'path: /mnt/nfs/pv-a' (the volume's directory through a mount on "
                        "this host) or 'source: nfs-server:/export/pv-a' (the export's directory)" % label)
        return None
    if not isinstance(raw_path, str):
        problems.append("%s: path must be a string, not %s: write the directory's absolute path"
                        % (label, _type_name(raw_path)))
        return None
    if "\0" in raw_path:
        problems.append("%s: path contains a NUL byte: write the directory's absolute path" % label)
        return None
    if not raw_path.startswith("/"):
        problems.append("%s: path must be absolute: write the directory's full path, starting with /" % label)
        return None
    normal = normalized_path(raw_path)
    if normal != raw_path:
        problems.append("%s: path is not normalized: write it as %s" % (label, _shown(normal)))
    if resolver is None:
        return None
    try:
        status, real_path = resolver.resolve(raw_path, normal)
    except OSError as error:
        problems.append("%s: %s" % (label, _stat_problem(error)))
        return None
    if not stat_module.S_ISDIR(status.st_mode):
        problems.append("%s: path is not a directory (it is %s): a volume is a directory; "
                        "give the directory that holds the volume's files" % (label, _file_kind(status.st_mode)))
        return None
    return _Located(index, label, raw_path, real_path, (status.st_dev, status.st_ino))


class StatMemo:
    """os.stat that answers each path once: validating volumes and finding their routes both
    stat every volume path, and with 10 000 volumes over NFS each stat counts."""

    def __init__(self, stat=os.stat):
        self.stat = stat
        self._seen = {}

    def __call__(self, path):
        if path not in self._seen:
            self._seen[path] = self.stat(path)
        return self._seen[path]

    def remember(self, path, status):
        self._seen[path] = status


class _RealPaths:
    """Each path's stat and real path, with one realpath() per parent directory.

    realpath() lstat's every component of every path: 10 000 volumes in one NFS directory
    would cost 40 000 lstat calls where one lstat per volume and one realpath of their
    shared parent do. The lstat of a path that isn't a symbolic link is its stat.
    """

    def __init__(self, stat):
        self._stat = stat
        real_stat = getattr(stat, "stat", stat)
        self._lstat = os.lstat if real_stat is os.stat else stat  # a test's fake has no links
        self._real_parents = {}

    def resolve(self, raw_path, normal):
        """(stat of raw_path, its real path); OSError when it can't be examined."""
        if raw_path != normal:  # already a problem; resolve it the slow, exact way
            return self._stat(raw_path), os.path.realpath(normal)
        status = self._lstat(raw_path)
        if stat_module.S_ISLNK(status.st_mode):
            return self._stat(raw_path), os.path.realpath(normal)
        if isinstance(self._stat, StatMemo):
            self._stat.remember(raw_path, status)
        parent, name = os.path.split(normal)
        if not name:
            return status, normal  # "/"
        if parent not in self._real_parents:
            self._real_parents[parent] = os.path.realpath(parent)
        return status, os.path.join(self._real_parents[parent], name)


def _stat_problem(error):
    if isinstance(error, FileNotFoundError):
        return "path does not exist: create the directory first or fix the path"
    if isinstance(error, NotADirectoryError):
        return "path does not exist (one of its parents is not a directory): fix the path"
    if isinstance(error, PermissionError):
        return "path cannot be examined (permission denied): run as root or fix the parent directories' permissions"
    return "path cannot be examined (%s): check that it is reachable (is the NFS export mounted?)" % (
        error.strerror or error)


def _file_kind(mode):
    kinds = ((stat_module.S_ISREG, "a regular file"), (stat_module.S_ISLNK, "a symbolic link"),
             (stat_module.S_ISCHR, "a character device"), (stat_module.S_ISBLK, "a block device"),
             (stat_module.S_ISFIFO, "a FIFO"), (stat_module.S_ISSOCK, "a socket"))
    for test, name in kinds:
        if test(mode):
            return name
    return "not a directory"


def _check_limit(label, raw_limit, limits, problems):
    if raw_limit is None:
        problems.append("%s: missing limit: add e.g. 'limit: 50Gi' (the most bytes the volume may hold)" % label)
        return None
    memo_key = (type(raw_limit), raw_limit) if isinstance(raw_limit, (str, int)) else None
    if memo_key in limits:
        return limits[memo_key]
    try:
        limit_bytes = parse_size(raw_limit)
        if memo_key is not None:
            limits[memo_key] = limit_bytes
        return limit_bytes
    except SizeError as error:
        problems.append("%s: limit: %s" % (label, error))
        return None


def _check_inodes(label, raw_inodes, problems):
    """The file-count limit; 0 when not given."""
    if raw_inodes is None:
        return 0
    count = None
    if isinstance(raw_inodes, int) and not isinstance(raw_inodes, bool):
        count = raw_inodes
    elif isinstance(raw_inodes, str) and raw_inodes.strip().isdigit():
        count = int(raw_inodes.strip())  # Ansible templating renders numbers as strings
    if count is None or not 0 < count <= MAX_LIMIT:
        problems.append("%s: inodes must be a positive whole number of files, not %s: write e.g. "
                        "'inodes: 100000', or leave inodes out for no file-count limit"
                        % (label, _type_name(raw_inodes)))
        return None
    return count


def _percent_of(raw, whole):
    """`whole` * the percentage `raw` ("80%") rounded down; None when raw isn't one (or not 0 < p <= 100)."""
    if not isinstance(raw, str) or not raw.strip().endswith("%"):
        return None
    number = raw.strip()[:-1].strip()
    if not re.match(r"^\d+(\.\d+)?$", number) or not 0 < float(number) <= 100:
        return None
    return int(whole * float(number) / 100)


def _check_soft(label, raw, limit_bytes, limits, problems):
    """The soft byte limit (0: none): a size, or a percentage of the limit, at most the limit."""
    if raw is None:
        return 0
    fix = "write a size such as 'soft: 40Gi' or a share of the limit such as 'soft: 80%'"
    if isinstance(raw, str) and raw.strip().endswith("%"):
        if limit_bytes is None:
            return 0  # the limit's own problem is reported
        soft = _percent_of(raw, limit_bytes)
        if not soft:
            problems.append("%s: soft %s is not a percentage above 0 and at most 100 (of a limit of %d bytes): %s"
                            % (label, _type_name(raw), limit_bytes, fix))
            return None
        return soft
    try:
        soft = parse_size(raw)
    except SizeError as error:
        problems.append("%s: soft: %s" % (label, error))
        return None
    if limit_bytes is not None and soft > limit_bytes:
        problems.append("%s: soft (%d bytes) is above the limit (%d bytes): the soft limit must be at most the limit; "
                        "lower soft or raise limit" % (label, soft, limit_bytes))
        return None
    return soft


def _check_inodes_soft(label, raw, limit_files, problems):
    """The soft file-count limit (0: none): a count, or a percentage of inodes, at most inodes."""
    if raw is None:
        return 0
    if isinstance(raw, str) and raw.strip().endswith("%"):
        if not limit_files:
            return 0  # a share of no file-count limit: none (a default for every volume may say "90%")
        soft = _percent_of(raw, limit_files)
        if soft:
            return soft
    else:
        soft = _check_inodes(label, raw, [])
        if soft and (not limit_files or soft <= limit_files):
            return soft
        if soft:
            problems.append("%s: inodes_soft (%d) is above inodes (%d): the soft limit must be at most the limit; "
                            "lower inodes_soft or raise inodes" % (label, soft, limit_files))
            return None
    problems.append("%s: inodes_soft must be a positive whole number of files or a percentage of inodes, not %s: "
                    "write e.g. 'inodes_soft: 90000' or 'inodes_soft: 90%%', or leave it out" % (label, _type_name(raw)))
    return None


def _check_grace(label, raw, problems):
    """The grace period in seconds; DEFAULT_GRACE when not given."""
    if raw is None:
        return DEFAULT_GRACE
    try:
        return parse_duration(raw)
    except DurationError as error:
        problems.append("%s: grace %s" % (label, error))
        return None


def _check_mode(label, raw_mode, default_mode, problems):
    if raw_mode is None:
        return default_mode  # a bad default is reported once, not for every entry
    if raw_mode not in MODES:
        problems.append("%s: unknown mode %r: choose one of %s (%s)" % (label, raw_mode, ", ".join(MODES), _MODE_HELP))
        return None
    return raw_mode


def _check_unknown_usage(label, raw, problems):
    if raw is None:
        return DEFAULT_UNKNOWN_USAGE
    if raw not in UNKNOWN_USAGE:
        problems.append("%s: unknown_usage must be one of %s, not %s (%s)"
                        % (label, ", ".join(UNKNOWN_USAGE), _type_name(raw), _UNKNOWN_USAGE_HELP))
        return None
    return raw


def _check_duplicate_paths(entries, problems):
    """Report paths listed twice (also when written differently); return the index pairs reported."""
    first_by_path = {}
    reported = set()
    for index, entry in enumerate(entries):
        normal = _entry_name(entry)
        if normal is None:
            continue
        if normal not in first_by_path:
            first_by_path[normal] = index
            continue
        first = first_by_path[normal]
        kind = "source" if is_source(normal) else "path"
        written = entry.get("path") if kind == "path" else entry.get("source")
        problems.append("%s: duplicate %s, already listed as volumes[%d]: keep one entry per directory"
                        % (_label(index, written), kind, first))
        reported.add((first, index))
    return reported


def _check_same_directories(located, reported, problems):
    """Report two paths that reach one directory, e.g. through a bind mount or a symlink."""
    first_by_identity = {}
    for where in located:
        first = first_by_identity.setdefault(where.identity, where)
        if first is where or (first.index, where.index) in reported:
            continue
        problems.append("volumes[%d] and volumes[%d] are the same directory (%s and %s, reached through a bind "
                        "mount or a symlink): keep one of them"
                        % (first.index, where.index, _shown(first.path), _shown(where.path)))


def _check_nesting(located, stat, problems):
    """Report each volume inside another volume's directory, naming the nearest one.

    An ancestor of a real path is exactly a path that the real path extends past a
    separator, so matching ancestors' real paths is the separator-bounded prefix test;
    matching their (st_dev, st_ino) catches nesting through a bind mount as well.
    """
    by_real_path = {}
    by_identity = {}
    for where in located:
        by_real_path.setdefault(where.real_path, where)
        by_identity.setdefault(where.identity, where)
    identity_cache = {}
    clear = set()  # ancestors known to hold no volume, at or above them: siblings stop there
    for inner in located:
        passed = []
        for ancestor in _ancestors(inner.real_path):
            if ancestor in clear:
                clear.update(passed or ())
                break
            outer = by_real_path.get(ancestor)
            if outer is None:
                outer = by_identity.get(_identity(ancestor, stat, identity_cache))
            if outer is None:
                passed.append(ancestor)
                continue
            if outer.identity == inner.identity:
                passed = None  # this walk can't vouch for the ancestors it passed
                continue
            via = "" if ancestor == outer.real_path else ", reached through %s" % _shown(ancestor)
            problems.append("%s is inside %s%s: nested volumes are not supported in this version: "
                            "put the limit on one of them" % (inner.label, outer.label, via))
            break
        else:
            if passed is not None:
                clear.update(passed)


def _ancestors(path):
    """Parents of a normalized absolute path, nearest first, ending with '/'."""
    end = path.rfind("/")
    while end > 0:
        yield path[:end]
        end = path.rfind("/", 0, end)
    if path != "/":
        yield "/"


def _identity(path, stat, cache):
    if path not in cache:
        try:
            status = stat(path)
            cache[path] = (status.st_dev, status.st_ino)
        except OSError:
            cache[path] = None  # an unreadable ancestor cannot be matched; the path test still applies
    return cache[path]


def load_volumes_file(path):
    """Read a YAML (or, for *.json, JSON) file {volumes: [...], mode: ..., unknown_usage: ...} and
    return its raw entries.

    A top-level mode or unknown_usage is copied into the entries that have none. Raises VolumeError
    naming the file and the fix when it cannot be read or has the wrong shape.
    """
    text = _read_text(path)
    if path.lower().endswith(".json"):
        document = _parse_json(path, text)
    else:
        document = _parse_yaml(path, text)
    entries, defaults = _document_parts(path, document)
    if not defaults:
        return entries
    return [with_defaults(entry, defaults) for entry in entries]


def _read_text(path):
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        raise VolumeError("%s: file does not exist: create it with a top-level 'volumes:' list "
                          "('volumes: []' for no volumes)" % path)
    except IsADirectoryError:
        raise VolumeError("%s: is a directory: give the path of the volumes file (YAML or JSON)" % path)
    except PermissionError:
        raise VolumeError("%s: cannot read the file (permission denied): run as root or make it readable" % path)
    except OSError as error:
        raise VolumeError("%s: cannot read the file (%s): check the path" % (path, error.strerror or error))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise VolumeError("%s: not UTF-8 text (bad byte at offset %d): save the file as UTF-8" % (path, error.start))


def _parse_json(path, text):
    try:
        return json.loads(text)
    except ValueError as error:
        line = getattr(error, "lineno", 0)
        where = " at line %d, column %d" % (line, getattr(error, "colno", 0)) if line else ""
        message = getattr(error, "msg", str(error))
        raise VolumeError("%s: JSON syntax error%s: %s: fix the JSON" % (path, where, message))


def _parse_yaml(path, text):
    try:
        import yaml
    except ImportError:
        raise VolumeError("%s: reading YAML needs the PyYAML package: install python3-yaml (apt/dnf) or "
                          "'pip install PyYAML', or write the file as JSON with a .json name" % path)
    # libyaml's loader, when PyYAML has it, reads a 10 000-volume file ~10x faster
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # nosec: a safe loader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).replace("\n", " ")
        raise VolumeError("%s: YAML syntax error%s: %s: fix the YAML (check indentation, and quote values "
                          "containing ': ' or '#')" % (path, where, problem))


def _document_parts(path, document):
    """(entries, {top-level key: default of the entries}) from a parsed file, or VolumeError with every
    shape problem."""
    if document is None:
        raise VolumeError("%s: the file is empty: write a top-level 'volumes:' list ('volumes: []' for no volumes)"
                          % path)
    if not isinstance(document, dict):
        hint = ": put the list under a top-level 'volumes:' key" if isinstance(document, list) else ""
        raise VolumeError("%s: the top level must be a mapping with a 'volumes' list, not %s%s"
                          % (path, _type_name(document), hint))
    problems = []
    for key in sorted((key for key in document if key not in FILE_KEYS), key=str):
        close = difflib.get_close_matches(str(key), FILE_KEYS, n=1)
        hint = " (did you mean %r?)" % close[0] if close else ""
        problems.append("%s: unknown top-level key %r%s: allowed keys are %s" % (path, key, hint, ", ".join(FILE_KEYS)))
    entries = document.get("volumes")
    if "volumes" not in document:
        problems.append("%s: no 'volumes' key: add a top-level 'volumes:' list ('volumes: []' for no volumes)" % path)
    elif not isinstance(entries, list):
        problems.append("%s: 'volumes' must be a list of entries, not %s: write each entry as '- path: ...' "
                        "('volumes: []' for no volumes)" % (path, _type_name(entries)))
    default_mode = document.get("mode")
    if default_mode is not None and default_mode not in MODES:
        problems.append("%s: unknown top-level mode %r: choose one of %s (%s)"
                        % (path, default_mode, ", ".join(MODES), _MODE_HELP))
    default_unknown_usage = document.get("unknown_usage")
    if default_unknown_usage is not None and default_unknown_usage not in UNKNOWN_USAGE:
        problems.append("%s: top-level unknown_usage must be one of %s, not %s (%s)"
                        % (path, ", ".join(UNKNOWN_USAGE), _type_name(default_unknown_usage), _UNKNOWN_USAGE_HELP))
    if problems:
        raise VolumeError(problems)
    defaults = dict((key, document[key]) for key in DEFAULT_KEYS if document.get(key) is not None)
    return entries, defaults


def with_defaults(entry, defaults):
    """The entry with each of `defaults` ({key: value}) it doesn't set itself."""
    if not isinstance(entry, dict):
        return entry
    missing = dict((key, value) for key, value in defaults.items() if entry.get(key) is None)
    return dict(entry, **missing) if missing else entry


def volumes_to_document(volumes):
    """Canonical form sorted by path: {"volumes": [{path, limit, inodes (if set), mode, unknown_usage (if not
    the default)}]}; limit in bytes."""
    entries = []
    for volume in sorted(volumes, key=lambda volume: volume.path):
        entry = {"source" if is_source(volume.path) else "path": volume.path, "limit": volume.limit_bytes}
        if volume.limit_files:
            entry["inodes"] = volume.limit_files
        if volume.soft_bytes:
            entry["soft"] = volume.soft_bytes
        if volume.soft_files:
            entry["inodes_soft"] = volume.soft_files
        if volume.grace_seconds:
            entry["grace"] = volume.grace_seconds
        entry["mode"] = volume.mode
        if volume.unknown_usage != DEFAULT_UNKNOWN_USAGE:
            entry["unknown_usage"] = volume.unknown_usage
        if volume.labels:
            entry["labels"] = dict(volume.labels)
        entries.append(entry)
    return {"volumes": entries}


VOLUMES_FILE_HEADER = (
    "# The volumes bpfquota enforces on this host, as bpfquota.nfs.quota applied them last (its dest).\n"
    "# bpfquota apply reads it (at boot: bpfquota-apply.service); the module's next run rewrites it.\n")


def volumes_file_text(entries, mode, unknown_usage, defaults=None):
    """A volumes file (YAML, load_volumes_file's format) of raw entries and their defaults (mode,
    unknown_usage, and `defaults`: {soft, inodes_soft, grace} with a value): keys with a value, in
    VOLUME_KEYS order; strings double-quoted (JSON's escapes are YAML's), so the text is the same
    on every host and reads back without PyYAML's help to write it."""
    lines = [VOLUMES_FILE_HEADER.rstrip("\n"), "mode: %s" % _yaml_scalar(mode),
             "unknown_usage: %s" % _yaml_scalar(unknown_usage)]
    lines += ["%s: %s" % (key, _yaml_scalar(defaults[key])) for key in DEFAULT_KEYS[2:]
              if (defaults or {}).get(key) is not None]
    if not entries:
        lines.append("volumes: []")
    else:
        lines.append("volumes:")
    for entry in entries:
        keys = [key for key in VOLUME_KEYS if entry.get(key) is not None]
        keys += sorted((key for key in entry if key not in VOLUME_KEYS and entry[key] is not None), key=str)
        for number, key in enumerate(keys):
            lines.append("%s%s: %s" % ("  - " if number == 0 else "    ", key, _yaml_scalar(entry[key])))
    return "\n".join(lines) + "\n"


def _yaml_scalar(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        value = str(value)  # JSON has no such numbers; the file says what was given (validation refuses it)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = repr(value)
    if isinstance(value, float) and "." not in text:  # YAML 1.1 reads 1e+20 as a string, 1.0e+20 as a float
        text = text.replace("e", ".0e", 1)
    return text


def diff_volumes(current, desired):
    """(added, updated, removed) by path, each sorted by path; updated holds (old, new) pairs."""
    current_by_path = dict((volume.path, volume) for volume in current)
    desired_by_path = dict((volume.path, volume) for volume in desired)
    added = [desired_by_path[path] for path in sorted(desired_by_path) if path not in current_by_path]
    removed = [current_by_path[path] for path in sorted(current_by_path) if path not in desired_by_path]
    updated = []
    for path in sorted(desired_by_path):
        old, new = current_by_path.get(path), desired_by_path[path]
        if old is not None and old[1:] != new[1:]:
            updated.append((old, new))
    return added, updated, removed
