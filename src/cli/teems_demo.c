/* teems-demo: the fastest end-to-end demonstration of what exists today (README, "Run it").
 *
 * One replica's foundations in the sim TEE, in a scratch directory: it seals key-value records
 * into the write-ahead log and a snapshot, reads them back after a "restart", attests its
 * incarnation key, and then plays the host: a flipped byte ends the valid prefix, and a rolled
 * back copy of the data directory opens as an older, perfectly authentic state. That second
 * case is what no local check can catch, and why every restarted replica comes back suspicious
 * and must recover from a read quorum of its peers (DESIGN.md section 4): the quorum sizes that
 * make that work close the demonstration. When the replica daemon exists, the README's first
 * command runs a real cluster instead. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "core/quorum.h"
#include "store/snapshot.h"
#include "store/vfs.h"
#include "store/wal.h"
#include "teems/err.h"
#include "tee/tee.h"

#define DEMO_REPLICA 1
#define PATH_LEN 4096

static char errbuf[TEEMS_ERRBUF_LEN];

static void die(const char *what, int rv)
{
	fprintf(stderr, "teems-demo: %s: %s%s%s\n", what, teems_strerror(rv), errbuf[0] ? ": " : "",
		errbuf);
	exit(1);
}

static void path_join(char *out, const char *dir, const char *name)
{
	if (snprintf(out, PATH_LEN, "%s/%s", dir, name) >= PATH_LEN) {
		fprintf(stderr, "teems-demo: path too long: %s/%s\n", dir, name);
		exit(1);
	}
}

/* Copies every regular file of `from` into the new directory `to`: what a host does when it
 * keeps an old copy of a replica's disk to restart it on later. */
static void copy_dir(const char *from, const char *to)
{
	char src[PATH_LEN], dst[PATH_LEN], buf[1 << 16];
	struct dirent *e;
	DIR *d = opendir(from);

	if (d == NULL || mkdir(to, 0700) != 0) {
		perror("teems-demo: copy");
		exit(1);
	}
	while ((e = readdir(d)) != NULL) {
		ssize_t n;
		int in, out;

		if (e->d_name[0] == '.')
			continue;
		path_join(src, from, e->d_name);
		path_join(dst, to, e->d_name);
		in = open(src, O_RDONLY);
		out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (in < 0 || out < 0) {
			perror("teems-demo: copy");
			exit(1);
		}
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, (size_t)n) != n) {
				perror("teems-demo: copy");
				exit(1);
			}
		close(in);
		close(out);
	}
	closedir(d);
}

/* Flips one byte at `off` bytes from the end of the newest WAL segment in dir. */
static void flip_byte_in_last_segment(const char *dir, long from_end)
{
	char path[PATH_LEN], best[256] = "";
	struct dirent *e;
	DIR *d = opendir(dir);
	unsigned char b;
	int fd;

	while (d != NULL && (e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "wal-", 4) == 0 && strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	if (d != NULL)
		closedir(d);
	path_join(path, dir, best);
	fd = open(path, O_RDWR);
	if (fd < 0 || lseek(fd, -from_end, SEEK_END) < 0 || read(fd, &b, 1) != 1) {
		perror("teems-demo: tamper");
		exit(1);
	}
	b ^= 0x01;
	if (lseek(fd, -from_end, SEEK_END) < 0 || write(fd, &b, 1) != 1) {
		perror("teems-demo: tamper");
		exit(1);
	}
	close(fd);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

struct replay {
	int printed;
};

static int print_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct replay *r = arg;

	printf("      record %llu: %.*s\n", (unsigned long long)index, (int)len,
	       (const char *)data);
	r->printed++;
	return 0;
}

static const char *stop_name(enum store_wal_stop stop)
{
	switch (stop) {
	case STORE_WAL_STOP_CLEAN:
		return "clean end";
	case STORE_WAL_STOP_TORN:
		return "torn record";
	case STORE_WAL_STOP_AUTH:
		return "a record failed to authenticate";
	case STORE_WAL_STOP_SPLICE:
		return "segments that do not continue the chain";
	case STORE_WAL_STOP_ANCHOR:
		return "nothing continues the snapshot";
	}
	return "?";
}

/* Opens the WAL in dir from the snapshot there (if any), printing what a restart recovers. */
static struct store_wal *open_replica(struct store_vfs *vfs, const char *dir, const uint8_t key[32],
				      int print, struct store_wal_info *info)
{
	struct store_wal_opts opts = {.replica_id = DEMO_REPLICA, .root_key = key};
	struct store_wal_pos covers;
	struct replay r = {0};
	struct store_wal *wal;
	void *payload;
	size_t len;
	int rv;

	rv = store_snapshot_load(vfs, dir, DEMO_REPLICA, key, &payload, &len, &covers, errbuf);
	if (rv == TEEMS_OK) {
		if (print)
			printf("      snapshot covering records 1..%llu: %.*s\n",
			       (unsigned long long)covers.index, (int)len, (const char *)payload);
		teems_free(payload);
		opts.anchor = &covers;
	} else if (rv != TEEMS_ENOTFOUND) {
		die("load snapshot", rv);
	}
	opts.on_record = print ? print_record : NULL;
	opts.arg = &r;
	rv = store_wal_open(vfs, dir, &opts, &wal, info, errbuf);
	if (rv != TEEMS_OK)
		die("open WAL", rv);
	return wal;
}

static void append(struct store_wal *wal, const char *record)
{
	int rv = store_wal_append(wal, record, strlen(record), NULL);
	if (rv != TEEMS_OK)
		die("append", rv);
}

int main(int argc, char **argv)
{
	char base[PATH_LEN], platform[PATH_LEN], data[PATH_LEN], stale[PATH_LEN],
		tampered[PATH_LEN];
	uint8_t key[32], root[TEE_PUBLIC_KEY_LEN], meas[TEE_MEASUREMENT_LEN], other[32];
	uint8_t report[TEE_REPORT_DATA_LEN] = {0}, enc[TEE_QUOTE_LEN], pub[TEE_PUBLIC_KEY_LEN];
	struct tee_options topts = {
		.replica_id = DEMO_REPLICA, .cluster_id = "demo", .cluster_id_len = 4};
	struct store_vfs *vfs = store_vfs_posix();
	struct tee_incarnation *inc;
	struct tee_clock_reading now;
	struct store_wal_info info;
	struct store_wal_pos synced;
	struct store_wal *wal;
	struct tee_quote quote;
	struct tee *tee;
	struct quorum q;
	int rv;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: teems-demo [SCRATCH_DIR]\n");
		return 2;
	}
	if (argc == 2) {
		snprintf(base, sizeof(base), "%s", argv[1]);
		if (mkdir(base, 0700) != 0 && errno != EEXIST) {
			perror("teems-demo: mkdir");
			return 1;
		}
	} else {
		snprintf(base, sizeof(base), "%s/teems-demo-XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (mkdtemp(base) == NULL) {
			perror("teems-demo: mkdtemp");
			return 1;
		}
	}
	path_join(platform, base, "platform");
	path_join(data, base, "data");
	path_join(stale, base, "data-stale");
	path_join(tampered, base, "data-tampered");
	if (vfs == NULL || mkdir(data, 0700) != 0) {
		fprintf(stderr, "teems-demo: %s must be a new, empty directory\n", base);
		return 1;
	}

	printf("teems-demo: one replica's foundations in the sim TEE, under %s\n\n", base);
	topts.platform_dir = platform;
	rv = tee_open(&topts, &tee, errbuf);
	if (rv != TEEMS_OK)
		die("open the sim platform", rv);
	tee_measurement(tee, meas);
	tee_clock_now(tee_clock(tee), &now);
	printf("1. platform %s, measurement %02x%02x%02x%02x..., trusted clock %.3f ms after start "
	       "(lo %llu ns, hi %llu ns, epoch %llu)\n",
	       tee_platform_name(tee), meas[0], meas[1], meas[2], meas[3], now.lo_ns / 1e6,
	       (unsigned long long)now.lo_ns, (unsigned long long)now.hi_ns,
	       (unsigned long long)now.epoch);

	/* Attest a fresh incarnation key, as a replica does at boot (DESIGN.md section 4). */
	if ((rv = tee_incarnation_new(&inc, errbuf)) != TEEMS_OK)
		die("incarnation", rv);
	tee_incarnation_public_key(inc, pub);
	memcpy(report, pub, sizeof(pub));
	if ((rv = tee_quote(tee, report, &quote)) != TEEMS_OK)
		die("quote", rv);
	tee_quote_encode(&quote, enc);
	tee_root_public_key(tee, root);
	rv = tee_quote_verify(root, meas, enc, sizeof(enc), NULL);
	memset(other, 0x5a, sizeof(other));
	printf("2. incarnation key %02x%02x%02x%02x... quoted: verifies: %s; against other code: "
	       "%s\n",
	       pub[0], pub[1], pub[2], pub[3], teems_strerror(rv),
	       teems_strerror(tee_quote_verify(root, other, enc, sizeof(enc), NULL)));

	/* Seal records into the WAL: group commit, one fsync. */
	if ((rv = tee_seal_key(tee, "wal", key)) != TEEMS_OK)
		die("sealing key", rv);
	wal = open_replica(vfs, data, key, 0, &info);
	append(wal, "SET greeting hello");
	append(wal, "SET color blue");
	append(wal, "SET count 1");
	if ((rv = store_wal_sync(wal, &synced, errbuf)) != TEEMS_OK)
		die("sync", rv);
	store_wal_close(wal);
	copy_dir(data, stale); /* the host keeps a copy of the disk as it is now */
	wal = open_replica(vfs, data, key, 0, &info);
	append(wal, "SET color green");
	append(wal, "SET count 2");
	if ((rv = store_wal_sync(wal, &synced, errbuf)) != TEEMS_OK)
		die("sync", rv);
	rv = store_snapshot_write(vfs, data, DEMO_REPLICA, key, &synced,
				  "{greeting: hello, color: green, count: 2}", 41, errbuf);
	if (rv != TEEMS_OK)
		die("snapshot", rv);
	append(wal, "SET count 3");
	if ((rv = store_wal_sync(wal, &synced, errbuf)) != TEEMS_OK)
		die("sync", rv);
	store_wal_close(wal);
	copy_dir(data, tampered); /* and another copy, which it will tamper with */
	printf("3. sealed 6 records in 3 group commits and a snapshot after record 5, in %s\n",
	       data);

	printf("4. restart: the replica reads back what it sealed\n");
	wal = open_replica(vfs, data, key, 1, &info);
	store_wal_close(wal);
	printf("      valid prefix ends after record %llu (%s)\n",
	       (unsigned long long)info.end.index, stop_name(info.stop));

	flip_byte_in_last_segment(tampered, 20); /* a ciphertext byte of record 6 */
	wal = open_replica(vfs, tampered, key, 0, &info);
	store_wal_close(wal);
	printf("5. the host flips one byte of record 6: the valid prefix ends after record %llu "
	       "(%s), never a forged record\n",
	       (unsigned long long)info.end.index, stop_name(info.stop));

	wal = open_replica(vfs, stale, key, 0, &info);
	store_wal_close(wal);
	printf("6. the host restarts the replica on its old copy: it opens cleanly at record %llu "
	       "(%s).\n   Authentic but stale, and nothing local can tell: so a restarted replica "
	       "is suspicious until it\n   recovers from a read quorum of its peers.\n",
	       (unsigned long long)info.end.index, stop_name(info.stop));

	if ((rv = quorum_init(&q, 3, 1, 1, errbuf)) != TEEMS_OK)
		die("quorum", rv);
	printf("7. RR quorums for N=3, F=1, M_R=1: write W_Q=%u, read R_Q(0)=%u, and R_Q(1)=%u "
	       "once one reply is suspicious\n",
	       quorum_write(&q), quorum_read(&q, 0), quorum_read(&q, 1));
	rv = quorum_init(&q, 4, 1, 1, errbuf);
	printf("   N=4 with the same bounds is refused: %s\n", errbuf);

	printf("\nThe replicated service itself is not built yet: docs/STATUS.md says what is.\n");
	if (argc == 1 && nftw(base, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0)
		printf("(scratch directory removed; run `teems-demo DIR` to keep one)\n");
	tee_incarnation_free(inc);
	tee_close(tee);
	store_vfs_destroy(vfs);
	return 0;
}
