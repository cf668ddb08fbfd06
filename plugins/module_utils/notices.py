# -*- coding: utf-8 -*-
# Copyright: (c) 2026, bpfquota contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's warnings as journal entries ({FIELD: value}, MESSAGE first), pure: usage crossing a
threshold of the hard limit, crossing the soft limit, grace expiry and recovery (grace.Transition),
and summaries of refusals. Each warning is said once per crossing: the caller keeps what was said
(`warned`) and a threshold is re-armed when usage drops below it."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections

from ansible_collections.bpfquota.nfs.plugins.module_utils import journal
from ansible_collections.bpfquota.nfs.plugins.module_utils.durations import format_duration
from ansible_collections.bpfquota.nfs.plugins.module_utils.events import printable
from ansible_collections.bpfquota.nfs.plugins.module_utils.sizes import format_size

DEFAULT_WARN_PERCENT = (80.0, 95.0)
IDENTIFIER = "bpfquota-agent"
LABEL_FIELDS = (("pv", "BPFQUOTA_PV"), ("namespace", "BPFQUOTA_NAMESPACE"), ("claim", "BPFQUOTA_CLAIM"))
MAX_WHO = 10  # processes named in a refusal summary; the rest are counted

# One volume as a pass sees it.
Volume = collections.namedtuple("Volume", "name labels used_bytes limit_bytes used_files limit_files mode")


def parse_percents(text):
    """The thresholds of "80,95" as sorted floats; "" for none. ValueError names the fix."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part.rstrip("%"))
        except ValueError:
            value = None
        if value is None or not 0 < value <= 100:
            raise ValueError("%r is not a percentage above 0 and at most 100: give e.g. 80,95 (\"\" for none)" % part)
        values.append(value)
    return tuple(sorted(set(values)))


def percent(used, limit):
    return max(used, 0) * 100.0 / limit if limit else 0.0


def crossed(warned, used_percent, thresholds):
    """(thresholds at or below the usage now, those of them newly crossed): a threshold is said
    once, until usage drops below it again."""
    now = frozenset(t for t in thresholds if used_percent >= t)
    return now, sorted(now - frozenset(warned))


def volume_fields(volume):
    """The fields that name a volume and its usage, for every entry about it."""
    fields = collections.OrderedDict()
    fields["BPFQUOTA_VOLUME"] = volume.name
    fields["BPFQUOTA_USED_BYTES"] = max(volume.used_bytes, 0)
    fields["BPFQUOTA_LIMIT_BYTES"] = volume.limit_bytes
    fields["BPFQUOTA_PERCENT"] = "%.1f" % percent(volume.used_bytes, volume.limit_bytes)
    labels = dict(volume.labels)
    for label, field in LABEL_FIELDS:
        if label in labels:
            fields[field] = labels[label]
    return fields


def entry(message, priority, event, volume, **extra):
    """A journal entry: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, BPFQUOTA_EVENT, the volume's fields, `extra`."""
    fields = collections.OrderedDict([("MESSAGE", message), ("PRIORITY", priority), ("SYSLOG_IDENTIFIER", IDENTIFIER),
                                      ("BPFQUOTA_EVENT", event)])
    fields.update(volume_fields(volume))
    for name in sorted(extra):
        fields["BPFQUOTA_" + name.upper()] = extra[name]
    return fields


def _who(volume):
    return "%s%s" % (volume.name, " (pv %s)" % dict(volume.labels)["pv"] if "pv" in dict(volume.labels) else "")


def threshold_entry(volume, threshold):
    return entry("%s uses %s of its %s limit (%.1f%%, past the %g%% warning)"
                 % (_who(volume), format_size(max(volume.used_bytes, 0)), format_size(volume.limit_bytes),
                    percent(volume.used_bytes, volume.limit_bytes), threshold),
                 journal.ERR if threshold >= 95 else journal.WARNING, "threshold", volume, threshold_percent="%g" % threshold)


def transition_entry(volume, transition, now):
    """The entry for a grace.Transition of this volume."""
    unit = "files" if transition.kind == "files" else "bytes"
    shown = (lambda n: "%d files" % n) if unit == "files" else format_size
    extra = {"soft_kind": unit, "soft_limit": transition.soft, "soft_used": transition.used}
    if transition.expires is not None:
        extra["grace_expires"] = int(transition.expires)
    if transition.event == "over":
        left = format_duration(transition.expires - now) if transition.expires is not None else "?"
        return entry("%s is over its soft limit (%s of %s): growth is refused in %s unless it drops to the soft limit"
                     % (_who(volume), shown(transition.used), shown(transition.soft), left),
                     journal.WARNING, "over_soft_limit", volume, **extra)
    if transition.event == "expired":
        verb = "would be refused (audit mode)" if volume.mode == "audit" else "is refused"
        return entry("%s: the grace period over its soft limit has expired (%s of %s): growth %s until it drops to "
                     "the soft limit" % (_who(volume), shown(transition.used), shown(transition.soft), verb),
                     journal.ERR, "grace_expired", volume, **extra)
    return entry("%s is back at or under its soft limit (%s of %s): the grace clock is reset, growth allowed again"
                 % (_who(volume), shown(transition.used), shown(transition.soft)),
                 journal.NOTICE, "under_soft_limit", volume, **extra)


class Refusals:
    """Refusals tallied between summaries. The counters of the maps (vol_stats.denied) are exact;
    the events that name processes are rate limited by the kernel, so "who" is a sample."""

    def __init__(self):
        self.sampled = collections.defaultdict(collections.Counter)  # volume id -> (pid, uid, comm, op) -> n

    def add(self, event, op_name):
        self.sampled[event.vol_id][(event.pid, event.uid, printable(event.comm), op_name)] += 1

    def take(self, vol_id):
        return self.sampled.pop(vol_id, collections.Counter())


def denied_since(before, now):
    """{op: refusals since `before`} from two readings of the counters; a counter that went down
    (the slot was reset: a volume removed and added again) counts from zero."""
    out = {}
    for op, count in now.items():
        delta = count - before.get(op, 0) if count >= before.get(op, 0) else count
        if delta:
            out[op] = delta
    return out


def refusal_summary(volume, by_op, sampled, interval):
    """One entry for the refusals of a volume in the last `interval` seconds ({op: count}, exact),
    with the processes the sampled events name (Counter of (pid, uid, comm, op)); None when none."""
    total = sum(by_op.values())
    if not total:
        return None
    verb = "would have been refused (audit mode)" if volume.mode == "audit" else "refused"
    ops = ", ".join("%s %d" % (op, n) for op, n in sorted(by_op.items(), key=lambda item: (-item[1], item[0])))
    top = sorted(sampled.items(), key=lambda item: (-item[1], item[0]))[:MAX_WHO]
    who = ["pid %d uid %d (%s) %s" % (pid, uid, comm, op) for (pid, uid, comm, op), dummy in top]
    more = len(sampled) - len(top)
    message = "%s: %d operations %s in the last %s (%s)%s" % (
        _who(volume), total, verb, format_duration(interval), ops,
        "; by " + ", ".join(who) + (" and %d more" % more if more > 0 else "") if who else "")
    processes = "\n".join("pid=%d uid=%d comm=%s op=%s events=%d" % (pid, uid, comm, op, n)
                          for (pid, uid, comm, op), n in top)
    return entry(message, journal.WARNING, "refusals", volume, refused=total,
                 refused_by_op=" ".join("%s=%d" % item for item in sorted(by_op.items())),
                 processes=processes, interval_seconds=int(interval))
