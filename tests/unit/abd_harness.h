/* A deterministic in-test network for the RR-ABD core (src/core/abd.h).
 *
 * Nodes are incarnations: node i starts as replica i; h_restart replaces a node's core by a
 * new incarnation restored from a prefix of its WAL; h_fork adds another node that is a second
 * incarnation of a replica (messages to a replica go to the node h_cluster.route names, or to
 * what the route hook says). Every message goes through msg_encode and msg_decode; a filter can
 * drop, deliver or park it (parked messages wait until the test releases them). Each node has a
 * fake WAL (encoded records, checked to round-trip through abd_restore's decoder on restart)
 * and a sync mode. The harness checks the ordering rule of the interface on every synced
 * WRITE_ACK that leaves a node, and records every client operation in a history for
 * teems_lincheck. */
#ifndef TEEMS_TEST_ABD_HARNESS_H
#define TEEMS_TEST_ABD_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/abd.h"
#include "history.h"

#define H_MAX_NODES 10
#define H_MS 1000000ull
#define H_TICK (1 * H_MS)

enum h_sync_mode {
	H_SYNC_NOW = 0,	  /* durable as soon as written */
	H_SYNC_DELAY = 1, /* durable sync_delay after written */
	H_SYNC_HOLD = 2,  /* durable when the test calls h_sync */
};

enum h_verdict {
	H_DELIVER = 0,
	H_DROP = 1,
	H_PARK = 2,
};

struct h_wal_rec {
	uint64_t seq;
	uint8_t *buf;
	size_t len;
	uint8_t *key; /* REGISTER records: for the ordering check */
	uint32_t key_len;
	struct msg_timestamp ts;
	bool reg;
};

struct h_node {
	struct abd *a;
	struct abd_ready r;
	uint16_t replica;
	bool up;
	bool halted;
	bool recovered;
	struct abd_config cfg;
	uint64_t clock_off;
	uint64_t epoch;
	enum h_sync_mode sync;
	uint64_t written, synced, sync_due;
	struct h_wal_rec *wal;
	size_t n_wal, cap_wal;
};

struct h_msg {
	int from;    /* node */
	uint16_t to; /* replica */
	int to_node; /* fixed at send time by route */
	uint8_t *buf;
	size_t len;
	uint64_t deliver_at;
	bool parked;
	bool released; /* unparked: the filter is not asked again */
	enum msg_type type;
};

struct h_pending {
	size_t hist;
	int node;
	bool done;
	enum abd_outcome outcome;
	unsigned rounds;
	bool found;
	uint8_t value[64];
	uint32_t len;
};

struct h_cluster;
typedef enum h_verdict (*h_filter_fn)(struct h_cluster *c, int from, int to_node,
				      const struct msg *m);

struct h_cluster {
	struct quorum q;
	int n;	     /* replicas */
	int n_nodes; /* nodes (forks added after) */
	struct h_node nodes[H_MAX_NODES];
	int route[H_MAX_NODES]; /* replica -> node */
	int (*route_fn)(struct h_cluster *c, int from_node, uint16_t to_replica);
	struct h_msg *msgs;
	size_t nq, capq;
	uint64_t now;
	uint64_t rng;
	/* faults */
	unsigned drop_pct, dup_pct;
	uint64_t max_delay; /* extra random delay (reorders) */
	uint64_t sync_delay;
	h_filter_fn filter;
	void *arg;
	/* clients */
	struct history hist;
	struct h_pending *pend; /* [request_id - 1] */
	size_t n_pend, cap_pend;
	/* checks and counters */
	bool order_violation;
	bool enomem;	   /* a core returned TEEMS_ENOMEM (its node is then down) */
	bool allow_enomem; /* the allocation sweep */
	uint64_t counted_quorums;
	uint64_t sent_by_type[MSG_TYPE_MAX_ + 1];
	uint64_t delivered;
};

/* Called on the base configuration by h_init (NULL: none). */
extern void (*h_cfg_hook)(struct abd_config *cfg);

/* Copied into h_cluster.allow_enomem by h_init (before the cores are created). */
extern bool h_allow_enomem;

/* (N, F, M_R) must fit the formulas. cfg_unsafe and sync apply to every node. */
void h_init(struct h_cluster *c, unsigned n, unsigned f, unsigned m_r, uint64_t seed,
	    enum abd_sync_policy sync, unsigned unsafe);
void h_free(struct h_cluster *c);

/* Random number from the cluster's generator. */
uint64_t h_rand(struct h_cluster *c);

/* One input to node i (ENOMEM handling: the node goes down when allow_enomem). */
void h_step(struct h_cluster *c, int i, const struct abd_input *in);
void h_tick(struct h_cluster *c, int i);
/* Makes node i's written records durable and tells its core. */
void h_sync(struct h_cluster *c, int i);

/* Submits a client op at node i; returns its request id (h_pending index + 1). */
uint64_t h_op(struct h_cluster *c, int i, uint64_t client, enum abd_op op, const char *key,
	      const char *value);
struct h_pending *h_req(struct h_cluster *c, uint64_t id);

/* Delivers one deliverable message (random one if reorder); false if none. */
bool h_deliver_one(struct h_cluster *c);
/* Runs the network and timers for `ns` of virtual time. */
void h_run(struct h_cluster *c, uint64_t ns);
/* Runs until request id is answered or `ns` elapsed; returns done. */
bool h_run_until_done(struct h_cluster *c, uint64_t id, uint64_t ns);
/* Releases parked messages that match (from node or -1, to replica or -1, type or 0). */
size_t h_unpark(struct h_cluster *c, int from, int to, int type);
/* Drops every queued message (parked too) matching the same pattern. */
size_t h_drop(struct h_cluster *c, int from, int to, int type);

/* Crashes node i (its queued outgoing messages stay in flight). */
void h_crash(struct h_cluster *c, int i);
/* New incarnation on node i restored from the first `keep` WAL records (-1: the synced
 * prefix). Suspicious until h_register + h_begin_recovery. */
void h_restart(struct h_cluster *c, int i, long keep);
/* Adds a node that is a second incarnation of replica `replica` restored from node `of`'s
 * synced WAL prefix; returns its index. */
int h_fork(struct h_cluster *c, int of);
/* Registers node i's incarnation at (0, slot) in the configuration of the nodes in `mask`. */
void h_register(struct h_cluster *c, int i, uint64_t slot, uint64_t mask);
void h_begin_recovery(struct h_cluster *c, int i);

/* Checks the recorded history: 0 linearizable and monotonic, 1 violation. */
int h_check(struct h_cluster *c, bool verbose);

#endif
