// SPDX-License-Identifier: GPL-2.0-only
/* Test program of test_libbpf.py: the verifier must reject it (hash lookup without NULL check). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("raw_tp/sched_process_exec")
int BPF_PROG(unchecked_lookup)
{
	__u32 zero = 0;
	__u64 *value = bpf_map_lookup_elem(&values, &zero);

	*value += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
