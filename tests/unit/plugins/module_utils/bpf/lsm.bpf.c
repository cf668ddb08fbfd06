// SPDX-License-Identifier: GPL-2.0-only
/* Test program of test_libbpf.py: an LSM program that allows everything. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("lsm/file_permission")
int BPF_PROG(allow_all, void *file, int mask)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
