/* RR-Paxos internals shared by paxos_core.c, paxos_elect.c and paxos_accept.c. Not an
 * interface: nothing outside src/core/paxos_*.c includes this. */
#ifndef TEEMS_CORE_PAXOS_INTERNAL_H
#define TEEMS_CORE_PAXOS_INTERNAL_H

#include <openssl/evp.h>

#include "core/lease.h"
#include "core/paxos.h"

/* Propagates a non-zero teems_err from an internal step. */
#define TRY(x)                      \
	do {                        \
		int rc_ = (x);      \
		if (rc_)            \
			return rc_; \
	} while (0)

/* One log slot. Slot s lives at log[s - log_base - 1]: the slots up to log_base are compacted
 * into the snapshot (paxos_snapshot.c) and are not in the array. Only slots in
 * (log_base, last_slot] may be looked up. */
#define PSLOT(p, s) (&(p)->log[(s) - (p)->log_base - 1])

struct paxos_slot {
	bool accepted;	  /* holds an entry (own accept, or the leader's proposal) */
	bool committed;	  /* chosen and learned (only the contiguous prefix is set) */
	bool adopted;	  /* state from recovery or restore, not this incarnation's vote */
	bool is_register; /* the value is a REGISTER entry of replica reg_replica */
	uint16_t reg_replica;
	uint64_t reg_prev_epoch;  /* its expected_previous.epoch: older than ours means void */
	struct msg_ballot ballot; /* the entry's ballot */
	uint8_t *value;		  /* owned; NULL when len is 0 */
	uint32_t len;
	uint64_t seq; /* persist record holding the entry */
	/* leader bookkeeping for the current ballot's accept collection */
	bool open;	  /* an accept collection is running */
	uint64_t nonce;	  /* its nonce */
	uint64_t sent_hi; /* when its first ACCEPT left (hi) */
	uint64_t acked;	  /* replicas whose matching accept was counted */
	uint64_t synced;  /* ... of which synced */
	bool chosen;	  /* the commit rule held (may be ahead of commit_index) */
};

struct paxos_queued {
	uint64_t client_id;
	uint64_t request_id;
	uint8_t *command; /* owned */
	uint32_t len;
};

struct paxos_pending {
	uint64_t client_id;
	uint64_t request_id;
	uint64_t slot;
};

/* A message withheld until a persist record is synced. */
enum paxos_held_kind {
	HELD_PREPARE = 0,     /* broadcast PREPARE for `ballot` */
	HELD_PROMISE = 1,     /* PROMISE to `to` for `ballot`, entries from `from_slot` */
	HELD_ACCEPTED = 2,    /* synced ACCEPTED to `to` */
	HELD_RECOVERED = 3,   /* recovery's record synced: become fresh (section 4, step 6) */
	HELD_RS_PREPARE = 4,  /* epoch restart: own promise synced, broadcast RESTART_PREPARE */
	HELD_RS_ANSWER = 5,   /* RESTART_ANSWER to `to` for proposal `ballot` */
	HELD_RS_ACCEPTED = 6, /* RESTART_ACCEPTED to `to` for proposal `ballot` */
	HELD_RS_SELF = 7,     /* the proposer's own accept of `ballot` is synced: count it */
};

/* One incarnation's view of the registrations of a collection (section 4, step 3): the
 * incarnation each counted replica replied as, and the highest registration index of each
 * replica that any reply's vector showed. */
struct paxos_collection {
	uint64_t members; /* counted replicas */
	struct msg_regidx member[QUORUM_MAX_REPLICAS];
	struct msg_regidx seen[QUORUM_MAX_REPLICAS];
	uint64_t seen_mask;
};

/* An open ACCEPT round (one nonce) and its collection. */
struct paxos_round {
	uint64_t nonce;
	uint64_t sent_hi;
	bool live;
	struct paxos_collection col;
};

/* The committed registration of one replica (the applied configuration). */
struct paxos_reg {
	bool set; /* beyond genesis */
	struct msg_regidx idx;
	uint8_t key[MSG_PUBLIC_KEY_SIZE];
};

/* A read waiting for the leader to confirm its ballot (paxos_read.c). */
struct paxos_read_req {
	uint64_t client_id;
	uint64_t request_id;
	uint64_t index; /* commit index when it arrived */
};

/* An optimized read this replica coordinates (paxos_oread.c). */
struct paxos_oread {
	uint64_t client_id;
	uint64_t request_id;
	uint64_t nonce;
	uint64_t sent_hi;
	struct paxos_collection col;
	uint64_t suspicious; /* counted members flagged suspicious */
	bool aborted;
	bool have_result;
	uint8_t digest[MSG_DIGEST_SIZE]; /* of (last_executed, result) of the first reply */
	uint64_t last_executed;
	uint8_t *result; /* owned */
	uint32_t result_len;
};

/* A REGISTER this leader proposed, to answer once applied. */
struct paxos_reg_wait {
	uint16_t replica;
	uint64_t slot;
	uint64_t nonce;
};

struct paxos_held {
	enum paxos_held_kind kind;
	uint64_t seq; /* released once synced_seq >= seq */
	uint16_t to;
	uint64_t nonce;
	struct msg_ballot ballot;
	uint64_t from_slot;
	uint64_t first_slot, last_slot;
	uint8_t digest[MSG_DIGEST_SIZE];
};

/* The leader lease (paxos_lease.c). */
struct paxos_lease_state {
	bool on;			 /* t_lease_ns > 0 */
	struct lease_follower f;	 /* grantor: the promise our heartbeat acks carry */
	struct lease_leader l;		 /* holder: our lease as leader */
	bool bound;			 /* l counts grants for `ballot` */
	struct msg_ballot ballot;	 /* the ballot l is for */
	uint64_t hb_nonce[LEASE_ROUNDS]; /* our last heartbeats' nonces (0: none) ... */
	uint64_t hb_round[LEASE_ROUNDS]; /* ... and their lease rounds */
	unsigned hb_next;
	uint64_t host_ns; /* the host clock of the current step (trust-host-clock only) */
	uint64_t served;  /* reads answered from the lease */
};

struct paxos {
	struct paxos_config cfg;
	unsigned n, w_q;
	EVP_MD_CTX *md; /* SHA-256, reused for every digest */
	bool suspicious;
	bool halted;
	bool restarted;
	bool registered;
	struct msg_regidx reg; /* own registration index (header, ballots) */
	enum paxos_lifecycle lc;

	/* configuration (section 4): applied registrations and every key ever registered */
	struct paxos_reg regs[QUORUM_MAX_REPLICAS];
	uint8_t (*keys)[MSG_PUBLIC_KEY_SIZE];
	size_t n_keys, cap_keys;
	struct paxos_reg_wait *reg_wait;
	size_t n_reg_wait, cap_reg_wait;

	/* registering (step 2) */
	uint64_t reg_nonce;
	uint64_t reg_next_send; /* hi */
	struct msg_regidx reg_expected;
	uint16_t reg_target;
	bool reg_record; /* persist the REGISTERED record at the end of the step */

	/* fencing (step 4) */
	uint64_t fence_start_lo;
	uint64_t fence_epoch;

	/* recovering (step 5) */
	uint64_t rec_nonce;
	uint64_t rec_sent_hi;
	uint64_t rec_epoch;
	uint64_t rec_suspicious; /* counted members flagged suspicious */
	struct paxos_collection rec_col;
	struct msg_ballot rec_promised;
	uint64_t rec_from;
	bool rec_finishing; /* the record is written; waiting for its sync */

	/* epoch restart (section 6, paxos_restart.c) */
	uint64_t epoch;				/* the current epoch (0: genesis) */
	uint64_t rs_tag;			/* this incarnation's name in a configuration */
	uint64_t heard_hi[QUORUM_MAX_REPLICAS]; /* last message from a fresh registered
						   incarnation of our epoch (hi; 0: never) */
	uint64_t leader_heard_hi;		/* last ACCEPT or COMMIT of a fresh leader */
	uint64_t rs_window_hi;			/* stuck needs t_restart since this (hi) */
	/* promises (persisted in PAXOS_REC_RESTART) */
	uint64_t rs_epoch;
	struct msg_ballot rs_promised;
	bool rs_has_acc;
	struct msg_ballot rs_acc;
	uint32_t rs_n_acc;
	struct msg_incarnation rs_acc_m[QUORUM_MAX_REPLICAS];
	bool rs_record;	  /* the next persist record carries the restart state */
	bool rs_answered; /* this incarnation promised a restart in its epoch */
	uint64_t rs_first_lo, rs_first_epoch; /* its first answer (lo, taint epoch) */
	bool rs_fence;			      /* installed: wait, then fresh (no recovery read) */
	/* proposer */
	int rs_phase; /* 0 idle, 1 collecting answers, 2 collecting accepts */
	struct msg_ballot rs_prop;
	uint64_t rs_nonce;
	uint64_t rs_sent_hi;
	uint64_t rs_next_hi; /* earliest next proposal (hi) */
	uint64_t rs_mask;    /* replicas that answered */
	uint64_t rs_tags[QUORUM_MAX_REPLICAS];
	bool rs_best_set;
	struct msg_ballot rs_best;
	uint32_t rs_n_best;
	struct msg_incarnation rs_best_m[QUORUM_MAX_REPLICAS];
	uint64_t rs_acc_mask;			   /* replicas whose accept was counted */
	uint64_t rs_dec_sent[QUORUM_MAX_REPLICAS]; /* decision last sent to a laggard (hi) */
	/* recovery = operator (paxos_restart.c, "Operator-authorized restart"): rs_phase 3 holds
	 * the value the answers chose until the operator's authorization of exactly (epoch,
	 * rs_prop, rs_pend_m, zero state digest) arrives (paxos_restart_authorize) */
	uint32_t rs_n_pend;
	struct msg_incarnation rs_pend_m[QUORUM_MAX_REPLICAS];
	bool rs_authorized;   /* verified; the next tick starts the accept */
	uint32_t rs_auth_len; /* the authorization RESTART_ACCEPT carries (phase 2) */
	uint8_t rs_auth[MSG_MAX_AUTH];
	uint64_t rs_keep_hi;	  /* phase 3: RESTART_PREPARE last re-sent (hi) */
	uint64_t rs_auth_refused; /* RESTART_ACCEPTs refused: no valid authorization */

	/* read index (leader) */
	struct paxos_read_req *ri_wait, *ri_fly;
	size_t n_ri_wait, cap_ri_wait, n_ri_fly, cap_ri_fly;
	uint64_t ri_nonce;
	uint64_t ri_sent_hi;
	struct paxos_collection ri_col;

	/* optimized reads this replica coordinates */
	struct paxos_oread *oreads;
	size_t n_oreads, cap_oreads;

	/* accept rounds (leader) */
	struct paxos_round *rounds;
	size_t n_rounds, cap_rounds, round_hint;
	enum paxos_role role;
	struct msg_ballot promised; /* highest promised (or accepted) ballot */
	uint64_t promised_seq;	    /* the record that holds `promised` */
	uint64_t max_round_seen;
	uint16_t leader; /* hint */

	/* snapshot and compaction (paxos_snapshot.c) */
	uint64_t log_base;  /* slots <= log_base are in the snapshot, not in `log` */
	uint8_t *snap_blob; /* the newest snapshot (core format), owned; NULL: none */
	size_t snap_len;
	uint64_t snap_slot;   /* its last included slot (== log_base once taken or installed) */
	bool snap_out;	      /* the step installed one: hand a checkpoint to the shell */
	uint64_t install_rec; /* the next record carries PAXOS_REC_INSTALLED for this slot */
	bool restore_frozen;  /* restore: an install we do not have; commit index frozen */
	uint64_t snap_push_hi[QUORUM_MAX_REPLICAS]; /* leader: last snapshot push (hi) */
	/* a transfer in progress (receiver) */
	bool xfer_on;
	uint16_t xfer_from;
	uint64_t xfer_index, xfer_total, xfer_got, xfer_hi, xfer_cap;
	uint8_t *xfer_buf; /* owned */
	/* a snapshot this replica needs (candidate gap, recovery): asked of want_peer */
	uint64_t want_min; /* 0: none */
	uint16_t want_peer;
	uint64_t want_sent_hi;
	struct paxos_snapshot_stats snap_stats;
	uint64_t cand_ask[QUORUM_MAX_REPLICAS]; /* candidate: the slot each promiser was asked from
						 */
	uint64_t rec_ask[QUORUM_MAX_REPLICAS];	/* recovery: likewise */
	uint64_t rec_snap_need;			/* recovery: a replier's snapshot covers this */
	uint16_t rec_snap_peer;
	bool rec_wait_snap;   /* recovery read complete; waiting for that snapshot */
	uint64_t rec_wait_hi; /* since when (hi) */

	/* log */
	struct paxos_slot *log;
	uint64_t log_cap;
	uint64_t last_slot;
	uint64_t commit_index;
	uint64_t applied;

	/* persistence */
	uint64_t next_seq; /* seq of the next record */
	uint64_t synced_seq;
	struct paxos_held *held;
	size_t n_held, cap_held;

	/* time and randomness */
	struct paxos_time now;
	bool have_time;
	uint64_t random;
	uint64_t nonce_ctr;
	uint64_t nonce_key;
	bool nonce_key_set;
	uint64_t election_deadline; /* hi */

	/* candidate */
	struct msg_ballot cand_ballot;
	bool cand_sent;	     /* PREPARE left (own promise synced) */
	uint64_t cand_nonce; /* collection */
	uint64_t cand_sent_hi;
	uint64_t cand_from;	/* from_slot of the PREPARE */
	uint64_t cand_promised; /* mask of counted promises */
	struct paxos_collection cand_col;
	/* highest-ballot entry per slot reported so far, from cand_from on */
	struct paxos_slot *cand_log; /* cand_log[s - cand_from]: accepted, ballot, value */
	uint64_t cand_cap;
	uint64_t cand_last;

	/* leader */
	uint64_t noop_slot; /* the no-op of our ballot; reads once commit_index >= it */
	uint64_t hb_nonce;
	uint64_t gap_sent[QUORUM_MAX_REPLICAS]; /* end of the last gap chunk sent to each peer */
	uint64_t next_heartbeat;		/* hi */
	bool commit_advanced;			/* send a COMMIT at the end of the step */
	bool accept_sent;
	struct paxos_queued *queue;
	size_t n_queue, cap_queue;
	struct paxos_pending *pending;
	size_t n_pending, cap_pending;

	/* leader lease (paxos_lease.c) */
	struct paxos_lease_state ls;
};

static inline int paxos_regidx_cmp(const struct msg_regidx *a, const struct msg_regidx *b)
{
	if (a->epoch != b->epoch)
		return a->epoch < b->epoch ? -1 : 1;
	if (a->slot != b->slot)
		return a->slot < b->slot ? -1 : 1;
	return 0;
}

/* ---- paxos_core.c ---- */
struct paxos_slot *paxos_slot_get(struct paxos *p, uint64_t slot); /* NULL above last_slot */
int paxos_log_reserve(struct paxos *p, uint64_t slot);
/* Replaces slot's entry by a copy of value (the old bytes are freed after this step). */
int paxos_slot_set(struct paxos *p, struct paxos_ready *r, uint64_t slot,
		   const struct msg_ballot *b, const uint8_t *value, uint32_t len);
void *paxos_scratch(struct paxos_ready *r, size_t size); /* ready-owned, NULL on ENOMEM */
int paxos_defer_free(struct paxos_ready *r, void *ptr);
struct paxos_send *paxos_send_new(struct paxos *p, struct paxos_ready *r, uint16_t to,
				  enum msg_type type, uint64_t nonce);
int paxos_note(struct paxos_ready *r, uint64_t client_id, uint64_t request_id,
	       enum paxos_outcome outcome, uint64_t slot, uint16_t leader);
/* Appends a persist record of the promised ballot and slots first..last (count 0 for none). */
int paxos_persist(struct paxos *p, struct paxos_ready *r, uint64_t first, uint64_t count, bool sync,
		  uint64_t *seq);
int paxos_hold(struct paxos *p, const struct paxos_held *h);
uint64_t paxos_new_nonce(struct paxos *p);
void paxos_reset_election_timer(struct paxos *p);
/* This replica's registration vector, in ready-owned memory. */
int paxos_regvec(struct paxos *p, struct paxos_ready *r, struct msg_incarnation_list *out);
bool paxos_is_peer(const struct paxos *p, const struct msg *m);
int paxos_range_digest(struct paxos *p, uint64_t first, uint64_t last,
		       uint8_t out[MSG_DIGEST_SIZE]);
void paxos_mark_restarted(struct paxos *p);
/* Encodes a REGISTER as a configuration slot value into buf (NULL: returns the size). */
uint32_t paxos_register_encode(const struct msg_register *m, uint8_t *buf);
/* Write/vote quorum (W_Q, or a majority under PAXOS_UNSAFE_CFT_QUORUMS). */
unsigned paxos_vote_quorum(const struct paxos *p);
/* Whether a suspicious replica votes (only under PAXOS_UNSAFE_CFT_QUORUMS). */
bool paxos_suspicion_ignored(const struct paxos *p);
int paxos_counted_add(struct paxos *p, struct paxos_ready *r, enum paxos_counted_kind kind,
		      uint64_t id, const struct paxos_collection *col);
int paxos_nack(struct paxos *p, struct paxos_ready *r, const struct msg *m,
	       enum msg_nack_reason reason);
/* Steps down to follower of `leader` (MSG_NO_REPLICA: unknown); pending proposals become
 * UNKNOWN and queued ones NOT_LEADER. */
int paxos_step_down(struct paxos *p, struct paxos_ready *r, uint16_t leader);

/* ---- paxos_persist.c ---- */

/* ---- paxos_register.c: configuration, REGISTER, discard and halt, fence ---- */
/* Records a committed slot's REGISTER (if it is one) in the configuration, without the halt
 * and learn rules (restore). */
int paxos_config_note(struct paxos *p, uint64_t slot);
/* Classifies a slot's value (sets is_register / reg_replica). */
void paxos_slot_classify(struct paxos_slot *s);
/* The newest registration of `replica` this core knows from its own log: accepted or adopted
 * REGISTERs above the commit index, else the applied configuration. */
struct msg_regidx paxos_known_reg(const struct paxos *p, uint16_t replica);
/* Applies a committed configuration entry (slot `slot`). */
int paxos_config_apply(struct paxos *p, struct paxos_ready *r, uint64_t slot);
/* Halt checks on an incoming message (regvec, ACCEPT batch). Sets p->halted. */
void paxos_check_halt(struct paxos *p, const struct msg *m);
void paxos_halt(struct paxos *p);
/* Collections: starts one, adds a reply (false: discarded), re-evaluates every member. */
void paxos_col_reset(struct paxos_collection *c);
void paxos_col_self(struct paxos *p, struct paxos_collection *c);
/* Merges a reply's registration vector into the collection (then prune). */
void paxos_col_seen(const struct paxos *p, struct paxos_collection *c,
		    const struct msg_incarnation_list *regvec);
/* Counts the sender of m unless a newer incarnation of it is known; re-evaluates every
 * member. Returns whether the sender is counted. */
bool paxos_col_member(struct paxos *p, struct paxos_collection *c, const struct msg *m);
void paxos_col_prune(const struct paxos *p, struct paxos_collection *c);
void paxos_known_regs(const struct paxos *p, struct msg_regidx out[QUORUM_MAX_REPLICAS]);
void paxos_col_prune_known(const struct paxos *p, struct paxos_collection *c,
			   const struct msg_regidx known[QUORUM_MAX_REPLICAS]);
int paxos_on_register(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_register_result(struct paxos *p, struct paxos_ready *r, const struct msg *m);
/* Lifecycle timers: REGISTER retries, the fence, recovery retries. */
int paxos_lifecycle_tick(struct paxos *p, struct paxos_ready *r);
/* Leader: answers the REGISTERs applied in slot. */
int paxos_register_applied(struct paxos *p, struct paxos_ready *r, uint64_t slot);

/* ---- paxos_recover.c ---- */
int paxos_recover_start(struct paxos *p, struct paxos_ready *r);
int paxos_on_recovery_request(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_recovery_reply(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_release_recovered(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h);

/* ---- paxos_restart.c: epoch restart (section 6) ---- */
int paxos_restart_restore(struct paxos *p, const struct paxos_restart_rec *x);
/* Sets the epoch and the baseline configuration of an epoch entered by a restart: every
 * replica registered at (epoch, 0) until a REGISTER of that epoch commits. */
void paxos_enter_epoch(struct paxos *p, uint64_t epoch);
/* Every incoming message, before anything else: liveness bookkeeping, laggards. Returns false
 * when the message must be ignored. */
bool paxos_restart_filter(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_restart_msg(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_restart_tick(struct paxos *p, struct paxos_ready *r);
int paxos_release_restart(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h);
/* Fills rec->restart when the restart state must be persisted. */
void paxos_restart_persist(struct paxos *p, struct paxos_persist *rec);

/* ---- paxos_snapshot.c: snapshots, compaction, transfer and install ---- */
int paxos_on_snapshot_request(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_snapshot_chunk(struct paxos *p, struct paxos_ready *r, const struct msg *m);
/* Leader: `to` needs slots at or below our snapshot: push the first chunk (rate-limited). */
int paxos_snapshot_push(struct paxos *p, struct paxos_ready *r, uint16_t to);
/* Asks `peer` for a snapshot covering at least min_index (candidate gap, recovery). */
int paxos_snapshot_want(struct paxos *p, struct paxos_ready *r, uint16_t peer, uint64_t min_index);
/* Timers: stalled transfers, repeated requests. */
int paxos_snapshot_tick(struct paxos *p, struct paxos_ready *r);
/* End of a step: build the checkpoint of an installed snapshot into r->snapshot. */
int paxos_snapshot_finish_step(struct paxos *p, struct paxos_ready *r);
void paxos_snapshot_free(struct paxos *p);

/* ---- paxos_register.c, for an installed snapshot ---- */
/* Runs the halt and learn rules of paxos_config_apply on an installed configuration. */
void paxos_config_installed(struct paxos *p);

/* ---- paxos_recover.c, for an installed snapshot ---- */
int paxos_recover_snapshot_installed(struct paxos *p, struct paxos_ready *r);

/* ---- paxos_read.c ---- */
int paxos_on_read(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in);
int paxos_read_work(struct paxos *p, struct paxos_ready *r);
int paxos_read_abandon(struct paxos *p, struct paxos_ready *r, enum paxos_outcome outcome,
		       bool all);
int paxos_on_read_index(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_read_index_ack(struct paxos *p, struct paxos_ready *r, const struct msg *m);

/* ---- paxos_oread.c ---- */
int paxos_on_opt_read(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in);
int paxos_on_exec_result(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in);
int paxos_on_read_msg(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_read_reply(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_oread_expire(struct paxos *p, struct paxos_ready *r, bool all);

/* ---- paxos_elect.c ---- */
int paxos_elect_tick(struct paxos *p, struct paxos_ready *r);
int paxos_elect_abandon(struct paxos *p);
int paxos_on_prepare(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_promise(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_release_prepare(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h);
int paxos_release_promise(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h);
/* The accepted entries from slot `from` on, as a PROMISE or RECOVERY_REPLY carries them: at
 * most MSG_MAX_ENTRIES and half a frame of values, in ready scratch; *more when entries remain
 * (the asker asks again from the slot after the last one). Errors: TEEMS_ENOMEM. */
int paxos_page_entries(struct paxos *p, struct paxos_ready *r, uint64_t from,
		       struct msg_entry **items, uint32_t *count, bool *more);
void paxos_cand_clear(struct paxos *p);
/* Remembers an entry in cand_log if it has the highest ballot seen for its slot; `committed`
 * entries (from a replier whose commit index covers the slot) override and stay. */
int paxos_cand_merge(struct paxos *p, uint64_t slot, const struct msg_ballot *b,
		     const uint8_t *value, uint32_t len, bool committed);

/* ---- paxos_accept.c ---- */
int paxos_on_propose(struct paxos *p, struct paxos_ready *r, const struct paxos_input *in);
int paxos_on_accept(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_accepted(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_commit(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_heartbeat_ack(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_nack(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_release_accepted(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h);
/* Leader: own accepts for records now synced, retries of expired rounds, heartbeats, flushing
 * the queue into new slots, commit advance. Called at the end of every step. */
int paxos_leader_work(struct paxos *p, struct paxos_ready *r);
/* Leader: abandon every open accept round (taint): UNKNOWN for their commands. */
int paxos_accept_abandon(struct paxos *p, struct paxos_ready *r);
/* Leader: propose slots first..last (already in the log at our ballot) with a fresh round. */
int paxos_send_accepts(struct paxos *p, struct paxos_ready *r, uint64_t first, uint64_t last,
		       int to);
/* Learner: apply committed slots in order. */
int paxos_apply_committed(struct paxos *p, struct paxos_ready *r);
/* Follower/any: mark slots <= ci committed when held at ballot b (contiguously). */
void paxos_learn_commit(struct paxos *p, const struct msg_ballot *b, uint64_t ci);

/* ---- paxos_lease.c: the leader lease (section 8) ---- */
int paxos_lease_init(struct paxos *p);
/* A lease reading: the trusted clock, or the host's under PAXOS_UNSAFE_TRUST_HOST_CLOCK. */
struct lease_time paxos_lease_time(const struct paxos *p, const struct paxos_time *now,
				   uint64_t host_ns);
/* Before promising (or campaigning for) ballot b: false while our grant to another runs. */
bool paxos_lease_may_support(struct paxos *p, const struct msg_ballot *b);
/* Acknowledging a heartbeat of ballot b: the promise to put in HEARTBEAT_ACK.lease_ns (0:
 * none: fenced, or bound to another ballot). */
uint64_t paxos_lease_grant(struct paxos *p, const struct msg_ballot *b);
/* Leader: a heartbeat with `nonce` is about to be broadcast. */
void paxos_lease_heartbeat(struct paxos *p, uint64_t nonce);
/* Leader: a HEARTBEAT_ACK arrived. */
void paxos_lease_on_ack(struct paxos *p, const struct msg *m);

#endif
