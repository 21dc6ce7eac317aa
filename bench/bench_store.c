/* bench-store DIR [SECONDS [REPS]]: sealed WAL append throughput (DESIGN.md section 7) beside
 * raw write+fdatasync of the same payload bytes on the same file system, for 64 B and 4 KiB
 * records and group commits of 1, 16 and 256 records per fsync.
 *
 * Three ways per cell:
 * - raw: one write() of the group's payload, then fdatasync();
 * - sealed, 1 thread: append the group, then store_wal_sync() (sealing and I/O in series);
 * - sealed, pipelined: the daemon's arrangement: this thread appends and closes groups
 *   (store_wal_sync_prepare) while a worker runs the I/O (store_wal_sync_run): sealing group
 *   k+1 overlaps the write and fsync of group k, and group k+1 is closed once k is durable,
 *   so every fsync is exactly one group (the last column checks it).
 *
 * Each cell runs SECONDS (default 0.4) per repetition, REPS times (default 7), the three
 * ways interleaved in a rotating order; the table shows medians. DIR must exist and be on the disk
 * being measured (not tmpfs). All use fdatasync (as the WAL's POSIX VFS does) and append to one
 * growing file; the WAL's segment size is 1 GiB so no rollover happens inside a run. Throughput
 * counts payload bytes only; the WAL also writes 20 bytes of framing and tag per record. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "store/vfs.h"
#include "store/wal.h"
#include "teems/err.h"

#define MAX_REPS 15

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rv)
{
	fprintf(stderr, "bench-store: %s: %s\n", what, rv ? teems_strerror(rv) : "failed");
	exit(1);
}

/* Removes every file in dir (the WAL segments of the previous run). */
static void clean(struct store_vfs *vfs, const char *dir)
{
	struct store_dirlist l = {0};
	char path[4096];

	if (store_vfs_list(vfs, dir, &l) != TEEMS_OK)
		return;
	for (size_t i = 0; i < l.n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, l.names[i]);
		store_vfs_unlink(vfs, path);
	}
	store_dirlist_free(&l);
}

/* Records per second through the sealed WAL. */
static double run_sealed(struct store_vfs *vfs, const char *dir, const uint8_t *rec, size_t size,
			 size_t group, double seconds)
{
	static const uint8_t key[32] = {42};
	struct store_wal_opts o = {
		.replica_id = 1, .root_key = key, .segment_size = STORE_WAL_SEGMENT_MAX};
	char err[TEEMS_ERRBUF_LEN] = "";
	struct store_wal *wal = NULL;
	uint64_t n = 0;
	double t0, t;
	int rv;

	clean(vfs, dir);
	rv = store_wal_open(vfs, dir, &o, &wal, NULL, err);
	if (rv != TEEMS_OK)
		die(err, rv);
	t0 = now();
	do {
		for (size_t i = 0; i < group; i++)
			if ((rv = store_wal_append(wal, rec, size, NULL)) != TEEMS_OK)
				die("append", rv);
		if ((rv = store_wal_sync(wal, NULL, err)) != TEEMS_OK)
			die(err, rv);
		n += group;
		t = now() - t0;
	} while (t < seconds);
	store_wal_close(wal);
	clean(vfs, dir);
	return (double)n / t;
}

/* The pipelined way: this thread appends and closes groups, a worker runs the I/O. */
struct pipe {
	struct store_wal *wal;
	size_t group;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t closed; /* records in closed groups */
	uint64_t synced; /* records durable */
	uint64_t fsyncs;
	int stop;
};

static void *pipe_io(void *arg)
{
	struct pipe *p = arg;
	char err[TEEMS_ERRBUF_LEN] = "";

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct store_wal_pos pos;
		int rv;

		while (p->synced == p->closed && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->synced == p->closed && p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		rv = store_wal_sync_run(p->wal, &pos, err);
		if (rv != TEEMS_OK)
			die(err, rv);
		pthread_mutex_lock(&p->mu);
		if (pos.index > p->synced)
			p->fsyncs++;
		p->synced = pos.index;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static double run_pipelined(struct store_vfs *vfs, const char *dir, const uint8_t *rec, size_t size,
			    size_t group, double seconds, double *per_fsync)
{
	static const uint8_t key[32] = {42};
	struct store_wal_opts o = {
		.replica_id = 1, .root_key = key, .segment_size = STORE_WAL_SEGMENT_MAX};
	char err[TEEMS_ERRBUF_LEN] = "";
	struct pipe p = {.group = group};
	pthread_t tid;
	double t0, t;
	int rv;

	clean(vfs, dir);
	rv = store_wal_open(vfs, dir, &o, &p.wal, NULL, err);
	if (rv != TEEMS_OK)
		die(err, rv);
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	if (pthread_create(&tid, NULL, pipe_io, &p) != 0)
		die("pthread_create", 0);
	t0 = now();
	do {
		/* Seal the next group while the worker writes and fsyncs the previous one... */
		for (size_t i = 0; i < group; i++)
			if ((rv = store_wal_append(p.wal, rec, size, NULL)) != TEEMS_OK)
				die("append", rv);
		/* ...then close it once that one is durable, so every fsync is one group. */
		pthread_mutex_lock(&p.mu);
		while (p.synced < p.closed)
			pthread_cond_wait(&p.cv, &p.mu);
		if ((rv = store_wal_sync_prepare(p.wal, NULL)) != TEEMS_OK)
			die("prepare", rv);
		p.closed += group;
		pthread_cond_broadcast(&p.cv);
		pthread_mutex_unlock(&p.mu);
	} while (now() - t0 < seconds);
	pthread_mutex_lock(&p.mu);
	p.stop = 1;
	pthread_cond_broadcast(&p.cv);
	pthread_mutex_unlock(&p.mu);
	pthread_join(tid, NULL);
	t = now() - t0;
	*per_fsync = (double)p.synced / (double)(p.fsyncs ? p.fsyncs : 1);
	store_wal_close(p.wal);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	clean(vfs, dir);
	return (double)p.synced / t;
}

/* Records per second with one write of the group's payload and one fdatasync. */
static double run_raw(const char *dir, const uint8_t *buf, size_t size, size_t group,
		      double seconds)
{
	char path[4096];
	uint64_t n = 0;
	double t0, t;
	int fd;

	snprintf(path, sizeof(path), "%s/raw", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open raw", 0);
	t0 = now();
	do {
		size_t len = size * group, done = 0;

		while (done < len) {
			ssize_t w = write(fd, buf + done, len - done);

			if (w <= 0)
				die("write raw", 0);
			done += (size_t)w;
		}
		if (fdatasync(fd) != 0)
			die("fdatasync raw", 0);
		n += group;
		t = now() - t0;
	} while (t < seconds);
	close(fd);
	unlink(path);
	return (double)n / t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = {64, 4096};
	static const size_t groups[] = {1, 16, 256};
	struct store_vfs *vfs;
	double seconds = 0.4;
	int reps = 7;
	uint8_t *buf;
	char dir[4000];

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: bench-store DIR [SECONDS [REPS]]\n");
		return 2;
	}
	if (argc > 2)
		seconds = atof(argv[2]);
	if (argc > 3)
		reps = atoi(argv[3]);
	if (seconds <= 0 || reps < 1 || reps > MAX_REPS) {
		fprintf(stderr, "bench-store: bad SECONDS or REPS (1..%d)\n", MAX_REPS);
		return 2;
	}
	vfs = store_vfs_posix();
	buf = malloc(4096 * 256);
	if (vfs == NULL || buf == NULL)
		die("out of memory", TEEMS_ENOMEM);
	for (size_t i = 0; i < 4096 * 256; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	snprintf(dir, sizeof(dir), "%s/wal", argv[1]);
	if (store_vfs_mkdir(vfs, dir) != TEEMS_OK && store_vfs_mkdir(vfs, dir) != TEEMS_EEXIST)
		die("mkdir", TEEMS_EIO);

	printf("sealed WAL (AES-256-GCM, group commit) vs raw write+fdatasync in %s\n", argv[1]);
	printf("median of %d runs of %.1f s per cell; MB/s counts payload bytes (1 MB = 1e6 B); "
	       "%% = of raw\n\n",
	       reps, seconds);
	printf("%-6s %5s | %9s %8s | %9s %8s %5s | %9s %8s %5s %7s\n", "", "", "raw", "", "sealed,",
	       "1 thread", "", "sealed,", "pipeline", "", "");
	printf("%-6s %5s | %9s %8s | %9s %8s %5s | %9s %8s %5s %7s\n", "record", "group", "rec/s",
	       "MB/s", "rec/s", "MB/s", "%", "rec/s", "MB/s", "%", "rec/fs");
	printf("%.*s\n", 96,
	       "------------------------------------------------------------------"
	       "------------------------------------");
	for (size_t s = 0; s < 2; s++) {
		for (size_t g = 0; g < 3; g++) {
			double raw[MAX_REPS], one[MAX_REPS], pipe[MAX_REPS], pf[MAX_REPS];
			double mr, m1, mp, mpf;

			/* Interleaved, in a rotating order, so that drift in the disk's latency
			 * (shared machines) hits the three ways alike. */
			for (int r = 0; r < reps; r++) {
				for (int k = 0; k < 3; k++) {
					switch ((r + k) % 3) {
					case 0:
						raw[r] = run_raw(dir, buf, sizes[s], groups[g],
								 seconds);
						break;
					case 1:
						one[r] = run_sealed(vfs, dir, buf, sizes[s],
								    groups[g], seconds);
						break;
					default:
						pipe[r] = run_pipelined(vfs, dir, buf, sizes[s],
									groups[g], seconds, &pf[r]);
						break;
					}
				}
			}
			mr = median(raw, reps);
			m1 = median(one, reps);
			mp = median(pipe, reps);
			mpf = median(pf, reps);
			printf("%4zu B %5zu | %9.0f %8.2f | %9.0f %8.2f %4.0f%% | %9.0f %8.2f "
			       "%4.0f%% "
			       "%7.1f\n",
			       sizes[s], groups[g], mr, mr * (double)sizes[s] / 1e6, m1,
			       m1 * (double)sizes[s] / 1e6, 100.0 * m1 / mr, mp,
			       mp * (double)sizes[s] / 1e6, 100.0 * mp / mr, mpf);
			fflush(stdout);
		}
	}
	rmdir(dir);
	free(buf);
	store_vfs_destroy(vfs);
	return 0;
}
