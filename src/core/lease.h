/* Leases from a trusted clock (DESIGN.md section 8, T-Lease; docs/LEASES.md).
 *
 * One grantor/holder module, pure like every core: no I/O, no clock reads, no globals. Clock
 * readings (struct lease_time = struct tee_clock_reading) are inputs. It is used three ways,
 * each a thin layer below: the leader lease (Paxos heartbeats), the configuration lease (ABD
 * coordinators) and client leases (named leases with fencing tokens, through the log).
 *
 * Clock contract (src/tee/tee.h): for two readings a then b of ONE clock, in one taint epoch,
 *	b.lo_ns - a.lo_ns <= real time between them <= b.hi_ns - a.hi_ns.
 * Readings of different replicas are unrelated (each clock starts at its own platform start),
 * so only differences of one replica's readings are ever compared, and no time ever enters
 * replicated state (durations only). A taint increments epoch; nothing is counted across it.
 *
 * Grantor rule (uses lo: it must never overestimate elapsed time). A grantor that grants at
 * reading g promises, until  now.lo - g.lo >= D * (1 + rho)  (lease_grantor_wait_ns), neither
 * to grant a conflicting lease nor to support another holder. It refuses while a promise to
 * another holder is live and grants nothing while fenced. A taint (epoch change) restarts every
 * grantor-side wait in progress, in full, from the first reading of the new epoch it is shown.
 *
 * Holder rule (uses hi: it must never underestimate elapsed time). The holder counts from the
 * reading s taken when its request was sent, BEFORE it left, and the lease is valid while
 *	now.hi - s.hi < D * (1 - rho)	(lease_holder_span_ns)
 * and now.epoch == s.epoch. With several grantors the lease needs W_Q distinct counted grants
 * (the holder itself among them when it is a grantor too) and starts at the earliest send time
 * among the grants counted; a taint drops it at once; lease_quorum_drop is the explicit "drop
 * the moment it promises a higher ballot".
 *
 * INVARIANT (the T-Lease property: grantor interval contains holder interval). Let s be the real
 * time the holder sent the request, g >= s the real time a grantor granted it (the request had to
 * arrive), and c >= g the real time the holder counted the last grant it needed. Then
 *   - the holder is valid at real t only if  t - s <= hi(t) - s.hi < D(1 - rho),  and only from
 *     c on: its interval is within  [c, s + D(1 - rho))  subset of  [g, g + D(1 - rho));
 *   - the grantor's promise is live at every real t with  lo(t) - g.lo <= t - g < D(1 + rho),
 *     that is on all of  [g, g + D(1 + rho)) , and a taint only extends it;
 * so every holder interval lies in the promise interval of every grant it counted, with a
 * margin of 2 rho D. The padding keeps the containment even if the clocks only guarantee a
 * rate within rho (lo = hi = a raw clock with rate in [1 - rho, 1 + rho]):
 *     hi(t) - s.hi >= (1 - rho)(t - s)  gives  t < s + D,  and
 *     lo(t) - g.lo <= (1 + rho)(t - g)  keeps the promise live on  [g, g + D).
 * Exclusivity follows: grants of one grantor never overlap; two holders each need W_Q grants;
 * two W_Q sets share a grantor, whose two promises are disjoint in real time and contain the two
 * holder intervals. tests/unit/test_lease.c checks this over random adversarial clocks and
 * checks that it fails when the clock leaves its bounds (trust_host_clock, S12, S13).
 *
 * Arithmetic: durations in ns; rho in parts per million (at most LEASE_RHO_MAX_PPM).
 * D(1 + rho) rounds up and saturates at UINT64_MAX (a promise that never ends); D(1 - rho)
 * rounds down. Expiry instants are exclusive: at exactly lo - g.lo == D(1 + rho) the grantor is
 * free, at exactly hi - s.hi == D(1 - rho) the holder is not valid.
 *
 * Negative control (tests only): trust_host_clock. The shell then feeds host readings
 * (lease_time_from_host: lo = hi = host time, epoch never changes, so jumps are not detected)
 * and client-lease timers use absolute host deadlines carried in the log ("times in replicated
 * state", which DESIGN.md forbids). S12 and S13 must fail in that mode.
 *
 * Memory: only the client-lease table and the leader's timers allocate (teems_malloc); every
 * other struct is plain data owned by the caller. Not thread-safe. */
#ifndef TEEMS_CORE_LEASE_H
#define TEEMS_CORE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "teems/lease.h"

#define LEASE_PPM TEEMS_LEASE_PPM
#define LEASE_RHO_MAX_PPM TEEMS_LEASE_RHO_MAX_PPM
#define LEASE_MAX_REPLICAS 64 /* replica ids 0..63 */
#define LEASE_ROUNDS 8	      /* outstanding request rounds a holder remembers */
#define LEASE_NAME_MAX 255    /* client lease names, bytes */

/* A trusted clock reading (struct tee_clock_reading): holders use hi, grantors lo. */
struct lease_time {
	uint64_t lo_ns;
	uint64_t hi_ns;
	uint64_t epoch;
};

/* trust_host_clock (tests only): a raw host reading as a "trusted" one. */
struct lease_time lease_time_from_host(uint64_t host_ns);

/* D * (1 + rho), rounded up, saturating: how long a grantor keeps a promise (on lo). */
uint64_t lease_grantor_wait_ns(uint64_t duration_ns, uint32_t rho_ppm);
/* D * (1 - rho), rounded down: how long a holder counts a lease (on hi). */
uint64_t lease_holder_span_ns(uint64_t duration_ns, uint32_t rho_ppm);

/* ---------------------------------------------------------------------------------------------
 * Restartable waits on lo: grantor promises, fences (section 4), restart waits (section 6),
 * revocation waits. Done once `wait_ns` has passed on lo within one epoch; a reading of another
 * epoch restarts the wait in full from that reading (a tainted interval is never counted).
 * ------------------------------------------------------------------------------------------- */
struct lease_wait {
	uint64_t start_lo_ns;
	uint64_t wait_ns;
	uint64_t epoch;
	bool armed;
	bool done; /* completed: a later taint does not reopen it */
};

void lease_wait_start(struct lease_wait *w, uint64_t wait_ns, struct lease_time now);
/* True once the wait is over, and from then on until lease_wait_start (a taint after completion
 * does not reopen it); false if never started. */
bool lease_wait_done(struct lease_wait *w, struct lease_time now);
/* ns of lo still to wait at `now` (0 when done or never started). */
uint64_t lease_wait_remaining_ns(struct lease_wait *w, struct lease_time now);

/* ---------------------------------------------------------------------------------------------
 * Grantor: one exclusive promise at a time.
 * ------------------------------------------------------------------------------------------- */
enum lease_verdict {
	LEASE_GRANTED = 0,
	LEASE_REFUSED_LIVE = 1,	  /* a promise to another holder is live */
	LEASE_REFUSED_FENCED = 2, /* fenced, suspicious or restarting: grants nothing */
	LEASE_REFUSED_STALE = 3,  /* configuration lease: a newer configuration was accepted */
};

struct lease_grantor {
	uint32_t rho_ppm;
	bool fenced;
	bool live; /* a promise may be in force (see lease_grantor_bound) */
	uint64_t holder;
	uint64_t generation; /* +1 per new (non-renewal) grant; names it for release */
	struct lease_wait promise;
};

void lease_grantor_init(struct lease_grantor *g, uint32_t rho_ppm);
/* Fence on/off (section 4: a restarted or forked grantor grants nothing during its fence). */
void lease_grantor_fence(struct lease_grantor *g, bool fenced);
/* Grant (or renew, for the holder already bound) a lease of duration_ns to `holder` (an opaque
 * identity: a ballot key, an incarnation) at reading `now`. A renewal keeps the later of the two
 * promise ends. *generation_out (may be NULL) names the promise for lease_grantor_release. */
enum lease_verdict lease_grant(struct lease_grantor *g, uint64_t holder, uint64_t duration_ns,
			       struct lease_time now, uint64_t *generation_out);
/* Whether a promise is live at `now`; if so and holder_out is not NULL, to whom. */
bool lease_grantor_bound(struct lease_grantor *g, struct lease_time now, uint64_t *holder_out);
/* The holder gave the lease back (it dropped it first): frees the promise if `generation` still
 * names it; a stale release is ignored. */
void lease_grantor_release(struct lease_grantor *g, uint64_t generation);

/* ---------------------------------------------------------------------------------------------
 * Holder with a quorum of grantors. Rounds: lease_quorum_send records the reading of a request
 * about to be sent and returns its round id (carry it as, or with, the request's nonce); grants
 * name the round. Only the last LEASE_ROUNDS rounds are remembered; grants for older ones, for
 * rounds before a drop or a taint, or from replica ids >= LEASE_MAX_REPLICAS are not counted.
 * ------------------------------------------------------------------------------------------- */
#define LEASE_NO_SELF UINT32_MAX

struct lease_round {
	uint64_t id; /* 0: empty */
	struct lease_time sent;
};

struct lease_quorum {
	uint32_t w_q;
	uint32_t self; /* counted at every send (it grants to itself), or LEASE_NO_SELF */
	uint64_t span_ns;
	uint64_t epoch;
	uint64_t next_round;
	struct lease_round rounds[LEASE_ROUNDS];
	uint64_t counted;		      /* bit per replica */
	uint64_t sent_hi[LEASE_MAX_REPLICAS]; /* latest counted send time, per replica */
};

/* Errors: TEEMS_EINVAL (w_q 0 or > LEASE_MAX_REPLICAS, self out of range, rho too large). */
int lease_quorum_init(struct lease_quorum *q, uint32_t w_q, uint32_t self, uint64_t duration_ns,
		      uint32_t rho_ppm);
/* `now` is the reading taken before the request leaves. Returns the round id (never 0). */
uint64_t lease_quorum_send(struct lease_quorum *q, struct lease_time now);
/* A grant from `replica` echoing `round`, received at `now`. Returns whether it was counted. */
bool lease_quorum_grant(struct lease_quorum *q, uint32_t replica, uint64_t round,
			struct lease_time now);
bool lease_quorum_valid(const struct lease_quorum *q, struct lease_time now);
uint64_t lease_quorum_remaining_ns(const struct lease_quorum *q, struct lease_time now);
/* Drop the lease and forget every round (higher ballot promised, step-down, any doubt). */
void lease_quorum_drop(struct lease_quorum *q);

/* ---------------------------------------------------------------------------------------------
 * Use 1: leader lease (section 8). Heartbeat acks carry the follower's promise.
 * ------------------------------------------------------------------------------------------- */
struct lease_leader {
	struct lease_quorum q;
};

/* Errors: as lease_quorum_init (self is required). */
int lease_leader_init(struct lease_leader *l, uint32_t w_q, uint32_t self, uint64_t t_lease_ns,
		      uint32_t rho_ppm);
/* The reading taken before a heartbeat is sent; returns the round to put in it. The leader
 * counts itself at every heartbeat: the shell must make that true by binding the leader's own
 * follower-side grantor to its ballot at the same reading (lease_follower_ack(own, ballot, now)),
 * so that it will not support another ballot either. */
uint64_t lease_leader_heartbeat(struct lease_leader *l, struct lease_time now);
/* A follower acknowledged heartbeat `round` (the ack carries its promise). */
void lease_leader_ack(struct lease_leader *l, uint32_t replica, uint64_t round,
		      struct lease_time now);
/* Lease read: read the state FIRST, then take `after_read`, then ask. Serve the read only if
 * true. */
bool lease_leader_read_ok(const struct lease_leader *l, struct lease_time after_read);
/* The leader promised a higher ballot (or steps down): the lease is gone at once. */
void lease_leader_promised_higher(struct lease_leader *l);

/* Follower side: the promise it sends with a heartbeat ack. `ballot` is an opaque key of the
 * leader's ballot. */
struct lease_follower {
	struct lease_grantor g;
	uint64_t t_lease_ns;
};

void lease_follower_init(struct lease_follower *f, uint64_t t_lease_ns, uint32_t rho_ppm);
/* Before acking a heartbeat of `ballot`: true if the ack may carry the promise (grants it). */
bool lease_follower_ack(struct lease_follower *f, uint64_t ballot, struct lease_time now);
/* Before promising or voting for another ballot: false while bound to a different one. */
bool lease_follower_may_support(struct lease_follower *f, uint64_t ballot, struct lease_time now);

/* ---------------------------------------------------------------------------------------------
 * Use 2: configuration lease (T_cfg; section 8, S15). Requested by the holder (an ABD
 * coordinator), bound to the configuration index it applied, counted from the request's send
 * time, granted by W_Q replicas that echo the nonce (the round) and the index.
 * ------------------------------------------------------------------------------------------- */
struct lease_cfg_holder {
	struct lease_quorum q;
	uint64_t cfg_index;
};

int lease_cfg_holder_init(struct lease_cfg_holder *h, uint32_t w_q, uint32_t self,
			  uint64_t t_cfg_ns, uint32_t rho_ppm);
/* A renewal request for cfg_index (the holder's applied configuration), sent at `now`; returns
 * the nonce to send. A new index drops what was counted for the old one. With `self` set the
 * holder counts itself: call this only if its own lease_cfg_grant(own, cfg_index) grants. */
uint64_t lease_cfg_request(struct lease_cfg_holder *h, uint64_t cfg_index, struct lease_time now);
/* A grant echoing `nonce` and `cfg_index` from `replica`. Returns whether it was counted. */
bool lease_cfg_granted(struct lease_cfg_holder *h, uint32_t replica, uint64_t nonce,
		       uint64_t cfg_index, struct lease_time now);
/* Check on every counted reply: valid for the configuration the holder has applied. */
bool lease_cfg_valid(const struct lease_cfg_holder *h, uint64_t applied_cfg_index,
		     struct lease_time now);

struct lease_cfg_grantor {
	uint64_t accepted_cfg_index; /* highest configuration entry index accepted */
	bool fenced;		     /* suspicious, fencing or restarting */
};

/* The grantor accepted a configuration entry at log index `index`. */
void lease_cfg_grantor_accepted(struct lease_cfg_grantor *g, uint64_t index);
/* Grant a renewal bound to holder_cfg_index? Refused once a configuration entry above it was
 * accepted (S15), and while fenced. */
enum lease_verdict lease_cfg_grant(const struct lease_cfg_grantor *g, uint64_t holder_cfg_index);
/* After a revocation commits, acknowledge it only once this has passed on lo (lease_wait). */
uint64_t lease_cfg_revoke_wait_ns(uint64_t t_cfg_ns, uint32_t rho_ppm);

/* ---------------------------------------------------------------------------------------------
 * Use 3: client leases, the replicated side. A deterministic state machine applied through the
 * log. Replicated state holds durations only (ttl_ms), tokens and generations.
 *   ACQUIRE name ttl_ms  -> token, ttl   (refused while held)
 *   RENEW   name token   -> token, ttl   (the current token only)
 *   RELEASE name token
 *   EXPIRE  name generation   (proposed by the leader only; no-op unless generation current)
 *   INFO    name           (read)
 * Tokens are monotonic per name (fencing tokens), never reused even after release. The
 * generation changes on every acquire, renew, release and expiry, so an expiry that raced a
 * renewal is a no-op: the renewal wins.
 * ------------------------------------------------------------------------------------------- */
enum lease_cmd_type {
	LEASE_CMD_ACQUIRE = 1,
	LEASE_CMD_RENEW = 2,
	LEASE_CMD_RELEASE = 3,
	LEASE_CMD_EXPIRE = 4,
};

struct lease_cmd {
	enum lease_cmd_type type;
	const char *name; /* borrowed for the call; 1..LEASE_NAME_MAX bytes */
	size_t name_len;
	uint64_t ttl_ms;     /* ACQUIRE */
	uint64_t token;	     /* RENEW, RELEASE */
	uint64_t generation; /* EXPIRE */
	/* trust_host_clock negative control ONLY: the proposer's host time, stored as an absolute
	 * deadline (the "times in the log" design DESIGN.md forbids). 0 otherwise. */
	uint64_t unsafe_host_ns;
};

enum lease_status {
	LEASE_OK = 0,
	LEASE_HELD = 1,	     /* ACQUIRE: someone holds it */
	LEASE_STALE = 2,     /* RENEW/RELEASE: wrong token or not held; EXPIRE: generation moved */
	LEASE_NOT_FOUND = 3, /* INFO: never acquired */
	LEASE_BAD_ARG = 4,   /* ttl 0, empty or long name, unknown type */
};

struct lease_result {
	enum lease_status status;
	bool held;
	uint64_t token; /* current (or last) token */
	uint64_t ttl_ms;
	uint64_t generation;
};

struct lease_table;

/* Errors: TEEMS_ENOMEM. *out belongs to the caller until lease_table_free. */
int lease_table_new(struct lease_table **out);
void lease_table_free(struct lease_table *t);
/* Applies one committed command; the outcome is in res->status. Deterministic: every replica
 * gets the same result. Errors: TEEMS_ENOMEM (table unchanged). */
int lease_table_apply(struct lease_table *t, const struct lease_cmd *cmd, struct lease_result *res);
/* INFO: LEASE_OK or LEASE_NOT_FOUND. */
void lease_table_info(const struct lease_table *t, const char *name, size_t name_len,
		      struct lease_result *res);

/* Snapshots: the table as bytes (every name ever acquired: held flag, last token, ttl_ms,
 * generation; the trust_host_clock deadline too), in a deterministic order (names sorted), so
 * that equal tables encode equal. Layout: u32 count, then per entry u16 name_len, name, u8
 * held, u64 token, u64 ttl_ms, u64 generation, u64 unsafe_deadline_ns; little-endian.
 * lease_table_encode with buf NULL (or cap too small) sets *len to the size needed and returns
 * TEEMS_EFULL. lease_table_decode replaces the table's contents (unchanged on error). Errors:
 * TEEMS_EFULL, TEEMS_ECORRUPT (malformed, duplicate or bad names), TEEMS_ENOMEM. */
int lease_table_encode(const struct lease_table *t, uint8_t *buf, size_t cap, size_t *len);
int lease_table_decode(struct lease_table *t, const uint8_t *buf, size_t len);
/* The number of names in the table (held or not). */
size_t lease_table_count(const struct lease_table *t);

/* Leader-side expiry timers (never replicated). Pure: readings in, "propose EXPIRE(name,
 * generation) now" out. Rule: a lease's expiry is proposed once TTL * (1 + rho) has passed on
 * the leader's lo since the later of the last ACQUIRE/RENEW it applied and the moment it took
 * office; a taint restarts every timer in full; a new leader (or a new epoch of the cluster)
 * restarts every timer (lease_timers_take_office). */
struct lease_timer;
struct lease_timers {
	struct lease_timer *v;
	size_t n, cap;
	uint32_t rho_ppm;
	bool trust_host_clock; /* negative control: absolute host deadlines from the log */
	bool in_office;
};

struct lease_expiry {
	const char *name; /* points into the timers, valid until the next call on them */
	size_t name_len;
	uint64_t generation;
};

void lease_timers_init(struct lease_timers *tm, uint32_t rho_ppm, bool trust_host_clock);
void lease_timers_free(struct lease_timers *tm);
/* Took office at `now`: one timer per held lease, each starting now. Errors: TEEMS_ENOMEM (the
 * timers are then empty and out of office: retry). */
int lease_timers_take_office(struct lease_timers *tm, const struct lease_table *t,
			     struct lease_time now);
/* Lost office: forget every timer. */
void lease_timers_step_down(struct lease_timers *tm);
/* After applying `cmd` with result `res` (as leader): arm, re-arm or disarm. No-op out of
 * office. Errors: TEEMS_ENOMEM. */
int lease_timers_applied(struct lease_timers *tm, const struct lease_cmd *cmd,
			 const struct lease_result *res, struct lease_time now);
/* Fills out[0..cap) with the expiries to propose now; each is returned once (until re-armed).
 * Returns how many. */
size_t lease_timers_due(struct lease_timers *tm, struct lease_time now, struct lease_expiry *out,
			size_t cap);
/* ns of lo before the leader would propose the expiry of `name` (for a refusal's "holder's
 * remaining time"); false when out of office or no timer runs for it. An upper bound on what
 * the holder itself may still count. */
bool lease_timers_remaining_ns(struct lease_timers *tm, const char *name, size_t name_len,
			       struct lease_time now, uint64_t *out);
/* Makes every expiry reported by lease_timers_due and not yet re-armed due again (its
 * proposal was lost: the leader proposes it again). */
void lease_timers_retry(struct lease_timers *tm);

#endif
