/* bench-obj-client DIR FILE ID REPS [STORE_URL]: put and get of FILE as object ID through one
 * long-lived libteems client (include/teems/object.h) on the cluster `teems cluster up` made in
 * DIR, REPS times each, interleaved. Prints the median wall time of each operation in ms:
 *
 *   put MS
 *   get MS
 *
 * bench/objects.sh prints these beside the `teems obj` command rows: the difference is the
 * per-command fixed cost (process start, OpenSSL initialisation, the TLS handshake) that an
 * application keeping a client open pays once. Each operation is the whole put or get: the
 * metadata read, the compare-and-set, encryption and the store transfer. A get writes into
 * FILE.out, truncated first, as `cp` does over its earlier copy. Like the shell rows, every
 * operation starts after a sync(), so none pays for the previous one's writeback. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "teems/err.h"
#include "teems/object.h"

#define MAX_REPS 101

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	struct teems_obj_options o = {0};
	struct teems_obj_client *c;
	char err[TEEMS_ERRBUF_LEN], out[4096];
	double put[MAX_REPS], get[MAX_REPS];
	int reps, rc;

	if (argc < 5 || argc > 6 || (reps = atoi(argv[4])) < 1 || reps > MAX_REPS) {
		fprintf(stderr, "usage: bench-obj-client DIR FILE ID REPS(1-%d) [STORE_URL]\n",
			MAX_REPS);
		return 2;
	}
	snprintf(out, sizeof(out), "%s.out", argv[2]);
	o.cluster_dir = argv[1];
	o.store_url = argc == 6 ? argv[5] : NULL;
	if ((rc = teems_obj_client_open(&o, &c, err)) != TEEMS_OK) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	for (int i = 0; i < reps && rc == TEEMS_OK; i++) {
		int in = open(argv[2], O_RDONLY | O_CLOEXEC), fd;
		double t0;

		if (in < 0) {
			perror(argv[2]);
			rc = TEEMS_EIO;
			break;
		}
		sync();
		t0 = now_ms();
		rc = teems_obj_put_fd(c, argv[3], in, 0, NULL, err);
		put[i] = now_ms() - t0;
		close(in);
		if (rc != TEEMS_OK) {
			fprintf(stderr, "put: %s\n", err);
			break;
		}
		sync();
		t0 = now_ms();
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		rc = fd < 0 ? TEEMS_EIO : teems_obj_get_fd(c, argv[3], fd, NULL, err);
		get[i] = now_ms() - t0;
		if (fd < 0)
			perror(out);
		else
			close(fd);
		if (rc != TEEMS_OK && fd >= 0)
			fprintf(stderr, "get: %s\n", err);
	}
	teems_obj_client_close(c);
	unlink(out);
	if (rc != TEEMS_OK)
		return 1;
	printf("put %.3f\nget %.3f\n", median(put, reps), median(get, reps));
	return 0;
}
