/* RR-ABD: multi-writer registers per key as a pure state machine (DESIGN.md sections 3, 4, 6,
 * 7; RR paper section IV-B; docs/ABD.md has the protocol argument).
 *
 * The replica that receives a client request coordinates it (the paper's "proxy"):
 *   write  query R_Q(s) replicas for the highest timestamp; store (seq+1, self, reg, ++op) at
 *          every replica; wait for W_Q acks obeying the sync rule; then STABILIZE to all,
 *          asynchronously (2 rounds);
 *   read   query values; return after R_Q(s) replies when the highest timestamp is stable at a
 *          replier (1 round); else after W_Q unanimous fresh replies, then STABILIZE (1 round);
 *          else write the highest back to W_Q obeying the sync rule, then STABILIZE (2 rounds).
 * s counts replies flagged suspicious and is re-evaluated on every reply. A replica overwrites
 * a register only with a higher timestamp; every replica handles STABILIZE. Deletes are
 * tombstones with timestamps.
 *
 * The core does no I/O, reads no clock, keeps no globals. It is driven like paxos.h:
 *
 *	abd_step(a, &input, &ready);   // one input: tick, message, client request, sync completion
 *	// the shell then executes `ready`, in this order:
 *	//   1. append every ready.persist record to the WAL, in order (fsync the ones marked sync
 *	//      soon; the others at its next group fsync), and later report the highest durable
 *	//      seq with an ABD_IN_SYNCED input;
 *	//   2. send every ready.sends message (encode with msg_encode);
 *	//   3. answer every ready.replies entry to its client;
 *	//   4. if ready.recovered, tell the control plane the incarnation is fresh;
 *	//      if ready.halted, stop this incarnation.
 *
 * Ordering rules (enforced inside the core by withholding messages until ABD_IN_SYNCED covers
 * the record they depend on):
 *   - A synced WRITE_ACK is never sent before the record holding the register at (or above)
 *     the acknowledged timestamp is durable. sync=always: only synced acks; sync=rr: a volatile
 *     ack at once, the synced one after the group fsync; sync=none: volatile only.
 *   - A write (or write-back) completes once W_Q distinct replicas acknowledged it and at least
 *     W_Q - M_R of the acks are synced (sync=none: volatile acks suffice). The coordinator
 *     counts its own ack only once its own record is durable (always, rr; the record is marked
 *     sync), at once under none.
 *   - Under sync=always and rr, a value-mode QUERY_REPLY reports only durable state: it is
 *     withheld until the record holding the reported register is durable. So W_Q unanimous
 *     fresh replies are as good as W_Q synced acks (the unanimous read path).
 *   - Recovery's adopted registers become durable (the last record is marked sync) before the
 *     replica becomes fresh.
 *
 * Collections (section 4): every round (query, write, write-back, recovery digests) gets a
 * fresh nonce that replies echo. Nothing is counted once T_op has passed on `hi` since the
 * round's first send: the client op is then abandoned and answered ABD_OUTCOME_UNKNOWN (never
 * "not applied"). A change of the taint epoch abandons every open collection and drops the
 * configuration lease. Quorums count distinct replica ids. Discard rule: a reply from (X, i)
 * is discarded when the configuration (abd_set_config) or any reply's registration vector in
 * the same collection shows a registration of X newer than i. Halt rule: an incarnation that
 * sees its own replica registered newer halts. A replica stores nothing a superseded
 * incarnation sends it to write; it answers its queries, whose registration vector makes it
 * halt.
 *
 * Configuration lease (section 8): the coordinator coordinates only while its configuration
 * lease is valid: new requests are refused without it, and it is checked on every counted
 * reply (an op in flight is abandoned, UNKNOWN). The lease module is the shell's: it reports
 * validity with abd_set_lease.
 *
 * Lifecycle (section 4): registration and fencing run in the Paxos control plane (the shell);
 * a restarted incarnation is suspicious until the shell calls abd_begin_recovery (registered
 * and fenced), then it compares digests of key ranges with R_Q(s) replicas (itself counted
 * suspicious), fetches only the ranges that differ, adopts per key the highest timestamp
 * (never marking it stable), persists with sync and becomes fresh (ready.recovered). While
 * suspicious it answers queries flagged, stores nothing it is sent and never acknowledges a
 * write, and coordinates nothing.
 *
 * Memory: struct abd owns every byte it holds (keys and values are copied in, through
 * teems_malloc). Every pointer in a struct abd_ready (persist records, message bodies and
 * lists, reply values) points into memory owned by the ready, valid until the next abd_step()
 * with that ready, or abd_ready_free(). The input's message (and what it points into) and the
 * request's key and value are borrowed for the duration of the call only.
 *
 * Not thread-safe: one thread drives one struct abd. */
#ifndef TEEMS_CORE_ABD_H
#define TEEMS_CORE_ABD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/msg.h"
#include "core/quorum.h"

enum abd_sync_policy {
	ABD_SYNC_ALWAYS = 0, /* every ack synced */
	ABD_SYNC_RR = 1,     /* coordinator syncs before counting its own ack; others ack volatile,
				then synced after their next group fsync */
	ABD_SYNC_NONE = 2,   /* volatile only (benchmarks) */
};

/* Test-only switches that break the protocol on purpose (negative controls). Never set outside
 * tests. */
#define ABD_UNSAFE_NO_STABILIZE                                \
	0x1u /* reads return the highest of R_Q(s) replies: no \
		stable check, no unanimity, no write-back */
#define ABD_UNSAFE_CFT_QUORUMS                                                            \
	0x2u				     /* majorities; suspicion ignored (suspicious \
						replicas store and ack) */
#define ABD_UNSAFE_NO_RECOVERY 0x4u	     /* a restored core is fresh at once */
#define ABD_UNSAFE_NO_INCARNATION_CHECK 0x8u /* no discard rule, no halt rule */
/* Fencing (waiting T_fence after the registration committed) lives in the shell, which calls
 * abd_begin_recovery only afterwards; the core has nothing to switch off. The flag is accepted
 * and has no effect; the harness models "no fence" by calling abd_begin_recovery early. */
#define ABD_UNSAFE_NO_FENCE 0x10u

#define ABD_LEASE_FOREVER UINT64_MAX

struct abd_config {
	struct quorum quorum;
	uint16_t self;
	/* This incarnation's registration index (genesis members: where they were admitted,
	 * (0,0) for the genesis configuration). A restarted incarnation learns its index with
	 * abd_begin_recovery. */
	struct msg_regidx reg;
	/* false: a member of the initial configuration, fresh at boot. true: restarted (set by
	 * abd_restore too): suspicious until recovery finishes. */
	bool restarted;
	enum abd_sync_policy sync;
	uint64_t t_op_ns;    /* collection lifetime T_op */
	uint64_t resend_ns;  /* a round's request is sent again to repliers missing after this */
	uint32_t ranges;     /* key-range partition for recovery digests: power of two,
				1 .. MSG_MAX_RANGES */
	uint32_t max_ops;    /* client operations coordinated at once */
	uint32_t page_items; /* registers in one ABD_RANGE_REPLY (1 .. MSG_MAX_ITEMS) */
	uint32_t page_bytes; /* soft byte budget of one ABD_RANGE_REPLY */
	unsigned unsafe;     /* ABD_UNSAFE_*, tests only */
};

/* Sensible defaults for everything but quorum, self and reg. */
void abd_config_default(struct abd_config *cfg);

/* A trusted clock reading: holders (this coordinator) use hi. */
struct abd_time {
	uint64_t lo_ns;
	uint64_t hi_ns;
	uint64_t epoch; /* taint epoch */
};

enum abd_input_type {
	ABD_IN_TICK = 0,    /* timers: T_op expiry, resends; `random` feeds nonces */
	ABD_IN_MESSAGE = 1, /* a decoded message from a peer */
	ABD_IN_REQUEST = 2, /* a client request */
	ABD_IN_SYNCED = 3,  /* every persist record with seq <= `seq` is durable */
};

enum abd_op {
	ABD_GET = 0,
	ABD_SET = 1,
	ABD_DEL = 2,
};

struct abd_input {
	enum abd_input_type type;
	struct abd_time now; /* a fresh clock reading, for every input */
	union {
		struct {
			uint64_t random;
		} tick;
		const struct msg *message; /* borrowed for the call */
		struct {
			uint64_t client_id;
			uint64_t request_id;
			enum abd_op op;
			const uint8_t *key; /* borrowed; <= MSG_MAX_KEY */
			uint32_t key_len;
			const uint8_t *value; /* SET; borrowed; <= MSG_MAX_VALUE */
			uint32_t value_len;
		} request;
		struct {
			uint64_t seq;
		} synced;
	};
};

/* Persist record flags. */
#define ABD_REC_REGISTER 0x1u  /* a register (key, ts, value or tombstone) */
#define ABD_REC_RECOVERED 0x2u /* recovery finished (no register) */

/* A WAL record: one register, stored because its timestamp is higher than what was there, or
 * the end-of-recovery marker. Stability is never persisted (a restored register is not stable:
 * section 4, step 5). */
struct abd_persist {
	uint64_t seq; /* strictly increasing from 1 (after a restore: highest restored + 1) */
	unsigned flags;
	const uint8_t *key; /* ready-owned */
	uint32_t key_len;
	struct msg_timestamp ts;
	bool tombstone;
	const uint8_t *value; /* ready-owned; empty for a tombstone */
	uint32_t len;
	bool sync; /* fsync now: a withheld output or the coordinator's own ack waits for it */
};

#define ABD_PERSIST_VERSION 1

/* Encodes rec into buf. Returns 0 with *len = bytes written; TEEMS_EFULL with *len = the size
 * needed when cap is too small (buf may be NULL then); TEEMS_EINVAL for a record the core never
 * produces (key or value over its cap, unknown flags). */
int abd_persist_encode(const struct abd_persist *rec, uint8_t *buf, size_t cap, size_t *len);

struct abd_send {
	uint16_t to;
	struct msg msg; /* bytes and lists point into ready-owned memory */
};

enum abd_outcome {
	ABD_OUTCOME_OK = 0,	 /* done: GET has found/value */
	ABD_OUTCOME_UNKNOWN = 1, /* abandoned: a write may or may not take effect */
	ABD_OUTCOME_REFUSED = 2, /* never started: not applied (see reason) */
};

enum abd_refusal {
	ABD_REFUSED_NONE = 0,
	ABD_REFUSED_NOT_FRESH = 1, /* suspicious or recovering */
	ABD_REFUSED_NO_LEASE = 2,  /* configuration lease not valid */
	ABD_REFUSED_BUSY = 3,	   /* max_ops in flight */
	ABD_REFUSED_INVALID = 4,   /* key or value over its cap, unknown op */
	ABD_REFUSED_HALTED = 5,
};

struct abd_reply {
	uint64_t client_id;
	uint64_t request_id;
	enum abd_op op;
	enum abd_outcome outcome;
	enum abd_refusal reason;
	bool found;	      /* GET ok: the key holds a value (not absent or deleted) */
	const uint8_t *value; /* GET ok with found; ready-owned */
	uint32_t len;
	struct msg_timestamp ts; /* ok: the timestamp read or written */
	unsigned rounds;	 /* message rounds this op used (ok) */
};

/* A quorum this core counted, with the incarnations (for the simulator's checker). */
enum abd_counted_kind {
	ABD_COUNTED_QUERY = 0,	  /* a read or write query decided */
	ABD_COUNTED_WRITE = 1,	  /* a write or write-back acknowledged */
	ABD_COUNTED_RECOVERY = 2, /* the recovery digest quorum */
};

struct abd_counted {
	enum abd_counted_kind kind;
	uint64_t id; /* the round's nonce */
	uint32_t n;
	struct msg_incarnation members[QUORUM_MAX_REPLICAS];
};

struct abd_ready {
	struct abd_persist *persist;
	size_t n_persist;
	struct abd_send *sends;
	size_t n_sends;
	struct abd_reply *replies;
	size_t n_replies;
	struct abd_counted *counted;
	size_t n_counted;
	bool recovered; /* this step finished recovery: the incarnation is fresh */
	bool halted;	/* the shell must stop this incarnation; it emits nothing more, ever */
	/* private */
	size_t cap_persist, cap_sends, cap_replies, cap_counted;
	struct core_arena scratch;
};

/* Counters for the benchmarks and tests. */
struct abd_stats {
	uint64_t reads, writes;		    /* completed ok */
	uint64_t read_rounds, write_rounds; /* summed over those */
	uint64_t reads_stable;		    /* reads done in one round because ht was stable */
	uint64_t reads_unanimous;	    /* ... because W_Q fresh replies were unanimous */
	uint64_t reads_write_back;	    /* reads that wrote back */
	uint64_t abandoned;		    /* ops answered UNKNOWN */
	uint64_t discarded;		    /* replies dropped by the discard rule */
	uint64_t digest_replies;	    /* recovery: digest replies counted */
	uint64_t ranges_differing;	    /* recovery: (replica, range) pairs that differed */
	uint64_t ranges_fetched;	    /* recovery: ranges transferred (after dedup) */
	uint64_t range_pages;		    /* recovery: ABD_RANGE_REPLY pages received */
	uint64_t items_adopted;		    /* recovery: registers adopted */
};

struct abd;

/* Creates a core with no registers. Errors: TEEMS_EINVAL (errbuf says which field),
 * TEEMS_ENOMEM, TEEMS_ECRYPTO. cfg is copied. */
int abd_new(struct abd **out, const struct abd_config *cfg, char *errbuf);
void abd_free(struct abd *a);

/* Restart: feeds one WAL record back, before the first abd_step, once per record in WAL order
 * (a rolled-back WAL is a shorter prefix). The restored core is restarted and suspicious
 * (unless ABD_UNSAFE_NO_RECOVERY); no restored register is stable. rec is borrowed.
 * Errors: TEEMS_ECORRUPT (the core is unchanged), TEEMS_EVERSION, TEEMS_EINVAL (after the
 * first step), TEEMS_ENOMEM (discard the core). */
int abd_restore(struct abd *a, const uint8_t *rec, size_t len);

/* Decodes one record (the inverse of abd_persist_encode) without touching any core: what
 * abd_restore would accept, so that a shell can check a whole batch (a snapshot) before it
 * restores any of it. out->key and out->value point into rec; out->sync is false.
 * Errors: TEEMS_ECORRUPT, TEEMS_EVERSION. */
int abd_persist_decode(const uint8_t *rec, size_t len, struct abd_persist *out);

/* Compaction (docs/ABD.md "WAL compaction"): the records that stand for every record the core
 * has produced or restored so far. Calls fn once per register, an ABD_REC_REGISTER record with
 * its current timestamp and value or tombstone and the seq of the record that stored it; then,
 * when the highest seq used so far is not one of those (the last records are RECOVERED
 * markers), one ABD_REC_RECOVERED record with that seq, so that the seq continues above it ("after
 * a restore: highest restored
 * + 1"). Feeding these records, in any order, to abd_restore of a new core, then the WAL
 * records that follow them, gives the core that abd_restore of the whole WAL gives: the same
 * registers (timestamps, values, tombstones, record seqs), the same next seq, restarted and
 * suspicious. One thing is not carried: the operation counter a restore derives from this
 * replica's own records of the restoring core's configured registration (abd_config.reg) may
 * come out lower, because an own record overwritten since is not in the snapshot. It never
 * matters: a restored core writes only under the registration abd_begin_recovery gives it,
 * newer than every registration its records carry, so its timestamps differ from all of
 * them in `reg` whatever their op.
 *
 * Call it between two steps, once the shell appended every persist record of the steps so
 * far: the records then describe exactly the WAL up to its last appended record. Pointers in
 * the record passed to fn are the core's, valid during the call only. Returns 0, or the first
 * non-zero value fn returns (which stops the walk). Registers come in no particular order. */
int abd_snapshot_records(const struct abd *a, int (*fn)(void *arg, const struct abd_persist *rec),
			 void *arg);

void abd_ready_init(struct abd_ready *r);
void abd_ready_free(struct abd_ready *r);

/* Handles one input and fills r (cleared first). Returns 0, TEEMS_EINVAL for an input that is
 * not well-formed (unknown type), or TEEMS_ENOMEM (discard the core: a crash of this
 * incarnation). Invalid client requests are refused in ready.replies, not errors; stale,
 * duplicated or irrelevant messages are ignored. */
int abd_step(struct abd *a, const struct abd_input *in, struct abd_ready *r);

/* ---- control inputs from the shell (take effect at once; their outputs, if any, leave with
 * the next step) ---- */

/* The registered incarnation of each replica, from the Paxos configuration (applied entries
 * and accepted REGISTERs above the commit index: the registration vector of section 4).
 * Replicas not listed keep what they had ((0,0) at first). Seeing its own replica registered
 * newer than itself halts this core. Errors: TEEMS_EINVAL (a replica id >= N). */
int abd_set_config(struct abd *a, const struct msg_incarnation *regs, size_t n);
/* The configuration lease is valid while hi < valid_until_hi_ns (0: none; ABD_LEASE_FOREVER:
 * tests). A taint epoch change drops it. */
void abd_set_lease(struct abd *a, uint64_t valid_until_hi_ns);
/* The incarnation is registered at `reg` and fenced: start recovery (section 4, step 5) with
 * the next step. Errors: TEEMS_EINVAL (not restarted, or already recovering or fresh). */
int abd_begin_recovery(struct abd *a, struct msg_regidx reg);

/* Epoch restart (section 6): the control plane moved to a new epoch that names this
 * incarnation a member, registered at `reg` (newer than its own). The core continues as that
 * incarnation, as a restored one would (abd_restore): restarted and suspicious, no register
 * stable, any recovery in progress dropped, withheld replies and acks dropped, the ops it
 * coordinates abandoned (UNKNOWN, with the next step); seeing `reg` for its own replica no
 * longer halts it. The shell calls abd_begin_recovery(reg) once the epoch's fence has passed.
 * Equivalent to re-creating the core from its own WAL (abd_restore) and registering it at reg,
 * without reading the WAL back. A core that halted because it saw reg for its own replica
 * before its control plane learned the epoch (a peer's vector) resumes too: it emitted
 * nothing since. The shell must not stop a halted core's process while its control plane
 * may still name it; a process not named stops as before.
 * Errors: TEEMS_EINVAL (reg not newer than its registration, or its configuration registers
 * its replica newer than reg). */
int abd_set_registration(struct abd *a, struct msg_regidx reg);

/* ---- read-only views ---- */
bool abd_suspicious(const struct abd *a);
bool abd_recovering(const struct abd *a);
bool abd_halted(const struct abd *a);
struct msg_regidx abd_registration(const struct abd *a);
const struct abd_stats *abd_stats(const struct abd *a);
size_t abd_keys(const struct abd *a); /* registers held, tombstones included */
/* The register stored for key (false: none). *value points into the core, valid until the
 * next step. */
bool abd_lookup(const struct abd *a, const uint8_t *key, uint32_t key_len, struct msg_timestamp *ts,
		bool *stable, bool *tombstone, const uint8_t **value, uint32_t *len);
/* The range (of cfg.ranges) a key belongs to. */
uint32_t abd_range_of(const struct abd *a, const uint8_t *key, uint32_t key_len);

#endif
