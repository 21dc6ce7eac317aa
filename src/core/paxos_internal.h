/* RR-Paxos internals shared by paxos_core.c, paxos_elect.c and paxos_accept.c. Not an
 * interface: nothing outside src/core/paxos_*.c includes this. */
#ifndef TEEMS_CORE_PAXOS_INTERNAL_H
#define TEEMS_CORE_PAXOS_INTERNAL_H

#include "core/paxos.h"

/* One log slot. Slot s lives at log[s - 1]. */
struct paxos_slot {
	bool accepted;		  /* holds an entry (own accept, or the leader's proposal) */
	bool committed;		  /* chosen and learned (only the contiguous prefix is set) */
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
	HELD_PREPARE = 0,  /* broadcast PREPARE for `ballot` */
	HELD_PROMISE = 1,  /* PROMISE to `to` for `ballot`, entries from `from_slot` */
	HELD_ACCEPTED = 2, /* synced ACCEPTED to `to` */
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

struct paxos {
	struct paxos_config cfg;
	unsigned n, w_q;
	bool suspicious;
	enum paxos_role role;
	struct msg_ballot promised; /* highest promised (or accepted) ballot */
	uint64_t promised_seq;	    /* the record that holds `promised` */
	uint64_t max_round_seen;
	uint16_t leader; /* hint */

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
};

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
struct msg_incarnation_list paxos_regvec(const struct paxos *p);
bool paxos_is_peer(const struct paxos *p, const struct msg *m);
void paxos_range_digest(struct paxos *p, uint64_t first, uint64_t last,
			uint8_t out[MSG_DIGEST_SIZE]);
int paxos_nack(struct paxos *p, struct paxos_ready *r, const struct msg *m,
	       enum msg_nack_reason reason);
/* Steps down to follower of `leader` (MSG_NO_REPLICA: unknown); pending proposals become
 * UNKNOWN and queued ones NOT_LEADER. */
int paxos_step_down(struct paxos *p, struct paxos_ready *r, uint16_t leader);

/* ---- paxos_elect.c ---- */
int paxos_elect_tick(struct paxos *p, struct paxos_ready *r);
int paxos_elect_abandon(struct paxos *p);
int paxos_on_prepare(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_on_promise(struct paxos *p, struct paxos_ready *r, const struct msg *m);
int paxos_release_prepare(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h);
int paxos_release_promise(struct paxos *p, struct paxos_ready *r, const struct paxos_held *h);
void paxos_cand_clear(struct paxos *p);

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

#endif
