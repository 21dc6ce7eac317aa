/* The configuration lease of RR-ABD coordinators (DESIGN.md section 8, "configuration lease";
 * SCENARIOS.md S15; docs/LEASES.md "Configuration lease"; docs/ABD.md section 4).
 *
 * One struct abd_lease per replica incarnation holds both halves of lease.h's use 2:
 *   - the holder (lease_cfg_holder): this replica as an ABD coordinator. It asks for a renewal
 *     (MSG_LEASE_RENEW, to every peer) every renew_ns and at once when the configuration index
 *     it has applied changes. The request is bound to that index, carries a fresh nonce in the
 *     frame header, and is counted from the reading taken before it left (hi). It counts itself
 *     only when its own grantor grants. Grants (MSG_LEASE_REPLY with granted set) must echo the
 *     nonce and the index, and come from an incarnation that the holder's configuration does
 *     not show superseded (the discard rule of section 4 for configuration-lease grants). With
 *     W_Q distinct replicas counted, the lease is valid until the earliest counted send plus
 *     T_cfg (1 - rho) on hi (abd_lease_valid_until, which the shell hands to abd_set_lease).
 *   - the grantor (lease_cfg_grantor): answers a peer's renewal. It refuses when it has
 *     accepted a configuration entry above the holder's index (S15), and while fenced: the
 *     shell sets `fenced` whenever this incarnation is not fresh in both planes (Paxos
 *     lifecycle not FRESH, suspicious, restart promised, ABD suspicious, recovering or halted),
 *     so a restarted or forked grantor grants nothing during its fence and recovery. A refusal
 *     carries the grantor's accepted index.
 *
 * Configuration indexes: a configuration entry is what the ABD plane takes from the Paxos
 * control plane, a REGISTER entry or an epoch change (paxos_config_applied_index and
 * paxos_config_accepted_index, as (epoch, slot)). On the wire an index is the u64
 * abd_lease_index(): epoch in the top 24 bits, slot in the low 40 (a slot at or beyond 2^40
 * saturates; no log gets there). Lexicographic order on (epoch, slot) is numeric order on it.
 *
 * Why a grant needs no promise in time at the grantor (unlike the leader lease): this lease is
 * not exclusive. What it guarantees is that no coordinator still coordinates on a
 * configuration older than an entry j once T_cfg has passed (real time) since j was accepted
 * by W_Q replicas: every counted grant set meets j's accept quorum, and a member that
 * accepted j refuses from then on, so every grant the holder counted was given to a request
 * sent before that member accepted j, and the holder stops T_cfg (1 - rho) on its hi after
 * that send. A rolled-back member forgets j, but it is a new incarnation: fenced until it has
 * registered, waited T_fence and recovered, and recovery reads j back (R_Q(s) meets j's accept
 * quorum in a replica that was not rolled back). docs/LEASES.md has the full argument.
 *
 * Pure: no I/O, no clock reads, no allocation; readings and messages are inputs, messages to
 * send are outputs the shell sends (encode with msg_encode). Not thread-safe. */
#ifndef TEEMS_CORE_ABD_LEASE_H
#define TEEMS_CORE_ABD_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/lease.h"
#include "core/msg.h"
#include "core/quorum.h"

/* Negative control (tests only): grantors ignore the holder's index (grant whenever not
 * fenced), so a coordinator that has not applied a newer configuration keeps its lease. The
 * value is outside the ABD_UNSAFE_* bits so that one unsafe word can carry both. */
#define ABD_LEASE_UNSAFE_NO_INDEX 0x1000u

struct abd_lease_config {
	uint16_t self;
	uint32_t n;	    /* replicas, ids 0 .. n - 1 (at most QUORUM_MAX_REPLICAS) */
	uint32_t w_q;	    /* grants needed, the holder's own included */
	uint64_t t_cfg_ns;  /* T_cfg: the lease's duration */
	uint32_t rho_ppm;   /* clock rate bound */
	uint64_t renew_ns;  /* period of renewals on hi; 0: T_cfg / 3 */
	uint64_t nonce_key; /* random, per incarnation: nonces of two incarnations differ */
	unsigned unsafe;    /* ABD_LEASE_UNSAFE_NO_INDEX, tests only */
};

struct abd_lease_stats {
	uint64_t renewals;	 /* requests sent */
	uint64_t grants_given;	 /* as grantor */
	uint64_t refused_stale;	 /* as grantor: a newer configuration entry was accepted */
	uint64_t refused_fenced; /* as grantor: not fresh */
	uint64_t grants_counted; /* as holder */
	uint64_t grants_ignored; /* as holder: stale nonce or index, superseded incarnation */
	uint64_t refusals_seen;	 /* as holder */
};

struct abd_lease {
	struct abd_lease_config cfg;
	struct lease_cfg_holder h;
	struct lease_cfg_grantor g;
	bool configured;			     /* abd_lease_configure called */
	uint64_t applied;			     /* the holder's applied configuration index */
	struct msg_incarnation from;		     /* this incarnation, for frame headers */
	struct msg_regidx regs[QUORUM_MAX_REPLICAS]; /* the applied registrations (discard) */
	bool renew_now;				     /* the applied index changed: renew at once */
	bool sent_any;
	uint64_t last_sent_hi;
	uint64_t last_round; /* the round of the last request */
	struct abd_lease_stats stats;
};

/* Errors: TEEMS_EINVAL (n or w_q out of range, self >= n, t_cfg 0, rho too large), with the
 * reason in errbuf (TEEMS_ERRBUF_LEN bytes, may be NULL). */
int abd_lease_init(struct abd_lease *l, const struct abd_lease_config *cfg, char *errbuf);

/* The wire form of a configuration index (epoch, slot). */
uint64_t abd_lease_index(struct msg_regidx idx);

/* After every change of the control plane (the shell calls it after each Paxos step, with the
 * configuration it has just fed to abd_set_config):
 *   applied  the index of the configuration the ABD core now uses (paxos_config_applied_index);
 *   accepted the highest configuration entry accepted here (paxos_config_accepted_index);
 *   self     this incarnation (replica, registration), named in the frames it sends;
 *   regs     the registrations of that configuration, n entries (the discard rule);
 *   fenced   whether this incarnation must grant nothing now (see above).
 * A new applied index drops the lease at once and makes a renewal due. */
void abd_lease_configure(struct abd_lease *l, uint64_t applied, uint64_t accepted,
			 struct msg_incarnation self, const struct msg_incarnation *regs, size_t n,
			 bool fenced);

/* Is a renewal due at `now` (the applied index changed, or renew_ns passed since the last)? */
bool abd_lease_renew_due(const struct abd_lease *l, struct lease_time now);
/* Builds the renewal to send to every peer (not to self) at `now`, the reading taken before it
 * leaves, and counts the holder's own grant if its grantor grants. *out points into nothing
 * (no lists). */
void abd_lease_renew(struct abd_lease *l, struct lease_time now, struct msg *out);
/* Grantor: a peer's MSG_LEASE_RENEW. Fills *reply (for m->from.replica) and returns true, or
 * returns false for a message to ignore (not a renewal, from itself, replica id out of
 * range). */
bool abd_lease_on_renew(struct abd_lease *l, const struct msg *m, struct msg *reply);
/* Holder: a peer's MSG_LEASE_REPLY received at `now`. Returns whether a grant was counted. */
bool abd_lease_on_reply(struct abd_lease *l, const struct msg *m, struct lease_time now);
/* The lease for abd_set_lease: valid while hi < the returned value; 0 when not valid at `now`
 * (fewer than W_Q grants for the applied index, expired, another taint epoch). */
uint64_t abd_lease_valid_until(const struct abd_lease *l, struct lease_time now);

#endif
