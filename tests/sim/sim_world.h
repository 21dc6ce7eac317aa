/* The simulated world both engines share (sim.h; docs/TESTING.md, "Simulator"): the event
 * queue in virtual time, the seeded random stream, the virtual network, the trusted clocks, the
 * memvfs disks with the Paxos core's sealed WAL and its group fsync, the adversary and its F and
 * M_R bounds, the client driver and its history, and the checkers' plumbing. Internal to
 * tests/sim: sim_world.c implements it, sim.c (the Paxos engine) and sim_abd.c (the ABD engine)
 * plug into it through struct sim_engine.
 *
 * Every replica of either engine runs the RR-Paxos core (in the Paxos engine it orders the
 * client commands, in the ABD engine it is the control plane), so the per-incarnation state of
 * the Paxos core lives here; what an engine adds (the kv state machine, the ABD core and its
 * own WAL) hangs off instance.ext. */
#ifndef TEEMS_SIM_SIM_WORLD_H
#define TEEMS_SIM_SIM_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "core/paxos.h"
#include "core/quorum.h"
#include "history.h"
#include "kv/kv.h"
#include "sim.h"
#include "store/vfs.h"
#include "store/wal.h"

#define US 1000ull
#define MS (1000ull * US)
#define SEC (1000ull * MS)

#define MAX_REPLICAS 16
#define MAX_INSTANCES 1024 /* incarnations over a run */
#define MAX_CLIENTS 32
#define MAX_LIVE (4 * MAX_REPLICAS) /* live instances at once (a replica and its fork) */
enum deferred_kind {
	DEFERRED_AGREEMENT,
	DEFERRED_DISCARD,
	DEFERRED_SUSPICIOUS_VOTE,
	DEFERRED_TWO_INCARNATIONS, /* the ABD engine's */
	/* leases (section 8; the Paxos engine's): two leader leases valid at one real time, a
	 * lease read that misses a committed slot, two client holders of one lease at once */
	DEFERRED_LEASE_EXCLUSIVITY,
	DEFERRED_STALE_LEASE_READ,
	DEFERRED_CLIENT_LEASE,
	DEFERRED_KINDS,
};
#define RHO 0.01

#define T_TICK (5 * MS)
#define T_ELECT (150 * MS)
#define T_HB (50 * MS)
#define T_OP (500 * MS)
#define T_GROUP_SYNC (2 * MS)
#define T_URGENT_SYNC (200 * US)
#define T_CLIENT_TIMEOUT (3 * SEC)
#define T_PROGRESS (30 * SEC) /* after the heal, the final reads must be done by then */
/* A backstop: every op ends within T_CLIENT_TIMEOUT, so the heal comes at the latest after
 * ops * T_CLIENT_TIMEOUT, and the run ends T_PROGRESS later. */
/* Snapshots: every this many applied slots (TEEMS_SIM_SNAPSHOT_EVERY overrides; 0: never),
 * transferred in chunks of this many bytes (TEEMS_SIM_SNAPSHOT_CHUNK), small enough that a
 * run takes and installs many and that most transfers take several chunks. */
#define SIM_SNAPSHOT_EVERY 16
#define SIM_SNAPSHOT_CHUNK 256
#define T_LIMIT(ops) (600 * SEC + (uint64_t)(ops)*T_CLIENT_TIMEOUT)

/* ---- the random stream ---- */

struct rng {
	uint64_t s;
};

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t x = (r->s += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

static inline uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rng_below(r, hi - lo + 1);
}

static inline bool rng_pct(struct rng *r, unsigned pct)
{
	return rng_below(r, 100) < pct;
}

static inline double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

/* ---- events ---- */

enum ev_type {
	EV_TICK,      /* a = instance */
	EV_DELIVER,   /* a = from replica, b = to replica, buf */
	EV_SYNC,      /* a = instance: group fsync */
	EV_PROPOSE,   /* a = attempt: a client request reaches its replica */
	EV_REPLY,     /* a = attempt: the reply reaches the client */
	EV_CLIENT,    /* a = client: start its next op */
	EV_RETRY,     /* a = client, b = attempt: retry after NOT_LEADER or BUSY */
	EV_TIMEOUT,   /* a = client, b = op sequence number */
	EV_ADVERSARY, /* the adversary acts */
	EV_RESTART,   /* a = replica: the host restarts it */
	EV_ENGINE,    /* the engine's own (sim_engine.on_event) */
};

struct event {
	uint64_t time;
	uint64_t seq; /* FIFO among equal times */
	enum ev_type type;
	uint64_t a, b;
	uint8_t *buf;
	size_t len;
};

/* ---- replicas, instances, clients ---- */

struct clock_model {
	uint64_t t0;	/* real time at which this clock started counting */
	uint64_t off;	/* what it read at t0 */
	double rate;	/* true rate, within [1 - rho, 1 + rho] */
	uint64_t epoch; /* taint epoch */
	/* The host's raw clock, which the host controls: it reads h_off at h_t0 and runs at
	 * h_rate. The adversary jumps it and changes its rate (clock_attack); the trusted clock
	 * detects that (a taint, epoch + 1). Only --unsafe trust-host-clock times leases by it. */
	uint64_t h_t0, h_off;
	double h_rate;
};

struct pending_promise {
	uint64_t seq;
	struct msg_ballot promised;
};

struct instance {
	int replica;
	bool alive;
	bool restarted;	       /* began as a restarted incarnation (must register, recover) */
	bool fork;	       /* a second instance the host started while the first runs */
	struct store_vfs *vfs; /* the replica's disk, or the fork's own copy */
	bool own_vfs;
	struct paxos *p;
	struct paxos_ready r;
	struct clock_model clk;
	struct store_wal *wal;
	uint64_t written; /* persist seq appended to the WAL */
	uint64_t synced;  /* persist seq reported durable */
	bool sync_scheduled;
	bool urgent;	  /* a record marked `sync` is waiting */
	uint64_t applied; /* last slot applied here */
	/* For the interface ordering checks: the promise that is durable, the promises of records
	 * not yet synced, and the record that last wrote each slot. */
	struct msg_ballot durable_promise;
	struct pending_promise *pending;
	size_t n_pending, cap_pending;
	uint64_t *slot_seq; /* [slot]: seq of the last record holding it, 0: none */
	size_t cap_slot_seq;
	uint64_t restored_last; /* slots up to this came from the WAL (durable) */
	/* Snapshots (docs/TESTING.md, "Snapshots"): slots up to snap_durable are in a durable
	 * snapshot; on restart the restored one's state machine bytes (valid during
	 * sim_engine.inst_open only) and its slot. */
	uint64_t snap_durable;
	const uint8_t *restore_state;
	size_t restore_state_len;
	uint64_t restore_slot;
	uint64_t tick_gen; /* ticks of an old generation are ignored */
	int lifecycle;	   /* last enum paxos_lifecycle seen (for the trace) */
	int role;	   /* last enum paxos_role seen (for the trace) */
	void *ext;	   /* the engine's part of this incarnation (sim_engine.inst_open) */
};

struct replica {
	struct store_vfs *vfs;
	int inst; /* current instance, -1 while down */
	/* Counts against M_R (the adversary's budget): rolled back or forked, or (sync=rr)
	 * crashed, until every live instance of it reports fresh. */
	bool compromised;
	bool restart_pending;
	uint64_t paused_until; /* descheduled by the host: its events wait until then */
	uint8_t root_key[STORE_WAL_ROOT_KEY_LEN];
};

struct attempt {
	int client;
	uint64_t op_seq; /* the client's op this attempt belongs to */
	int inst;	 /* the instance it was proposed at */
	bool have_result;
	uint8_t *result; /* the engine's encoding of the result (freed by the world) */
	size_t result_len;
	int outcome; /* the engine's outcome once noted, -1 before */
	/* the Paxos engine's */
	uint64_t chosen_slot; /* the slot its command was first committed in, 0: none */
	uint16_t leader;
	/* the ABD engine's */
	bool found;
};

struct client {
	bool busy;	 /* an op is open */
	uint64_t op_seq; /* of the open op */
	size_t hist;	 /* its index in the history */
	uint8_t key[16];
	uint8_t value[32];
	uint32_t value_len; /* of the open op's value (0: none) */
	int op;		    /* the open op, in the engine's terms */
	int hint;	    /* replica to try next, -1: random */
	size_t attempt;	    /* the current attempt of the open op (only one at a time) */
	bool final_reader;
	unsigned next_final; /* final reads: next key */
	/* the Paxos engine's: the open op as a kv command (key and value point into the buffers
	 * above), its encoding, and the last version seen per key (for CAS) */
	struct kv_cmd cmd;
	uint8_t enc[96];
	size_t enc_len;
	uint64_t versions[16];
};

struct chosen {
	bool set;
	uint8_t *value;
	uint32_t len;
};

struct sim;

/* What an engine plugs into the world. NULL hooks are optional; each says what happens
 * without it. */
struct sim_engine {
	/* The second WAL directory each disk holds next to the Paxos core's "wal" (the ABD
	 * core's "abd"), its name in traces, or NULL. Forks copy a prefix of it too. */
	const char *extra_wal;
	const char *extra_wal_name;
	/* A snapshot the Paxos core installed from a peer (ready.snapshot.install): replace the
	 * state machine (the world then sets in->applied and persists the blob). NULL: none. */
	void (*install)(struct sim *s, int idx, const struct paxos_snapshot_out *snap);
	/* After a ready was taken in full, the instance still live: the engine may take a
	 * snapshot (paxos_snapshot_taken, then sim_snapshot_persist). NULL: never. */
	void (*after_ready)(struct sim *s, int idx);
	/* The Paxos core's name in traces where the engine runs more than one core, or NULL. */
	const char *paxos_name;
	/* The paxos_config.unsafe bits of opt.unsafe, and the adversary's own unsafe bit that
	 * lets rollbacks and forks follow a total crash (0: none). */
	unsigned (*paxos_unsafe)(unsigned unsafe);
	unsigned unsafe_total_crash_rollback;
	/* Adjusts the Paxos core's configuration (timeouts) before paxos_new. */
	void (*paxos_config)(struct sim *s, struct paxos_config *cfg);
	/* Once the Paxos core has restored its WAL: the engine's part of the incarnation
	 * (in->ext, its planes and WALs, restored from `vfs`, with the WAL options `wo`).
	 * `records` (size `len`) gets what the start trace says after "with " (default "N WAL
	 * records"). Returns TEEMS_OK, a negative teems error, or 1: a restore failure already
	 * reported (the incarnation is left as it is, the run goes on to fail). */
	int (*inst_open)(struct sim *s, int idx, struct store_wal_opts *wo, uint64_t paxos_records,
			 char *records, size_t len);
	/* Frees in->ext's resources (instance_free). */
	void (*inst_free)(struct sim *s, struct instance *in);
	/* One slot the Paxos core applied (after take_ready's persist and sends). */
	void (*apply)(struct sim *s, int idx, const struct paxos_apply *a);
	/* The ready's notes (client outcomes); false: stop taking this ready. NULL: ignored. */
	bool (*notes)(struct sim *s, int idx);
	/* Every message a core sends, after check_send (rounds per op). */
	void (*on_send)(struct sim *s, struct instance *in, const struct msg *m);
	/* Whether a message from -> to passes the network's cuts (default link_up). */
	bool (*net_pass)(struct sim *s, int from, int to, const struct msg *m);
	/* After every Paxos step of a live instance (the ABD engine's glue). */
	void (*after_step)(struct sim *s, int idx);
	/* After the Paxos tick of a live instance; with this hook a tick is rescheduled only
	 * while the instance lives. */
	void (*after_tick)(struct sim *s, int idx);
	/* Delivers one decoded message to live instance idx (default sim_deliver_paxos). */
	void (*deliver)(struct sim *s, int idx, const struct msg *m);
	/* Group fsync: more records waiting (dirty, urgent) than the Paxos WAL's. */
	void (*sync_pending)(const struct instance *in, bool *dirty, bool *urgent);
	/* Group fsync: before the Paxos WAL's sync is reported (sync the engine's WALs; errbuf
	 * TEEMS_ERRBUF_LEN) and after. */
	int (*sync_begin)(struct sim *s, struct instance *in, char *errbuf);
	void (*sync_end)(struct sim *s, int idx);
	/* Is this incarnation fresh (able to vote)? Default: the Paxos core is fresh. */
	bool (*fresh)(const struct instance *in);
	/* The lifecycle the progress report names (enum paxos_lifecycle, 3 for "recovering"). */
	int (*lifecycle)(const struct instance *in);
	/* Clients: fills op.type, op.value, op.expected_version from the roll r (0-99) for the
	 * op on cl->key (value n bytes in cl->value); false: failed (reported). */
	bool (*client_op)(struct sim *s, int c, uint64_t r, int n, struct history_op *op);
	/* An attempt of the open op reaches live instance at->inst. */
	void (*propose)(struct sim *s, size_t a);
	/* The reply of attempt a (its op still open) reaches the client. */
	void (*reply)(struct sim *s, size_t a);
	/* The adversary: extra fault choices (bits above SIM_FAULT_ALL) and acting on them. */
	void (*adversary_choices)(struct sim *s, unsigned *choices, unsigned *n);
	void (*adversary_act)(struct sim *s, unsigned fault);
	/* The network heals (heal_network). */
	void (*on_heal_network)(struct sim *s);
	/* An EV_ENGINE event. */
	void (*on_event)(struct sim *s, const struct event *e);
	/* Before the run (engine state in s->es is zeroed). */
	void (*init)(struct sim *s);
	/* End-of-run checks before linearizability. */
	void (*end_checks)(struct sim *s);
	/* At the very end of every run (failed or not), before the world is torn down: free what
	 * the engine state (s->es) holds. NULL: nothing to free. */
	void (*fini)(struct sim *s);
	size_t state_size; /* of s->es */
};

struct sim {
	struct sim_options o;
	struct sim_report *rep;
	const struct sim_engine *eng;
	void *es; /* the engine's state (state_size bytes, zeroed) */
	struct rng rng;
	struct quorum q;
	uint64_t now;
	uint64_t ev_seq;
	struct event *heap;
	size_t n_heap, cap_heap;
	struct replica reps[MAX_REPLICAS];
	struct instance insts[MAX_INSTANCES];
	int n_insts;
	/* The live instances, in increasing index order (the hot paths iterate over these). */
	int live[MAX_LIVE];
	int n_live;
	struct client clients[MAX_CLIENTS];
	unsigned n_clients;
	struct attempt *attempts;
	size_t n_attempts, cap_attempts;
	struct history hist;
	uint64_t next_op_seq;
	unsigned invoked; /* ops invoked before the heal */
	/* network */
	bool cut[MAX_REPLICAS][MAX_REPLICAS]; /* cut[a][b]: a -> b dropped */
	unsigned loss_pct, dup_pct;
	bool partitioned;
	bool total_crash_done;
	/* phases */
	bool healed;
	uint64_t heal_time;
	bool final_started;
	uint64_t final_time;
	bool progress_failed;
	bool reads_done;
	char not_fresh[160]; /* why the cluster did not settle */
	/* Violations of the log and of the protocol's rules that do not stop the run (so that the
	 * history checks at the end show what they did to clients): the first of each kind. */
	char deferred[DEFERRED_KINDS][320];
	bool done;
	/* checkers */
	struct chosen *chosen;
	size_t cap_chosen;
	/* state machine agreement: a hash of the state each snapshot holds, per slot (0: none) */
	uint64_t *state_hash;
	size_t cap_state_hash;
	/* snapshots: the interval in applied slots (0: never) and the transfer chunk size */
	uint64_t snap_every;
	uint32_t snap_chunk;
	uint8_t *encbuf;
	size_t cap_encbuf;
	int err; /* a simulator failure (negative teems error) */
};

/* Runs one seed with an engine (sim_run, sim_abd_run). */
int sim_world_run(const struct sim_engine *eng, const struct sim_options *opt,
		  struct sim_report *report);

void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_violation(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *sim_xrealloc(struct sim *s, void *p, size_t n);
void sim_schedule(struct sim *s, uint64_t at, enum ev_type type, uint64_t a, uint64_t b,
		  uint8_t *buf, size_t len);
struct paxos_time sim_read_clock(const struct sim *s, const struct clock_model *c);
/* The host's raw clock now (clock_model.h_*). */
uint64_t sim_host_clock(const struct sim *s, const struct clock_model *c);
int sim_ensure_encbuf(struct sim *s, size_t need);
void sim_encode_key(uint8_t *buf, unsigned k);

/* Agreement of applied slots across every instance; true when this slot was chosen for the
 * first time (the Paxos engine then checks exactly-once). */
bool sim_check_apply(struct sim *s, struct instance *in, const struct paxos_apply *a);
/* State machine agreement: every snapshot of slot `slot`, taken or installed anywhere, holds
 * the same state (bytes). */
void sim_check_state(struct sim *s, const struct instance *in, uint64_t slot, const uint8_t *state,
		     size_t len);
/* Persists a snapshot blob of instance idx (paxos.h "Snapshots and compaction", steps 3-4):
 * WAL synced, snapshot sealed bound to that position, WAL compacted. */
void sim_snapshot_persist(struct sim *s, int idx, const uint8_t *blob, size_t len, uint64_t slot);
/* The network: encodes, checks (check_send, sim_engine.on_send), and delivers later. */
void sim_net_send(struct sim *s, const struct instance *in, uint16_t to, const struct msg *msg);
bool sim_link_up(const struct sim *s, int from, int to);
/* Steps the Paxos core of instance idx and takes its ready. */
void sim_step(struct sim *s, int idx, struct paxos_input *in);
void sim_deliver_paxos(struct sim *s, int idx, const struct msg *m);
void sim_schedule_sync(struct sim *s, int idx);
void sim_halt_instance(struct sim *s, int idx, const char *core);
void sim_client_reply_later(struct sim *s, size_t attempt);
/* Ends client c's open op with this outcome (history, report) and schedules its next. */
void sim_complete_op(struct sim *s, int c, enum history_outcome outcome,
		     const struct history_result *res);
int sim_leader_replica(const struct sim *s);

/* The adversary's pieces an engine's own fault uses. */
void sim_heal_network(struct sim *s);
bool sim_available(const struct sim *s, int r);
unsigned sim_compromised_count(struct sim *s);
unsigned sim_unavailable_count(const struct sim *s);
void sim_restart_fault_at(struct sim *s, unsigned fault, int r, bool drop);

/* WAL replay into a core: the records (at most max) go to restore(core, ...). */
struct restore_ctx {
	struct sim *s;
	struct instance *in;
	uint64_t max; /* records to restore (a fork may take a prefix) */
	uint64_t n;
	int (*restore)(void *core, const void *data, size_t len);
	void *core;
	const char *name; /* "paxos" or "abd" (paxos_restore, abd_restore) */
};
int sim_on_wal_record(void *arg, uint64_t index, const void *data, size_t len);

#endif
