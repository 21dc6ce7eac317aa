/* RR-Paxos: the replicated log as a pure state machine (DESIGN.md sections 3, 4, 5, 7).
 *
 * Multi-Paxos in the style of Kirsch & Amir / Paxos Made Live with the RR rules: every vote
 * quorum is W_Q (suspicious replicas never vote), and a slot commits once W_Q matching accepts
 * (same slot, ballot, value digest) from distinct replicas exist and at least W_Q - M_R of them
 * are synced (section 7). With M_R = 0 this is exactly classic multi-Paxos.
 *
 * The core does no I/O, reads no clock, keeps no globals. It is driven like etcd raft's Ready:
 *
 *	paxos_step(p, &input, &ready);   // one input: tick, message, proposal, sync completion
 *	// the shell then executes `ready`, in this order:
 *	//   1. append every ready.persist record to the WAL, in order (sync the ones marked sync,
 *	//      or all of them at its next group fsync), and later report the highest seq that is
 *	//      durable with a PAXOS_IN_SYNCED input;
 *	//   2. send every ready.sends message (encode with msg_encode);
 *	//   3. apply every ready.applies slot to the state machine, in order;
 *	//   4. for each ready.notes entry, answer the client (after applying its slot when the
 *	//      outcome is PAXOS_OUTCOME_APPLIED).
 *
 * Ordering rules (enforced inside the core, so the shell needs no knowledge of them beyond
 * "append before send" and "report syncs truthfully"):
 *   - Nothing is sent on behalf of a ballot before the promise of that ballot is synced: a
 *     candidate's PREPARE and a replica's PROMISE are withheld until PAXOS_IN_SYNCED covers the
 *     record that holds the promise (under every sync policy: promises are rare).
 *   - A synced ACCEPTED is never sent before PAXOS_IN_SYNCED covers the record holding the
 *     entries it names. Under sync=rr a follower sends a volatile ACCEPTED at once and the
 *     synced one after its next group fsync; under sync=always only the synced one; under
 *     sync=none only the volatile one.
 *   - The leader counts its own accept only once its own entry is synced (sync=always and rr);
 *     under sync=none at once, volatile.
 *   - The shell must report PAXOS_IN_SYNCED only for records that really are durable; a
 *     record's seq is covered once every record with a smaller or equal seq is durable.
 *     Records marked `sync` need an fsync soon (they gate messages or the leader's own ack);
 *     the others (a follower's entries under sync=rr or none) are made durable by the shell's
 *     periodic group fsync, which under sync=rr it must run (every few ms): the synced
 *     ACCEPTED acks wait for it.
 *
 * Collections (section 4): every PREPARE round, every ACCEPT round and every heartbeat gets a
 * fresh nonce that replies echo. Nothing is counted once T_op has passed on this replica's `hi`
 * clock since the round was first sent; the round is then retried with a new nonce (phase 2)
 * or abandoned (phase 1: a new election after a randomized timeout). A change of the clock's
 * taint epoch abandons every open collection. A client command whose slot's collection is
 * abandoned is reported PAXOS_OUTCOME_UNKNOWN, never "not applied". Quorums count distinct
 * replica ids (bit masks).
 *
 * Suspicion (section 4): a suspicious replica stores nothing it is asked to accept, never votes
 * or promises (it answers NACK SUSPICIOUS) and never campaigns; promises and accepts that carry
 * the suspicious header flag are never counted. Registration, fencing and recovery are the next
 * increment: they enter through paxos_set_suspicious() and the `reg` of the configuration.
 *
 * Memory: struct paxos owns every byte it holds (values are copied in, through teems_malloc).
 * Every pointer in a struct paxos_ready (persist entries, message bodies and lists, applied
 * values) points into memory owned by the core or by the ready, valid until the next
 * paxos_step() with that ready, or paxos_ready_free(); use one ready per core (bytes the core
 * replaces during a step are released with the ready of that step). The input's message (and
 * everything it points into, usually the shell's receive buffer) and proposal bytes are
 * borrowed for the duration of the call only.
 *
 * Not thread-safe: one thread drives one struct paxos. */
#ifndef TEEMS_CORE_PAXOS_H
#define TEEMS_CORE_PAXOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "core/quorum.h"

enum paxos_sync_policy {
	PAXOS_SYNC_ALWAYS = 0, /* every ack synced */
	PAXOS_SYNC_RR = 1,     /* leader syncs before counting its own ack; followers ack volatile,
				  then synced after their next group fsync */
	PAXOS_SYNC_NONE = 2,   /* volatile only (benchmarks): volatile-only commits allowed */
};

enum paxos_role {
	PAXOS_FOLLOWER = 0,
	PAXOS_CANDIDATE = 1,
	PAXOS_LEADER = 2,
};

/* Test-only switches that break the protocol on purpose (negative controls for the checkers).
 * Never set outside tests. */
#define PAXOS_UNSAFE_SKIP_ADOPT 0x1u	/* a new leader ignores entries reported in promises */
#define PAXOS_UNSAFE_SHORT_PROMISE 0x2u /* a candidate wins with W_Q - 1 promises */

struct paxos_config {
	struct quorum quorum;  /* from quorum_init */
	uint16_t self;	       /* < quorum.n */
	struct msg_regidx reg; /* this incarnation's registration index ((0,0) until section 4) */
	enum paxos_sync_policy sync;
	bool suspicious;	      /* the initial flag (section 4, step 1) */
	uint64_t election_timeout_ns; /* randomized in [t, 2t) from the tick's random input */
	uint64_t heartbeat_ns;	      /* the leader's COMMIT heartbeat period */
	uint64_t t_op_ns;	      /* collection lifetime T_op */
	uint32_t max_slot_bytes;      /* a slot's batch of commands (<= MSG_MAX_BLOB) */
	uint32_t max_accept_slots;    /* slots in one ACCEPT (1 .. MSG_MAX_BATCH) */
	uint32_t max_inflight;	      /* uncommitted slots the leader pipelines */
	uint32_t max_queue;	      /* client commands waiting for a slot */
	unsigned unsafe;	      /* PAXOS_UNSAFE_*, tests only */
};

/* Sensible defaults for everything but quorum and self. */
void paxos_config_default(struct paxos_config *cfg);

/* A trusted clock reading (struct tee_clock_reading): holders use hi, grantors lo. */
struct paxos_time {
	uint64_t lo_ns;
	uint64_t hi_ns;
	uint64_t epoch; /* taint epoch: a change abandons every open collection */
};

enum paxos_input_type {
	PAXOS_IN_TICK = 0,    /* timers; `random` feeds election timeouts and nonces */
	PAXOS_IN_MESSAGE = 1, /* a decoded message from a peer */
	PAXOS_IN_PROPOSE = 2, /* a client command (a read-write command for the log) */
	PAXOS_IN_SYNCED = 3,  /* every persist record with seq <= `seq` is durable */
};

struct paxos_input {
	enum paxos_input_type type;
	struct paxos_time now; /* a fresh clock reading, for every input */
	union {
		struct {
			uint64_t random;
		} tick;
		const struct msg *message; /* borrowed for the call */
		struct {
			uint64_t client_id;
			uint64_t request_id;
			const uint8_t *command; /* borrowed; copied into the log */
			uint32_t len;
		} propose;
		struct {
			uint64_t seq;
		} synced;
	};
};

/* One accepted entry as it must be stored. */
struct paxos_entry_ref {
	uint64_t slot;
	struct msg_ballot ballot;
	const uint8_t *value; /* core-owned, valid until the next step */
	uint32_t len;
};

/* A WAL record: the promised ballot (always), then `count` entries (may be 0: a promise only).
 * On restart (next increment) the promised ballot is the max over records and entry ballots,
 * and a later record's entry for a slot supersedes an earlier one. */
struct paxos_persist {
	uint64_t seq; /* strictly increasing, from 1 */
	struct msg_ballot promised;
	uint32_t count;
	const struct paxos_entry_ref *entries; /* ready-owned */
	bool sync; /* fsync now (not at leisure): withheld outputs wait for it */
};

struct paxos_send {
	uint16_t to;
	struct msg msg; /* lists and bytes point into core- or ready-owned memory */
};

/* A committed slot, to apply. The value is a batch of commands (paxos_batch_next); an empty
 * value is a no-op. */
struct paxos_apply {
	uint64_t slot;
	const uint8_t *value;
	uint32_t len;
};

enum paxos_outcome {
	PAXOS_OUTCOME_APPLIED = 0,    /* committed in `slot`: reply with the result once applied */
	PAXOS_OUTCOME_NOT_LEADER = 1, /* never proposed: not applied; try `leader` */
	PAXOS_OUTCOME_UNKNOWN = 2,    /* proposed, then abandoned: may or may not be applied */
	PAXOS_OUTCOME_BUSY = 3,	      /* queue full: not applied, retry later */
};

struct paxos_note {
	uint64_t client_id;
	uint64_t request_id;
	enum paxos_outcome outcome;
	uint64_t slot;	 /* APPLIED */
	uint16_t leader; /* hint, or MSG_NO_REPLICA */
};

struct paxos_ready {
	struct paxos_persist *persist;
	size_t n_persist;
	struct paxos_send *sends;
	size_t n_sends;
	struct paxos_apply *applies;
	size_t n_applies;
	struct paxos_note *notes;
	size_t n_notes;
	/* private: capacities and the scratch memory the outputs point into */
	size_t cap_persist, cap_sends, cap_applies, cap_notes;
	void **scratch;
	size_t n_scratch, cap_scratch;
};

struct paxos;

/* Creates a core with an empty log. Errors: TEEMS_EINVAL (errbuf says which field),
 * TEEMS_ENOMEM. cfg is copied. */
int paxos_new(struct paxos **out, const struct paxos_config *cfg, char *errbuf);
void paxos_free(struct paxos *p);

void paxos_ready_init(struct paxos_ready *r);
/* Frees what the ready holds (its outputs become invalid). */
void paxos_ready_free(struct paxos_ready *r);

/* Handles one input and fills `r` (cleared first) with what to do. Returns 0, TEEMS_EINVAL for
 * an input that is not well-formed (unknown type; a proposal over max_slot_bytes), or
 * TEEMS_ENOMEM; after TEEMS_ENOMEM the core must be discarded (treat it as a crash of this
 * incarnation). Messages that are stale, duplicated, from unknown replicas or otherwise
 * irrelevant are ignored, not errors. */
int paxos_step(struct paxos *p, const struct paxos_input *in, struct paxos_ready *r);

/* Read-only views. */
enum paxos_role paxos_role(const struct paxos *p);
bool paxos_suspicious(const struct paxos *p);
struct msg_ballot paxos_promised(const struct paxos *p);
uint64_t paxos_commit_index(const struct paxos *p);
uint64_t paxos_last_slot(const struct paxos *p);
uint16_t paxos_leader_hint(const struct paxos *p); /* MSG_NO_REPLICA if unknown */
/* True when this replica is the leader and has committed the no-op of its own ballot, so its
 * state reflects every slot committed under earlier ballots (section 5). Necessary, not
 * sufficient, for a linearizable read: the leader must also confirm its ballot (read index) or
 * hold a lease (section 8); both are later increments. */
bool paxos_can_serve_reads(const struct paxos *p);

/* Hook for the recovery increment (section 4, step 6): clear or set the suspicious flag.
 * Setting it makes a leader or candidate step down (pending proposals become UNKNOWN on the
 * next step's notes). */
void paxos_set_suspicious(struct paxos *p, bool suspicious);

/* ---- slot values: a batch of client commands ----
 * Layout: repeated { u64 client_id, u64 request_id, u32 len, len bytes }, little-endian. */
struct paxos_command {
	uint64_t client_id;
	uint64_t request_id;
	const uint8_t *command; /* points into the value */
	uint32_t len;
};

/* Reads the command at *off and advances *off. Returns false at the end or on a malformed
 * value (which the core never produces). */
bool paxos_batch_next(const uint8_t *value, uint32_t len, size_t *off, struct paxos_command *out);

/* The digest an ACCEPTED names: of (first_slot, last_slot, each value with its length). For now
 * a 256-bit non-cryptographic hash (see paxos_core.c); to become SHA-256. */
void paxos_digest(uint64_t first_slot, const struct msg_bytes *values, uint32_t count,
		  uint8_t out[MSG_DIGEST_SIZE]);

#endif
