/* An in-process cluster of N replica engines (src/server/replica.h) for the unit tests
 * test_replica, test_replica_snap and test_replica_abd: real sim platforms (one fused secret
 * in a temporary directory), real sealed WALs on the posix VFS, the real trusted clock. io.send
 * queues frames that pump_once delivers (frames to closed or halted replicas are lost), fsync
 * jobs run inline, replies are collected by request id. What differs between the tests (sync
 * policy, engine, snapshot settings, how a leader is recognised) is a cluster_opts field. */
#ifndef TEEMS_TESTS_REPLICA_HARNESS_H
#define TEEMS_TESTS_REPLICA_HARNESS_H

#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "server/replica.h"

#define N 3

struct frame {
	uint16_t from, to;
	uint8_t *p;
	size_t len;
	struct frame *next;
};

struct cluster;

struct node {
	struct cluster *c;
	uint16_t id;
	struct replica *r;
	bool want_sync, halted;
	char why[512];
};

struct reply {
	uint16_t node;
	uint64_t conn, req;
	char *bytes;
	size_t len;
};

/* Per-test settings; a NULL string leaves the configuration default. */
struct cluster_opts {
	const char *dir_prefix;	    /* the temporary directory's name: <TMPDIR>/<prefix>-XXXXXX */
	const char *sync;	    /* NULL: "rr" */
	const char *engine;	    /* "abd", or NULL */
	const char *snapshot_every; /* e.g. "20", or NULL */
	const char *wal_segment_bytes; /* e.g. "4KiB", or NULL */
	const char *t_lease;	       /* e.g. "200ms", or NULL */
	unsigned pump_sleep_us;	       /* the pause at the end of pump_once */
	/* wait_leader and wait_fresh ask the Paxos core directly every 10 ms instead of sending
	 * TEEMS.STATUS every 20 ms (so that they add no client requests). */
	bool probe_core;
};

struct cluster {
	char dir[PATH_MAX];
	struct node nodes[N];
	struct frame *head, *tail;
	struct reply *replies;
	size_t n_replies, cap_replies;
	uint64_t next_req;
	bool verbose;
	struct cluster_opts o;
};

/* The replica_io callbacks, for tests that open a replica of their own. */
void on_send(void *ctx, uint16_t to, const uint8_t *p, size_t len);
void on_reply(void *ctx, uint64_t conn, uint64_t req, const uint8_t *p, size_t len);
void on_want_sync(void *ctx);
void on_halt(void *ctx, const char *why);
void on_log(void *ctx, const char *line);
/* An nftw callback that removes every entry (with FTW_DEPTH). */
int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw);

struct cluster *cluster_new_opts(const struct cluster_opts *o);
void cluster_free(struct cluster *c);
/* replica_open for node i; returns its result (err filled, TEEMS_ERRBUF_LEN). */
int node_try_open(struct cluster *c, int i, char *err);
void node_open(struct cluster *c, int i);
void node_close(struct cluster *c, int i);
bool alive(const struct cluster *c, int i);

uint64_t now_ms(void);
/* One round: tick everyone, deliver every queued frame, run the fsync jobs. */
void pump_once(struct cluster *c);
void pump_ms(struct cluster *c, uint64_t ms);

/* Sends argv (NULL-terminated) to replica i as connection `conn`, on behalf of `user` (NULL:
 * a connection that never authenticated); returns the request id. */
uint64_t send_cmd_as(struct cluster *c, int i, uint64_t conn, const char *user,
		     const char *const *words);
/* Sends argv (NULL-terminated) to replica i as connection `conn`; returns the request id. */
uint64_t send_cmd(struct cluster *c, int i, uint64_t conn, const char *const *words);
const struct reply *find_reply(struct cluster *c, uint64_t req);
const char *wait_reply(struct cluster *c, uint64_t req, uint64_t timeout_ms);
/* words to replica i as connection 1; the reply within 3 s. */
const char *run_cmd(struct cluster *c, int i, const char *const *words);

#define CMD(c, i, ...) run_cmd(c, i, (const char *const[]){__VA_ARGS__, NULL})
/* The same, on behalf of a user (NULL: not authenticated). */
#define AS(c, i, user, ...) \
	wait_reply(c, send_cmd_as(c, i, 1, user, (const char *const[]){__VA_ARGS__, NULL}), 3000)

/* TEEMS.STATUS field `key` of replica i into out. */
bool status_field(struct cluster *c, int i, const char *key, char *out, size_t len);
/* The same as a number; fails the test when the field is missing. */
uint64_t status_u64(struct cluster *c, int i, const char *key);
/* Whether replica i's TEEMS.STATUS contains `line`. */
bool status_has(struct cluster *c, int i, const char *line);
/* The replica whose TEEMS.STATUS says role:leader, or -1. */
int find_leader(struct cluster *c);
/* Waits for a leader whose no-op committed (a write on it goes through). */
int wait_leader(struct cluster *c, uint64_t timeout_ms);
/* Waits until replica i's lifecycle is fresh. */
void wait_fresh(struct cluster *c, int i, uint64_t timeout_ms);

/* system(3) on a formatted command; fails the test unless it exits 0. */
void shell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
