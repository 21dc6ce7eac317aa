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
 *	//   1b. if ready.snapshot.blob is set (a snapshot installed from a peer): replace the
 *	//      state machine by ready.snapshot.state and persist the blob ("Snapshots and
 *	//      compaction" below; a shell that never takes snapshots never sees one);
 *	//   2. send every ready.sends message (encode with msg_encode);
 *	//   3. apply every ready.applies slot to the state machine, in order;
 *	//   4. for each ready.notes entry, answer the client (after applying its slot when the
 *	//      outcome is PAXOS_OUTCOME_APPLIED);
 *	//   5. run every ready.execs read-only command and feed its result back
 *	//      (PAXOS_IN_EXEC_RESULT); answer every ready.opt_reads entry.
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
 * the suspicious header flag are never counted.
 *
 * Lifecycle (section 4; docs/PROTOCOL.md "RR-Paxos: persistence, registration, fencing and
 * recovery"): a restarted core (config.restarted, or paxos_restore) is suspicious and
 * unregistered. It sends REGISTER to the leader until its registration commits, waits
 * T_fence on lo (a taint restarts the wait), reads the protocol state from R_Q(s) replicas
 * (RECOVERY_REQUEST), persists what it adopted with sync, and becomes fresh once that record is
 * durable. The leader side of REGISTER and the answers to RECOVERY_REQUEST run in every core.
 * Every reply counted toward a quorum passes the discard rule; an incarnation that sees a
 * newer registration of its own replica halts (ready.halted; it emits nothing ever after).
 * The shell verifies the quote of every MSG_REGISTER before handing it to the core.
 *
 * Epoch restart (section 6; docs/PROTOCOL.md "RR-Paxos: epoch restart"), with
 * config.t_restart_ns set: a stuck replica runs a single-decree Paxos round (RESTART_PREPARE,
 * _ANSWER, _ACCEPT, _ACCEPTED) on the next epoch. Answers and accepts are promises, synced
 * before they leave (the same "append before send" rule); an answering incarnation turns
 * suspicious. Members of the decided epoch are registered at (epoch, 0), wait T_fence from
 * their first answer and recover as in step 5; an incarnation left out halts.
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

#include "core/arena.h"
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
/* Recover as soon as the registration committed (no T_fence). */
#define PAXOS_UNSAFE_NO_FENCE 0x4u
/* Majority quorums everywhere; suspicion ignored: a suspicious replica stores, votes and its
 * votes count. */
#define PAXOS_UNSAFE_CFT_QUORUMS 0x8u
/* No discard rule, no halt rule. */
#define PAXOS_UNSAFE_NO_INCARNATION_CHECK 0x10u
/* A restarted core is fresh at once, as its previous incarnation: no register, fence or
 * recovery. */
#define PAXOS_UNSAFE_NO_RECOVERY 0x20u
/* Leases (section 8) timed by the host's raw clock (paxos_input.host_ns) as if it were the
 * trusted one: host jumps and rate changes are never detected (docs/LEASES.md). */
#define PAXOS_UNSAFE_TRUST_HOST_CLOCK 0x40u
/* Followers promise and campaign while their leader-lease grant to another ballot runs (the
 * grant is still given, so the old leader keeps serving lease reads). */
#define PAXOS_UNSAFE_NO_LEASE_WAIT 0x80u

#define PAXOS_RESTART_CLUSTER_ID_LEN 16 /* paxos_config.restart_cluster_id */

struct paxos_config {
	struct quorum quorum; /* from quorum_init */
	uint16_t self;	      /* < quorum.n */
	/* This incarnation's registration index. For a member of the initial configuration
	 * (restarted == false) it is the index it was admitted at ((0,0): the genesis
	 * configuration). A restarted incarnation ignores it: it is unregistered until its
	 * REGISTER commits. */
	struct msg_regidx reg;
	uint8_t public_key[MSG_PUBLIC_KEY_SIZE]; /* this incarnation's key (section 4, step 1) */
	/* false: a member of the initial configuration booting for the first time (registered at
	 * `reg`, fresh unless `suspicious`). true: a restarted (or new) incarnation: it starts
	 * suspicious, registers, fences, recovers, then becomes fresh (section 4). paxos_restore
	 * sets it. */
	bool restarted;
	/* The platform quote binding (code, replica id, public_key), sent in REGISTER. Borrowed:
	 * it must outlive the core. The shell verifies every REGISTER's quote before it hands the
	 * message to a core (section 4, step 2): the core cannot verify quotes and trusts that a
	 * MSG_REGISTER it is given was verified. */
	const uint8_t *quote;
	uint32_t quote_len;
	enum paxos_sync_policy sync;
	bool suspicious;	      /* the initial flag (section 4, step 1) */
	uint64_t election_timeout_ns; /* randomized in [t, 2t) from the tick's random input */
	uint64_t heartbeat_ns;	      /* the leader's COMMIT heartbeat period */
	uint64_t t_op_ns;	      /* collection lifetime T_op */
	uint64_t t_lease_ns;	      /* T_lease: longest lease a predecessor may have granted */
	uint64_t t_cfg_ns;	      /* T_cfg: longest configuration lease */
	uint32_t rho_ppm;	      /* clock drift bound rho, in parts per million */
	uint64_t register_retry_ns;   /* REGISTER retry period (a recovery read is retried
					 after T_op) */
	uint32_t max_slot_bytes;      /* a slot's batch of commands (<= MSG_MAX_BLOB) */
	uint32_t max_accept_slots;    /* slots in one ACCEPT (1 .. MSG_MAX_BATCH) */
	uint32_t max_inflight;	      /* uncommitted slots the leader pipelines */
	uint32_t max_queue;	      /* client commands waiting for a slot */
	/* Epoch restart (section 6; docs/PROTOCOL.md "RR-Paxos: epoch restart"): a replica that
	 * for t_restart_ns has heard from fewer than W_Q fresh registered incarnations of its
	 * epoch (itself included if fresh; a fresh leader's ACCEPT or COMMIT counts as proof of
	 * W_Q) is stuck and proposes the next epoch. 0: never stuck (no epoch restart). */
	uint64_t t_restart_ns;
	/* recovery = operator (docs/PROTOCOL.md "Operator-authorized restart"): the accept step
	 * of an epoch restart waits for an operator's signature over exactly what it decides
	 * (paxos_restart_auth_message), given to the proposer with paxos_restart_authorize and
	 * checked again by every acceptor before it accepts. */
	bool restart_operator;
	/* With restart_operator: the cluster id bound into the signed message, the operator's
	 * Ed25519 public key, and the verifier (a pure function: true when `sig` is a signature
	 * of `msg` by `key`; the shell passes tee_incarnation_verify's). NULL: nothing ever
	 * verifies, so no restart completes (safe, never live). */
	uint8_t restart_cluster_id[PAXOS_RESTART_CLUSTER_ID_LEN];
	uint8_t restart_operator_key[MSG_PUBLIC_KEY_SIZE];
	bool (*restart_verify)(const uint8_t key[MSG_PUBLIC_KEY_SIZE], const uint8_t *msg,
			       size_t len, const uint8_t *sig, size_t sig_len);
	unsigned unsafe; /* PAXOS_UNSAFE_*, tests only */
	/* Snapshot transfer (paxos_snapshot_taken): data bytes per SNAPSHOT_CHUNK, 1 ..
	 * MSG_MAX_CHUNK; 0 in a config from before snapshots means PAXOS_SNAPSHOT_CHUNK_DEFAULT. */
	uint32_t snapshot_chunk;
};

#define PAXOS_SNAPSHOT_CHUNK_DEFAULT (1u << 20)

/* Sensible defaults for everything but quorum and self. */
void paxos_config_default(struct paxos_config *cfg);

/* A trusted clock reading (struct tee_clock_reading): holders use hi, grantors lo. */
struct paxos_time {
	uint64_t lo_ns;
	uint64_t hi_ns;
	uint64_t epoch; /* taint epoch: a change abandons every open collection */
};

enum paxos_input_type {
	PAXOS_IN_TICK = 0,	  /* timers; `random` feeds election timeouts and nonces */
	PAXOS_IN_MESSAGE = 1,	  /* a decoded message from a peer */
	PAXOS_IN_PROPOSE = 2,	  /* a client command (a read-write command for the log) */
	PAXOS_IN_SYNCED = 3,	  /* every persist record with seq <= `seq` is durable */
	PAXOS_IN_READ = 4,	  /* a linearizable read (read index): answered by a note */
	PAXOS_IN_OPT_READ = 5,	  /* the optimized read (any replica coordinates): answered
				     in ready.opt_reads */
	PAXOS_IN_EXEC_RESULT = 6, /* the result of a ready.execs entry */
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
		struct {
			uint64_t client_id;
			uint64_t request_id;
		} read;
		struct {
			uint64_t client_id;
			uint64_t request_id;
			const uint8_t *command; /* borrowed for the call; read-only */
			uint32_t len;
		} opt_read;
		struct {
			uint16_t to;	       /* from the paxos_exec */
			uint64_t nonce;	       /* from the paxos_exec */
			uint64_t applied;      /* slots applied to the state the command ran on */
			const uint8_t *result; /* borrowed for the call */
			uint32_t len;
		} exec_result;
	};
	/* The host's raw clock, read only under PAXOS_UNSAFE_TRUST_HOST_CLOCK (tests); 0 else. */
	uint64_t host_ns;
};

/* One accepted entry as it must be stored. */
struct paxos_entry_ref {
	uint64_t slot;
	struct msg_ballot ballot; /* the original ballot (also for an adopted entry) */
	bool adopted; /* adopted during recovery (section 4, step 5): state, not this incarnation's
			 vote; reported in promises, never counted as an accept, never applied
			 before its commit is learned */
	const uint8_t *value; /* core-owned, valid until the next step */
	uint32_t len;
};

/* Flags of a persist record. */
#define PAXOS_REC_REGISTERED 0x1u /* own_reg/own_key: this incarnation's registration committed */
#define PAXOS_REC_RECOVERED 0x2u  /* this incarnation finished recovery and became fresh */
#define PAXOS_REC_RESTART 0x4u	  /* restart: the epoch and the restart promises (version 2) */
/* This replica installed a snapshot from a peer at `snapshot_index` (version 2): slots up to it
 * are committed in that snapshot and in no record before this one. A restore that does not
 * start from a snapshot at least that new stops trusting later commit indexes. */
#define PAXOS_REC_INSTALLED 0x8u

/* The epoch-restart state a record carries (PAXOS_REC_RESTART): the replica's epoch, its
 * restart promise for epoch `rs_epoch` and the restart proposal it accepted there (the decided
 * one once epoch + 1 is installed). Restored from the last record that carries it. */
struct paxos_restart_rec {
	uint64_t epoch;
	uint64_t rs_epoch;
	struct msg_ballot promised; /* (0, 0, (0, 0)): none */
	bool has_accepted;
	struct msg_ballot accepted;
	uint32_t n_members;
	struct msg_incarnation members[QUORUM_MAX_REPLICAS];
};

/* A WAL record: the promised ballot (always), the commit index known when it was written, then
 * `count` entries (may be 0: a promise only). Encode it with paxos_persist_encode, give the
 * bytes back to paxos_restore after a restart. On restore the promised ballot is the max over
 * records and entry ballots, and a later record's entry for a slot supersedes an earlier one.
 * The records of recovery (section 4, step 5: raised promise, adopted entries) are ordinary
 * records with `adopted` entries, marked sync. */
struct paxos_persist {
	uint64_t seq; /* strictly increasing, from 1 (after a restore: from the highest restored
			 seq + 1) */
	struct msg_ballot promised;
	uint64_t commit_index;
	unsigned flags;			      /* PAXOS_REC_* */
	struct msg_regidx own_reg;	      /* PAXOS_REC_REGISTERED */
	uint8_t own_key[MSG_PUBLIC_KEY_SIZE]; /* PAXOS_REC_REGISTERED */
	struct paxos_restart_rec restart;     /* PAXOS_REC_RESTART */
	uint64_t snapshot_index;	      /* PAXOS_REC_INSTALLED */
	uint32_t count;
	const struct paxos_entry_ref *entries; /* ready-owned */
	bool sync; /* fsync now (not at leisure): withheld outputs wait for it */
};

/* The record format version written by paxos_persist_encode (first byte): 1 for records
 * without PAXOS_REC_RESTART (as before), 2 for records with it. Both are restored. */
#define PAXOS_PERSIST_VERSION 2

/* Encodes rec into buf. Returns 0 with *len = bytes written; TEEMS_EFULL with *len = the size
 * needed when cap is too small (buf may be NULL then); TEEMS_EINVAL for a record the core never
 * produces (an entry over MSG_MAX_BLOB, unknown flags). */
int paxos_persist_encode(const struct paxos_persist *rec, uint8_t *buf, size_t cap, size_t *len);

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
	bool config; /* a configuration entry (paxos_config_entry), not client commands */
};

enum paxos_outcome {
	PAXOS_OUTCOME_APPLIED = 0,    /* committed in `slot`: reply with the result once applied */
	PAXOS_OUTCOME_NOT_LEADER = 1, /* never proposed: not applied; try `leader` */
	PAXOS_OUTCOME_UNKNOWN = 2,    /* proposed, then abandoned: may or may not be applied */
	PAXOS_OUTCOME_BUSY = 3,	      /* queue full: not applied, retry later */
	/* PAXOS_IN_READ: the leader confirmed its ballot with W_Q acknowledgements of a nonce
	 * sent after the read arrived, and has applied every slot up to `slot` (the read index,
	 * its commit index when the read arrived): run the read on the state reached after this
	 * ready's applies (any later committed state is linearizable too). A read that is not
	 * served gets NOT_LEADER (try the leader) or BUSY (its confirmation expired or the
	 * clock was tainted: retry); reads have no effect, so never UNKNOWN. */
	PAXOS_OUTCOME_READ = 4,
	/* (Leader lease, section 8: a READ note with `lease` set was answered at once from the
	 * lease, without a READ_INDEX round; see "Leader lease" at the end of this header.) */
};

struct paxos_note {
	uint64_t client_id;
	uint64_t request_id;
	enum paxos_outcome outcome;
	uint64_t slot;	 /* APPLIED */
	uint16_t leader; /* hint, or MSG_NO_REPLICA */
	/* READ answered from the leader lease (section 8), at once: see paxos_lease_read_ok. */
	bool lease;
};

/* The answer to a PAXOS_IN_OPT_READ (its own output, so that paxos_outcome stays as it is). */
enum paxos_opt_read_status {
	/* R_Q(s) replicas answered unanimously with nothing accepted above their last executed
	 * slot (`slot`); `result` holds the answer. */
	PAXOS_OPT_READ_OK = 0,
	/* The abort rule fired (replies differ, or a replier accepted a slot above its last
	 * executed one): nothing is known; fall back to PAXOS_IN_READ. */
	PAXOS_OPT_READ_ABORTED = 1,
	/* No read quorum within T_op (or a clock taint): retry. */
	PAXOS_OPT_READ_BUSY = 2,
};

struct paxos_opt_read_answer {
	uint64_t client_id;
	uint64_t request_id;
	enum paxos_opt_read_status status;
	uint64_t slot;	       /* OK: the last executed slot of the state that answered */
	const uint8_t *result; /* OK: ready-owned */
	uint32_t result_len;
};

/* Run a read-only command on the state machine (the optimized read): on the state reached
 * after this ready's applies, then give the result back with PAXOS_IN_EXEC_RESULT (to, nonce,
 * the number of slots applied to that state). `to` may be this replica itself. */
struct paxos_exec {
	uint16_t to;
	uint64_t nonce;
	const uint8_t *command; /* ready-owned */
	uint32_t len;
};

/* A quorum this core decided on, with the incarnations it counted (for the simulator's
 * "no two incarnations of one replica in one quorum" checker). */
enum paxos_counted_kind {
	PAXOS_COUNTED_ELECTION = 0, /* phase 1 won: `id` is the ballot's round */
	PAXOS_COUNTED_COMMIT = 1,   /* a slot chosen by this leader: `id` is the slot */
	PAXOS_COUNTED_RECOVERY = 2, /* recovery read completed: `id` is its nonce */
};

struct paxos_counted {
	enum paxos_counted_kind kind;
	uint64_t id;
	uint32_t n;
	struct msg_incarnation members[QUORUM_MAX_REPLICAS]; /* distinct replicas, self included */
};

/* A snapshot the shell must persist (and, when `install` is set, install first). See
 * "Snapshots and compaction" below for the order of operations. */
struct paxos_snapshot_out {
	/* the snapshot in the core's format; core-owned, valid until the next paxos_step or
	 * paxos_snapshot_taken; NULL: none */
	const uint8_t *blob;
	size_t blob_len;
	uint64_t slot; /* its last included slot */
	/* true: received from a peer. Replace the whole state machine by `state` (the bytes the
	 * snapshot's taker handed to paxos_snapshot_taken), which has then applied every slot up
	 * to `slot`; this ready's applies continue at slot + 1. */
	bool install;
	const uint8_t *state; /* points into blob */
	size_t state_len;
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
	struct paxos_counted *counted;
	size_t n_counted;
	struct paxos_exec *execs;
	size_t n_execs;
	struct paxos_opt_read_answer *opt_reads;
	size_t n_opt_reads;
	/* Set once this incarnation has seen a registration of its own replica newer than its
	 * own (section 4, step 3: halt): the shell must stop it. A halted core emits nothing
	 * more, ever (this ready still carries what the step produced before the halt). */
	bool halted;
	/* A snapshot to persist (snapshot.blob != NULL), installed from a peer this step. */
	struct paxos_snapshot_out snapshot;
	/* private: capacities and the scratch memory the outputs point into */
	size_t cap_persist, cap_sends, cap_applies, cap_notes, cap_counted, cap_execs,
		cap_opt_reads;
	struct core_arena scratch;
};

struct paxos;

/* Creates a core with an empty log. Errors: TEEMS_EINVAL (errbuf says which field),
 * TEEMS_ENOMEM, TEEMS_ECRYPTO (the SHA-256 context). cfg is copied. */
int paxos_new(struct paxos **out, const struct paxos_config *cfg, char *errbuf);
void paxos_free(struct paxos *p);

/* Restart: feeds one WAL record (the bytes paxos_persist_encode produced) back into a core
 * created by paxos_new, before its first paxos_step, once per record in WAL order (a rolled
 * back WAL is just a shorter prefix). The promised ballot becomes the max over every record
 * and entry ballot; a later record's entry for a slot supersedes an earlier one; slots up to
 * a record's commit index are committed (they are applied again from slot 1 on the first
 * step). The restored core is a new incarnation: it is restarted (config.restarted) and
 * suspicious (section 4, step 1), unless PAXOS_UNSAFE_NO_RECOVERY; restored entries above the
 * commit index are state, not this incarnation's votes (reported as adopted). The next
 * persist record's seq follows the highest restored one. `rec` is borrowed. With a sealed
 * snapshot, call paxos_restore_snapshot first and feed only the records after the WAL position
 * it covers; slots are then applied again from the snapshot's slot + 1. A record flagged
 * PAXOS_REC_INSTALLED above the commit index restored so far freezes the commit index for the
 * rest of the restore (docs/PROTOCOL.md "RR-Paxos: snapshots").
 * Errors: TEEMS_ECORRUPT (malformed record: the core is unchanged), TEEMS_EVERSION (a newer
 * record version), TEEMS_EINVAL (called after the first step), TEEMS_ENOMEM (discard the
 * core). */
int paxos_restore(struct paxos *p, const uint8_t *rec, size_t len);

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
 * sufficient, for a linearizable read: the leader must also confirm its ballot (read index,
 * PAXOS_IN_READ) or hold its lease (section 8, paxos_lease_held; see "Leader lease" below). */
bool paxos_can_serve_reads(const struct paxos *p);

/* Hook for the recovery increment (section 4, step 6): clear or set the suspicious flag.
 * Setting it makes a leader or candidate step down (pending proposals become UNKNOWN on the
 * next step's notes). */
void paxos_set_suspicious(struct paxos *p, bool suspicious);

/* Section 4 views. */
bool paxos_halted(const struct paxos *p);
/* This incarnation's registration index ((0,0): genesis, or not registered yet). */
struct msg_regidx paxos_registration(const struct paxos *p);
bool paxos_registered(const struct paxos *p);

enum paxos_lifecycle {
	PAXOS_LC_FRESH = 0,	  /* votes, coordinates */
	PAXOS_LC_REGISTERING = 1, /* restarted: waiting for its REGISTER to commit */
	PAXOS_LC_FENCING = 2,	  /* registered: waiting T_fence on lo */
	PAXOS_LC_RECOVERING = 3,  /* reading the protocol state from R_Q(s) replicas */
	PAXOS_LC_HALTED = 4,	  /* superseded by a newer incarnation of its replica */
};
enum paxos_lifecycle paxos_lifecycle(const struct paxos *p);
/* T_fence = (T_op + T_lease + T_cfg) * (1 + rho), rounded up. */
uint64_t paxos_fence_ns(const struct paxos_config *cfg);

/* Epoch restart (section 6). The current epoch (0 at genesis); whether this replica is stuck
 * now (it would propose or answer a restart). */
uint64_t paxos_epoch(const struct paxos *p);
bool paxos_stuck(const struct paxos *p);

/* ---- operator-authorized epoch restart (recovery = operator; docs/PROTOCOL.md
 * "Operator-authorized restart") ----
 *
 * With config.restart_operator a proposer that has its S_Q(s) answers does not accept its
 * value: it holds it (phase PAXOS_RESTART_WAITING) and re-sends its RESTART_PREPARE every T_op
 * so its answerers keep leaving it the floor. The operator inspects it (paxos_restart_view,
 * paxos_restart_auth_message), signs the message, and the shell hands the signature to the
 * core with paxos_restart_authorize; the next PAXOS_IN_TICK then accepts the value and sends
 * RESTART_ACCEPT carrying the signature, which every acceptor verifies against the same
 * message before it accepts. A signature for another cluster, epoch, proposal or
 * configuration, or by another key, verifies nowhere. */
enum paxos_restart_phase {
	PAXOS_RESTART_IDLE = 0,	   /* not proposing */
	PAXOS_RESTART_ANSWERS = 1, /* collecting answers */
	PAXOS_RESTART_ACCEPTS = 2, /* collecting accepts */
	PAXOS_RESTART_WAITING = 3, /* recovery = operator: waiting for the authorization */
};

struct paxos_restart_view {
	uint64_t epoch;
	bool stuck;
	bool answered;		    /* this incarnation promised a restart in its epoch */
	struct msg_ballot promised; /* that promise (zero: none) */
	enum paxos_restart_phase phase;
	struct msg_ballot proposal; /* phases 1-3: this proposer's number */
	uint32_t n_members;	    /* phases 2-3: the configuration of epoch + 1 it proposes */
	struct msg_incarnation members[QUORUM_MAX_REPLICAS];
	uint64_t auth_refused; /* RESTART_ACCEPTs this core refused for lack of a valid
				  authorization */
};
void paxos_restart_view(const struct paxos *p, struct paxos_restart_view *out);

/* Largest message paxos_restart_auth_bytes builds. */
#define PAXOS_RESTART_AUTH_DOMAIN "teems operator restart v1" /* with its NUL: 26 bytes */
#define PAXOS_RESTART_AUTH_MSG_MAX                                                   \
	(26 + PAXOS_RESTART_CLUSTER_ID_LEN + 8 + 26 + 4 + 18 * QUORUM_MAX_REPLICAS + \
	 MSG_DIGEST_SIZE)
/* The message the operator signs: the domain string with its NUL | cluster id (16) | u64
 * epoch | proposal (u64 round, u16 replica, u64 reg epoch, u64 reg slot) | u32 n | n members
 * (u16 replica, u64 reg epoch, u64 reg slot) | state digest (32), little-endian. Returns its
 * length (at most PAXOS_RESTART_AUTH_MSG_MAX; n must be at most QUORUM_MAX_REPLICAS). Pure:
 * the operator's tool builds the same bytes. */
size_t paxos_restart_auth_bytes(const uint8_t cluster_id[PAXOS_RESTART_CLUSTER_ID_LEN],
				uint64_t epoch, const struct msg_ballot *proposal,
				const struct msg_incarnation *members, uint32_t n,
				const uint8_t state_digest[MSG_DIGEST_SIZE], uint8_t *out);
/* The message for the proposal waiting for the operator. Errors: TEEMS_ENOTFOUND (not in
 * PAXOS_RESTART_WAITING), TEEMS_EFULL (cap below PAXOS_RESTART_AUTH_MSG_MAX). */
int paxos_restart_auth_message(const struct paxos *p, uint8_t *out, size_t cap, size_t *len);
/* Between steps: the operator's authorization (the signature, borrowed for the call) of the
 * waiting proposal. Errors: TEEMS_EINVAL (restart_operator not set, or len 0 or over
 * MSG_MAX_AUTH), TEEMS_ENOTFOUND (no proposal waits: it is not, or no longer, this core's),
 * TEEMS_EAUTH (it does not verify for the waiting proposal: another key, or a message for
 * another cluster, epoch, proposal or configuration). On success the next PAXOS_IN_TICK starts
 * the accept. */
int paxos_restart_authorize(struct paxos *p, const uint8_t *auth, size_t len);

/* The registration this core's applied configuration holds for `replica` (false: none beyond
 * genesis), with its key. */
bool paxos_config_registration(const struct paxos *p, uint16_t replica, struct msg_regidx *idx,
			       uint8_t key[MSG_PUBLIC_KEY_SIZE]);

/* Configuration indexes for the configuration lease (DESIGN.md section 8; src/core/abd_lease.h).
 * A configuration entry is what changes membership or incarnations: a REGISTER entry (index
 * (epoch, its slot)) or entering an epoch (index (epoch, 0)). Indexes compare as msg_regidx
 * does, (epoch, slot) lexicographically.
 *
 * paxos_config_applied_index: the index of the last configuration entry in the applied
 * configuration (the one paxos_config_registration reports), (0, 0) at genesis. Equal to the
 * highest registration index it holds, since every REGISTER applied in epoch E sets its
 * replica's registration to (E, slot) and entering E sets every replica's to (E, 0); so it is
 * kept through snapshots and restarts with the configuration itself.
 *
 * paxos_config_accepted_index: at least the applied index, and the highest (epoch, slot) of a
 * REGISTER this core holds as accepted (its own accept, a proposal as leader, or adopted in
 * recovery) or committed above its applied slot, REGISTERs that are void in this epoch left
 * out. It counts accepted but uncommitted REGISTERs: a grantor refuses configuration leases
 * bound to an older index from the moment it accepts (SCENARIOS.md S15). It goes down only
 * when such an uncommitted entry is replaced by another value for its slot, which means it
 * was never chosen. O(open slots). */
struct msg_regidx paxos_config_applied_index(const struct paxos *p);
struct msg_regidx paxos_config_accepted_index(const struct paxos *p);

/* ---- snapshots and compaction (docs/PROTOCOL.md "RR-Paxos: snapshots") ----
 *
 * A snapshot is the state machine at an applied slot k, wrapped by the core with what the
 * compacted log held for the protocol (the applied configuration: registrations and every key
 * ever registered; the epoch) and with a checkpoint of the core's own persisted state (promised
 * ballot, commit index, restart promises, every entry above k), then a SHA-256 digest of it
 * all. The core keeps its newest snapshot (one copy) and serves it to peers; slots <= k leave
 * the in-memory log. A shell that never calls paxos_snapshot_taken never compacts and works as
 * before; a core installs a snapshot only when a peer that compacted sends one, so a cluster
 * in which no shell takes snapshots never sees ready.snapshot. A replica that needs entries a
 * peer compacted can only be served through that peer's snapshot.
 *
 * Taking one (the shell decides when, e.g. every S applied slots), between two steps, after
 * executing the last ready in full:
 *   1. state := the state machine's serialization at its applied slot k (k <= the last slot
 *      the core handed out in ready.applies);
 *   2. paxos_snapshot_taken(p, k, state, len, &blob, &blob_len): the core builds the snapshot,
 *      keeps it, and drops log entries <= k (committed and applied, by 1.);
 *   3. make the WAL durable up to its end (every record of every ready so far), then write
 *      `blob` sealed, bound to that WAL position (store_snapshot_write with covers = the
 *      synced position), durably;
 *   4. only then compact the WAL up to that position (store_wal_compact).
 * A crash between any two of these leaves a consistent pair: the old snapshot with the full
 * WAL, or the new one with a WAL that continues it.
 *
 * Installing one (ready.snapshot with install set): a follower or recovering replica that
 * needs slots that its peers compacted fetches the snapshot (SNAPSHOT_REQUEST/SNAPSHOT_CHUNK,
 * every chunk checked against the transfer it continues; the whole checked against its
 * digest). The core then drops its log <= k, takes the configuration, and returns in the
 * ready: a persist record flagged PAXOS_REC_INSTALLED, and ready.snapshot with a checkpoint of
 * its own state around the peer's state machine. The shell executes that ready as:
 *   1. append ready.persist (as always);
 *   2. replace the state machine by ready.snapshot.state (applied slot := ready.snapshot.slot);
 *   3. persist ready.snapshot.blob as in steps 3-4 above (the blob is this replica's own);
 *   4. sends, applies (from slot + 1), notes, as always.
 * A crash before 3. completes restarts on the old snapshot and a WAL whose INSTALLED record
 * tells paxos_restore not to trust the commit indexes after it: the restored incarnation is
 * suspicious and recovers anyway (DESIGN.md section 4).
 *
 * Restart: load the sealed snapshot if there is one, call paxos_restore_snapshot with its
 * bytes (it returns the state machine bytes to load into the state machine: its applied slot
 * is then `*slot`), then feed the WAL records after the position it covers to paxos_restore as
 * before; applies continue at slot + 1. A rollback may return any earlier consistent pair. */

/* The shell took a snapshot of its state machine at applied slot `slot` (state: the bytes of
 * its serialization, borrowed for the call). `slot` must be above the current snapshot and at
 * most the last slot handed out in ready.applies. On success *blob / *blob_len (may be NULL)
 * give the snapshot to persist: core-owned, valid until the next paxos_step or
 * paxos_snapshot_taken call (so call it only after executing the last ready: the ready's
 * pointers into the dropped entries and the old snapshot become invalid). Errors:
 * TEEMS_EINVAL (slot not in (snapshot, applied], or state over PAXOS_SNAPSHOT_MAX; nothing
 * changed), TEEMS_ENOMEM and TEEMS_ECRYPTO (nothing changed). */
#define PAXOS_SNAPSHOT_MAX (1ull << 30) /* largest state machine serialization, bytes */
int paxos_snapshot_taken(struct paxos *p, uint64_t slot, const uint8_t *state, size_t len,
			 const uint8_t **blob, size_t *blob_len);

/* Restart from a snapshot: on a core from paxos_new, before its first step and before any
 * paxos_restore, with the bytes of a snapshot blob (ready.snapshot.blob or paxos_snapshot_taken's
 * blob, as the shell sealed it; borrowed for the call). Sets *slot and points *state /
 * *state_len into `blob` at the state machine bytes to load. The core is then restarted and
 * suspicious as after paxos_restore. Errors: TEEMS_ECORRUPT (malformed or digest mismatch:
 * the core is unchanged, unless the digest matched but its checkpoint record does not restore:
 * then discard the core), TEEMS_EVERSION, TEEMS_EINVAL (called after a step or a restore),
 * TEEMS_ENOMEM (discard the core). */
int paxos_restore_snapshot(struct paxos *p, const uint8_t *blob, size_t len, uint64_t *slot,
			   const uint8_t **state, size_t *state_len);

/* The last slot of the newest snapshot (0: none); slots up to it are not in the log. */
uint64_t paxos_snapshot_index(const struct paxos *p);

/* Counters, for tests and the simulator. */
struct paxos_snapshot_stats {
	uint64_t taken;		    /* paxos_snapshot_taken calls that succeeded */
	uint64_t installed;	    /* snapshots installed from a peer */
	uint64_t chunks_sent;	    /* SNAPSHOT_CHUNK messages sent */
	uint64_t chunks_refused;    /* chunks that did not continue the transfer (mixed, torn) */
	uint64_t transfers_refused; /* complete transfers that failed their digest or parse */
};
void paxos_snapshot_stats(const struct paxos *p, struct paxos_snapshot_stats *out);

/* ---- slot values: a batch of client commands, or a configuration entry ----
 * Layout: repeated { u64 client_id, u64 request_id, u32 len, len bytes }, little-endian. A
 * configuration entry is a value holding exactly one element whose client_id is
 * PAXOS_CONFIG_CLIENT and whose request_id names the kind (PAXOS_CONFIG_REGISTER); client ids
 * must never take that value. paxos_batch_next skips configuration elements, so a shell that
 * only runs client commands can ignore them; paxos_config_entry decodes one. */
#define PAXOS_CONFIG_CLIENT UINT64_MAX
#define PAXOS_CONFIG_REGISTER 1u

/* REGISTER(replica, key, quote, expected_previous_index) as it sits in the log. Its
 * registration index is (0, slot of the entry). */
struct paxos_register_entry {
	uint16_t replica;
	uint8_t public_key[MSG_PUBLIC_KEY_SIZE];
	struct msg_regidx expected_previous;
	const uint8_t *quote; /* points into the value */
	uint32_t quote_len;
};

/* True when `value` is a configuration entry; fills *out for a REGISTER. */
bool paxos_config_entry(const uint8_t *value, uint32_t len, struct paxos_register_entry *out);
struct paxos_command {
	uint64_t client_id;
	uint64_t request_id;
	const uint8_t *command; /* points into the value */
	uint32_t len;
};

/* Reads the command at *off and advances *off. Returns false at the end or on a malformed
 * value (which the core never produces). */
bool paxos_batch_next(const uint8_t *value, uint32_t len, size_t *off, struct paxos_command *out);

/* The digest an ACCEPTED names: SHA-256 of (u64 first_slot, u64 last_slot, then each value as
 * u32 length and bytes), little-endian, computed with the core's own EVP context. Returns 0 or
 * TEEMS_ECRYPTO. */
int paxos_digest(struct paxos *p, uint64_t first_slot, const struct msg_bytes *values,
		 uint32_t count, uint8_t out[MSG_DIGEST_SIZE]);

/* ---- leader lease (DESIGN.md section 8; docs/LEASES.md; docs/PROTOCOL.md "RR-Paxos:
 * leader lease") ----
 * With config.t_lease_ns > 0 (the default) every fresh replica that acknowledges a heartbeat
 * of ballot b grants b a T_lease promise in the HEARTBEAT_ACK, and promises no other ballot (and
 * does not campaign) until that promise has run out on its lo clock. The leader holds the lease
 * while W_Q such grants (itself included) are counted, from the earliest counted heartbeat's
 * send, for T_lease (1 - rho) on its hi clock, in one taint epoch, and only while its ballot is
 * the one it promised. A PAXOS_IN_READ at a leader that can serve reads and holds the lease is
 * answered in the same step: a note with outcome READ, `lease` set and slot = its commit index
 * (run the read on the state after this ready's applies, as for any READ). Otherwise (lease
 * expired, clock tainted, not yet counted) the read takes the read-index path as before, so a
 * shell that handles PAXOS_OUTCOME_READ needs no change.
 *
 * Strictly, a lease read must read the state first and then check the lease with a clock
 * reading taken after the read (docs/LEASES.md): a shell that can take a fresh reading after
 * running the read calls paxos_lease_read_ok with it, and when it returns false discards the
 * result and submits the read again (it then goes the read-index way). A shell that answers
 * right after executing the ready relies on the 2 rho T_lease margin instead (the time between
 * the step's reading and the read must be below it). t_lease_ns = 0 disables leases. */

/* Whether this core, as leader, holds its lease at reading `now` (host_ns: the host clock,
 * for PAXOS_UNSAFE_TRUST_HOST_CLOCK only; 0 otherwise). Pure: changes nothing. */
bool paxos_lease_read_ok(const struct paxos *p, const struct paxos_time *now, uint64_t host_ns);
/* The same at the reading of the last step. */
bool paxos_lease_held(const struct paxos *p);
/* Reads answered from the lease so far (counter, for tests and INFO). */
uint64_t paxos_lease_reads(const struct paxos *p);

#endif
