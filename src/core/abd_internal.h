/* RR-ABD internals shared by abd_core.c, abd_coord.c, abd_recover.c and abd_persist.c. Not an
 * interface: nothing outside src/core/abd_*.c includes this. */
#ifndef TEEMS_CORE_ABD_INTERNAL_H
#define TEEMS_CORE_ABD_INTERNAL_H

#include <openssl/evp.h>

#include "core/abd.h"

/* One register. Absent keys have the zero timestamp and no entry. */
struct abd_reg {
	struct abd_reg *next; /* hash chain */
	uint64_t hash;
	uint8_t *key; /* owned */
	uint32_t key_len;
	struct msg_timestamp ts;
	bool stable;
	bool tombstone;
	uint8_t *value; /* owned, NULL when len is 0 */
	uint32_t len;
	uint64_t seq; /* the persist record holding it */
};

/* The replies counted in one round (section 4): the incarnation each counted replica replied
 * as, the highest registration of each replica any reply showed, who was flagged suspicious. */
struct abd_col {
	uint64_t members;
	uint64_t suspicious;
	struct msg_regidx member[QUORUM_MAX_REPLICAS];
	struct msg_regidx seen[QUORUM_MAX_REPLICAS];
	uint64_t seen_mask;
};

enum abd_phase {
	ABD_PH_FREE = 0,
	ABD_PH_QUERY = 1, /* read: values; write: timestamps */
	ABD_PH_WRITE = 2, /* write, or a read's write-back */
};

/* One coordinated client operation. */
struct abd_opst {
	enum abd_phase phase;
	enum abd_op op;
	uint64_t client_id, request_id;
	uint8_t *key; /* owned */
	uint32_t key_len;
	uint64_t hash;
	uint8_t *value; /* owned: SET's value, or the value written back */
	uint32_t len;
	bool tombstone;
	uint64_t nonce;
	uint64_t sent_hi;   /* first send of the current round (T_op) */
	uint64_t resend_hi; /* last (re)send */
	unsigned rounds;
	struct abd_col col;
	/* query replies, per replica */
	struct msg_timestamp rts[QUORUM_MAX_REPLICAS];
	bool rstable[QUORUM_MAX_REPLICAS];
	bool rtomb[QUORUM_MAX_REPLICAS];
	uint8_t *rval[QUORUM_MAX_REPLICAS]; /* owned */
	uint32_t rlen[QUORUM_MAX_REPLICAS];
	bool self_query_wait; /* own value-mode reply waits for own sync */
	/* write phase */
	struct msg_timestamp ts;
	uint64_t acked, synced;
	bool self_ack_wait; /* own ack waits for own record (seq) to be durable */
	uint64_t self_seq;
};

enum abd_held_kind {
	ABD_HELD_ACK = 0,    /* synced WRITE_ACK */
	ABD_HELD_QREPLY = 1, /* value-mode QUERY_REPLY */
};

struct abd_held {
	enum abd_held_kind kind;
	uint16_t to;
	uint64_t nonce;
	uint8_t *key; /* owned */
	uint32_t key_len;
	struct msg_timestamp ts; /* ACK */
	uint64_t seq;		 /* released once synced_seq >= seq */
};

/* One range to transfer during recovery, from one peer. */
struct abd_fetch {
	uint16_t peer;
	uint32_t range;
	bool done;
	uint64_t nonce; /* of the current page request */
	uint8_t *after; /* owned: last key received (NULL before the first page) */
	uint32_t after_len;
	bool has_after;
};

struct abd {
	struct abd_config cfg;
	unsigned n;
	EVP_MD_CTX *md;
	bool suspicious;
	bool halted;
	bool halt_reported;
	bool restarted;
	bool restored;
	bool abandon_pending; /* abd_set_registration: abandon every op with the next step */
	bool stepped;
	struct msg_regidx reg; /* own registration */

	/* configuration (registration vector) */
	struct msg_regidx cfg_reg[QUORUM_MAX_REPLICAS];
	uint64_t cfg_mask;
	uint64_t lease_until; /* hi */

	/* registers */
	struct abd_reg **buckets;
	size_t n_buckets, n_regs;

	/* coordinator */
	struct abd_opst *ops;
	uint64_t op_ctr; /* timestamp op counter of this incarnation */

	/* persistence */
	uint64_t next_seq;
	uint64_t synced_seq;
	struct abd_held *held;
	size_t n_held, cap_held;

	/* time, nonces */
	struct abd_time now;
	bool have_time;
	uint64_t nonce_key, nonce_ctr;

	/* recovery (section 4, step 5) */
	bool rec_pending; /* abd_begin_recovery called; starts with the next step */
	bool rec_active;
	bool rec_frozen; /* the digest quorum is complete */
	bool rec_finishing;
	bool rec_redo; /* a frozen quorum lost a member to the discard rule: new collection */
	uint64_t rec_marker_seq;
	uint64_t rec_nonce, rec_sent_hi, rec_resend_hi;
	struct abd_col rec_col;
	uint8_t *rec_digests; /* [replica][range][MSG_DIGEST_SIZE] */
	struct abd_fetch *fetches;
	size_t n_fetches, cap_fetches;

	/* per step */
	struct msg_incarnation_list step_regvec;
	bool step_regvec_built;

	struct abd_stats stats;
};

/* ---- abd_core.c ---- */
uint64_t abd_hash(const uint8_t *key, uint32_t len);
struct abd_reg *abd_reg_find(const struct abd *a, const uint8_t *key, uint32_t len, uint64_t h);
/* Stores (ts, value) under key when ts is higher than what is there; appends its record.
 * *stored says whether it did. Errors: TEEMS_ENOMEM. */
int abd_store(struct abd *a, struct abd_ready *r, const uint8_t *key, uint32_t key_len, uint64_t h,
	      const struct msg_timestamp *ts, bool tombstone, const uint8_t *value, uint32_t len,
	      bool sync, bool *stored);
void *abd_scratch(struct abd_ready *r, size_t size);
void *abd_scratch_dup(struct abd_ready *r, const void *p, size_t len);
struct abd_send *abd_send_new(struct abd *a, struct abd_ready *r, uint16_t to, enum msg_type type,
			      uint64_t nonce);
int abd_regvec(struct abd *a, struct abd_ready *r, struct msg_incarnation_list *out);
uint64_t abd_new_nonce(struct abd *a);
int abd_persist_append(struct abd *a, struct abd_ready *r, struct abd_persist **out);
/* Discard and halt rules: adds the reply's sender to col. Returns true if it is counted. */
bool abd_col_add(struct abd *a, struct abd_ready *r, struct abd_col *col, const struct msg *m,
		 const struct msg_incarnation_list *regvec);
void abd_col_self(struct abd *a, struct abd_col *col);
/* Discard rule over the members already in col (configuration and col's own vectors; self is
 * never dropped). Returns the replicas dropped. */
uint64_t abd_col_refilter(struct abd *a, struct abd_col *col);
/* false under ABD_UNSAFE_NO_INCARNATION_CHECK */
bool abd_incarnation_checks(const struct abd *a);
int abd_counted(struct abd *a, struct abd_ready *r, enum abd_counted_kind kind, uint64_t id,
		const struct abd_col *col);
unsigned abd_wq(const struct abd *a);
unsigned abd_rq(const struct abd *a, unsigned s);
unsigned abd_col_s(const struct abd *a, const struct abd_col *col);
bool abd_ignore_suspicion(const struct abd *a);
void abd_halt(struct abd *a, struct abd_ready *r);
int abd_value_digest(struct abd *a, const uint8_t *v, uint32_t len, uint8_t out[MSG_DIGEST_SIZE]);

/* ---- abd_coord.c: the coordinator ---- */
int abd_coord_request(struct abd *a, const struct abd_input *in, struct abd_ready *r);
int abd_coord_reply(struct abd *a, const struct msg *m, struct abd_ready *r);
int abd_coord_timers(struct abd *a, struct abd_ready *r, bool taint);
int abd_coord_synced(struct abd *a, struct abd_ready *r);
int abd_coord_abandon_all(struct abd *a, struct abd_ready *r);
void abd_op_clear(struct abd_opst *op);
/* Re-applies the discard rule to every open op's collection (after a configuration change). */
void abd_coord_refilter_all(struct abd *a);

/* ---- abd_recover.c ---- */
int abd_range_digests(struct abd *a, uint32_t ranges, uint8_t *digests, uint64_t *keys);
int abd_handle_digest_request(struct abd *a, const struct msg *m, struct abd_ready *r);
int abd_handle_range_request(struct abd *a, const struct msg *m, struct abd_ready *r);
int abd_recover_reply(struct abd *a, const struct msg *m, struct abd_ready *r);
int abd_recover_timers(struct abd *a, struct abd_ready *r, bool taint);
int abd_recover_start(struct abd *a, struct abd_ready *r);
int abd_recover_synced(struct abd *a, struct abd_ready *r);
void abd_recover_clear(struct abd *a);
/* Re-applies the discard rule to the recovery collection (after a configuration change); a
 * frozen quorum that loses a member is redone with a new collection by the next step. */
void abd_recover_refilter(struct abd *a);

#endif
