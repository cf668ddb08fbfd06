// SPDX-License-Identifier: GPL-2.0-only
/*
 * createunlink DIR N
 *
 * N times: open(DIR/f-<pid>, O_CREAT|O_WRONLY) + close + unlink, timed with
 * CLOCK_MONOTONIC around the whole loop. Prints "<ops/s> <ops> <seconds>" on
 * one line (one op = create + close + unlink). Exits 1 on any failed call so a
 * refused create can't pass for a fast one, 2 on misuse.
 * Built statically on the host: the test-bed VM has no compiler.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "createunlink: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	char path[4096];
	char *end;
	long n, i;
	double start, elapsed;

	if (argc != 3) {
		fprintf(stderr, "usage: createunlink DIR N\n");
		return 2;
	}
	n = strtol(argv[2], &end, 10);
	if (*end != '\0' || n <= 0) {
		fprintf(stderr, "createunlink: N must be a positive integer\n");
		return 2;
	}
	if (snprintf(path, sizeof(path), "%s/f-%ld", argv[1], (long)getpid()) >= (int)sizeof(path)) {
		fprintf(stderr, "createunlink: DIR too long\n");
		return 2;
	}

	start = now_seconds();
	for (i = 0; i < n; i++) {
		int fd = open(path, O_CREAT | O_WRONLY, 0644);

		if (fd < 0)
			return fail("open", path);
		if (close(fd) < 0)
			return fail("close", path);
		if (unlink(path) < 0)
			return fail("unlink", path);
	}
	elapsed = now_seconds() - start;
	printf("%.1f %ld %.6f\n", n / elapsed, n, elapsed);
	return 0;
}
