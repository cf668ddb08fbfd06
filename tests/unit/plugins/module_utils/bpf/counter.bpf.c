// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test program of test_libbpf.py: counts execs. exec_counts[0] counts every exec
 * on the host; exec_counts[1] only execs of the command named in exec_filter, so
 * the tests can expect exact numbers while other processes run.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define COMM_LEN 16

enum { COUNT_ALL = 0, COUNT_MATCHING = 1, NR_COUNTS = 2 };

struct filter {
	char comm[COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_COUNTS);
	__type(key, __u32);
	__type(value, __u64);
} exec_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter);
} exec_filter SEC(".maps");

/* Execs per CPU, for the per-CPU value layout. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu_execs SEC(".maps");

/* Not used by the program: a hash map for the map API round trips. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} scratch SEC(".maps");

/* Lives in the internal .bss map, which map_names() leaves out. */
__u64 last_exec_ns = 0;

static __always_inline void count(__u32 key)
{
	__u64 *value = bpf_map_lookup_elem(&exec_counts, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline int comm_matches(const struct filter *filter)
{
	char comm[COMM_LEN] = {};

	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < COMM_LEN; i++) {
		if (comm[i] != filter->comm[i])
			return 0;
		if (!comm[i])
			return 1;
	}
	return 1;
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(count_exec)
{
	__u32 zero = 0;
	struct filter *filter = bpf_map_lookup_elem(&exec_filter, &zero);
	__u64 *percpu = bpf_map_lookup_elem(&percpu_execs, &zero);

	last_exec_ns = bpf_ktime_get_ns();
	if (percpu)
		*percpu += 1;
	count(COUNT_ALL);
	if (filter && filter->comm[0] && comm_matches(filter))
		count(COUNT_MATCHING);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
