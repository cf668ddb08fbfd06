// SPDX-License-Identifier: GPL-2.0-only
/*
 * Write paths Python's stdlib can't reach, for the in-VM tests:
 *   wpath aio FILE      one 4 KiB append with Linux native AIO (io_submit)
 *   wpath io_uring FILE one 4 KiB append with io_uring (IORING_OP_WRITE)
 * Prints "ok" or the errno name's number ("errno N") and exits 0 when the
 * write path itself worked (so the caller judges the errno), 2 on misuse.
 * Built statically on the host: the VM has no compiler.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char buf[4096];

static int report(long res)
{
	if (res >= 0)
		printf("ok %ld\n", res);
	else
		printf("errno %ld\n", -res);
	return 0;
}

static int aio_append(int fd, off_t off)
{
	aio_context_t ctx = 0;
	if (syscall(SYS_io_setup, 1, &ctx) < 0)
		return perror("io_setup"), 1;
	struct iocb cb = { .aio_fildes = fd, .aio_lio_opcode = IOCB_CMD_PWRITE,
			   .aio_buf = (unsigned long)buf, .aio_nbytes = sizeof(buf), .aio_offset = off };
	struct iocb *cbs[1] = { &cb };
	if (syscall(SYS_io_submit, ctx, 1, cbs) != 1)
		return report(-errno); /* refused at submission */
	struct io_event ev;
	if (syscall(SYS_io_getevents, ctx, 1, 1, &ev, NULL) != 1)
		return perror("io_getevents"), 1;
	return report(ev.res);
}

static int uring_append(int fd, off_t off)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int ring = syscall(__NR_io_uring_setup, 4, &p);
	if (ring < 0)
		return perror("io_uring_setup"), 1;
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
	char *cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_CQ_RING);
	struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		return perror("mmap ring"), 1;
	unsigned *tail = (unsigned *)(sq + p.sq_off.tail);
	unsigned mask = *(unsigned *)(sq + p.sq_off.ring_mask);
	unsigned idx = *tail & mask;
	memset(&sqes[idx], 0, sizeof(sqes[idx]));
	sqes[idx].opcode = IORING_OP_WRITE;
	sqes[idx].fd = fd;
	sqes[idx].addr = (unsigned long)buf;
	sqes[idx].len = sizeof(buf);
	sqes[idx].off = off;
	((unsigned *)(sq + p.sq_off.array))[idx] = idx;
	__atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return perror("io_uring_enter"), 1;
	unsigned head = __atomic_load_n((unsigned *)(cq + p.cq_off.head), __ATOMIC_ACQUIRE);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	unsigned cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
	return report(cqes[head & cq_mask].res);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return fprintf(stderr, "usage: wpath aio|io_uring FILE\n"), 2;
	memset(buf, 'u', sizeof(buf));
	int fd = open(argv[2], O_WRONLY | O_CREAT, 0644);
	if (fd < 0)
		return perror("open"), 1;
	struct stat st;
	fstat(fd, &st);
	if (!strcmp(argv[1], "aio"))
		return aio_append(fd, st.st_size);
	if (!strcmp(argv[1], "io_uring"))
		return uring_append(fd, st.st_size);
	return fprintf(stderr, "unknown path %s\n", argv[1]), 2;
}
