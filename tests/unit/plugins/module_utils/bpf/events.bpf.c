// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test program of test_events.py: on each exec of the command named in ev_filter, submits one
 * struct bq_event (bpf/bpfquota.h, as the enforcer fills it) with the filter's vol_id, op, ret and
 * mode to a ring buffer named "events" like the enforcer's, so EventReader and
 * layout.unpack_event are tested on records the kernel wrote. No LSM support needed.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "../../../../../bpf/bpfquota.h"

#define COMM_LEN 16

struct ev_filter {
	char comm[COMM_LEN];
	__u32 vol_id;
	__u32 op;
	__s32 ret;
	__u32 mode;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ev_filter);
} ev_filter SEC(".maps");

static __always_inline int comm_matches(const char *want, const char *comm)
{
	for (int i = 0; i < COMM_LEN; i++) {
		if (comm[i] != want[i])
			return 0;
		if (!comm[i])
			return 1;
	}
	return 1;
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(emit_event)
{
	__u32 zero = 0;
	struct ev_filter *f = bpf_map_lookup_elem(&ev_filter, &zero);
	char comm[COMM_LEN] = {};

	if (!f || !f->comm[0])
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	if (!comm_matches(f->comm, comm))
		return 0;
	struct bq_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->vol_id = f->vol_id;
	e->op = f->op;
	e->ret = f->ret;
	e->mode = f->mode;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
