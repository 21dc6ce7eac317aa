/* RR-Paxos: the leader lease (DESIGN.md section 8; docs/LEASES.md "Leader lease";
 * docs/PROTOCOL.md "RR-Paxos: leader lease").
 *
 * The lease module (core/lease.h) does the arithmetic; this file binds it to the core:
 *   - grantor: a fresh replica that acknowledges a heartbeat (a COMMIT with a nonce) of ballot
 *     b grants b a T_lease promise (lease_follower_ack) and says so in HEARTBEAT_ACK.lease_ns.
 *     While that promise runs it neither promises another ballot (paxos_on_prepare) nor
 *     campaigns itself (start_candidacy): a later leader is elected only once W_Q replicas'
 *     promises to the earlier ballot are over, and so only after every lease of it expired.
 *     A replica that is not fresh (restarted, fencing, recovering, suspicious) grants nothing:
 *     its T_fence already covers whatever its predecessor granted (T_fence includes T_lease).
 *   - holder: the leader takes a reading before every heartbeat (lease_leader_heartbeat),
 *     binds its own grantor to its ballot at that reading (it counts itself), and counts every
 *     ack that carries a promise and echoes the nonce of one of its last LEASE_ROUNDS
 *     heartbeats. With W_Q counted (distinct replicas, itself included) it holds the lease
 *     from the earliest counted send, for T_lease (1 - rho) on hi, in one taint epoch.
 *   - a read (PAXOS_IN_READ) at a leader that can serve reads and holds the lease is answered
 *     at once (outcome READ at its commit index); otherwise it takes the read-index path.
 * The lease is bound to the ballot it was built for: a promise of any other ballot (a higher
 * PREPARE, a step-down) ends it at once, and a taint ends it (the module checks the epoch).
 *
 * Under PAXOS_UNSAFE_TRUST_HOST_CLOCK (a negative control) every lease reading is the host's
 * raw clock (paxos_input.host_ns) as if it were trusted: jumps and rate changes go undetected,
 * which the simulator must catch. */
#include <string.h>

#include "core/lease.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

/* An opaque holder identity for a ballot: every field of it, mixed (the grantor compares
 * identities for equality only). */
static uint64_t ballot_key(const struct msg_ballot *b)
{
	uint64_t x = b->round * 0x9e3779b97f4a7c15ull;

	x ^= ((uint64_t)b->replica << 48) ^ (b->reg.epoch * 0xbf58476d1ce4e5b9ull) ^
	     (b->reg.slot * 0x94d049bb133111ebull);
	x = (x ^ (x >> 31)) * 0xd6e8feb86659fd93ull;
	return x ^ (x >> 32);
}

struct lease_time paxos_lease_time(const struct paxos *p, const struct paxos_time *now,
				   uint64_t host_ns)
{
	struct lease_time t;

	if (p->cfg.unsafe & PAXOS_UNSAFE_TRUST_HOST_CLOCK)
		return lease_time_from_host(host_ns);
	t.lo_ns = now->lo_ns;
	t.hi_ns = now->hi_ns;
	t.epoch = now->epoch;
	return t;
}

static struct lease_time lease_now(const struct paxos *p)
{
	return paxos_lease_time(p, &p->now, p->ls.host_ns);
}

int paxos_lease_init(struct paxos *p)
{
	struct paxos_lease_state *ls = &p->ls;

	memset(ls, 0, sizeof(*ls));
	/* A clock whose rate is only known within 50% or worse cannot time a lease (the holder's
	 * span D (1 - rho) would vanish): no leases then, reads take the read index. */
	ls->on = p->cfg.t_lease_ns > 0 && p->n <= LEASE_MAX_REPLICAS &&
		 p->cfg.rho_ppm <= LEASE_RHO_MAX_PPM;
	if (!ls->on)
		return TEEMS_OK;
	lease_follower_init(&ls->f, p->cfg.t_lease_ns, p->cfg.rho_ppm);
	return lease_leader_init(&ls->l, paxos_vote_quorum(p), p->cfg.self, p->cfg.t_lease_ns,
				 p->cfg.rho_ppm);
}

/* Our grantor grants nothing unless this incarnation is fresh (section 4's fence). */
static void grantor_fence(struct paxos *p)
{
	lease_grantor_fence(&p->ls.f.g, p->lc != PAXOS_LC_FRESH ||
						(p->suspicious && !paxos_suspicion_ignored(p)));
}

bool paxos_lease_may_support(struct paxos *p, const struct msg_ballot *b)
{
	if (!p->ls.on || (p->cfg.unsafe & PAXOS_UNSAFE_NO_LEASE_WAIT))
		return true;
	return lease_follower_may_support(&p->ls.f, ballot_key(b), lease_now(p));
}

uint64_t paxos_lease_grant(struct paxos *p, const struct msg_ballot *b)
{
	if (!p->ls.on)
		return 0;
	grantor_fence(p);
	if (!lease_follower_ack(&p->ls.f, ballot_key(b), lease_now(p)))
		return 0;
	return p->cfg.t_lease_ns;
}

/* The lease we hold is for p->ls.ballot; anything else (a new ballot of ours, a promise of
 * another) starts from nothing. */
static void bind_ballot(struct paxos *p)
{
	struct paxos_lease_state *ls = &p->ls;

	if (ls->bound && msg_ballot_cmp(&ls->ballot, &p->promised) == 0)
		return;
	lease_leader_promised_higher(&ls->l);
	memset(ls->hb_nonce, 0, sizeof(ls->hb_nonce));
	ls->ballot = p->promised;
	ls->bound = true;
}

void paxos_lease_heartbeat(struct paxos *p, uint64_t nonce)
{
	struct paxos_lease_state *ls = &p->ls;
	struct lease_time now;
	unsigned k;

	if (!ls->on || p->role != PAXOS_LEADER)
		return;
	bind_ballot(p);
	now = lease_now(p);
	/* We count ourselves at this reading: bind our own grantor to our ballot at the same
	 * reading, or do not start a round at all. */
	grantor_fence(p);
	if (!lease_follower_ack(&ls->f, ballot_key(&p->promised), now))
		return;
	k = ls->hb_next++ % LEASE_ROUNDS;
	ls->hb_nonce[k] = nonce;
	ls->hb_round[k] = lease_leader_heartbeat(&ls->l, now);
}

void paxos_lease_on_ack(struct paxos *p, const struct msg *m)
{
	struct paxos_lease_state *ls = &p->ls;
	const struct msg_heartbeat_ack *a = &m->heartbeat_ack;

	if (!ls->on || p->role != PAXOS_LEADER || !a->lease_ns || !m->nonce ||
	    a->lease_ns < p->cfg.t_lease_ns || !ls->bound ||
	    msg_ballot_cmp(&a->ballot, &ls->ballot) != 0 ||
	    msg_ballot_cmp(&a->ballot, &p->promised) != 0 ||
	    (m->suspicious && !paxos_suspicion_ignored(p)))
		return;
	for (unsigned k = 0; k < LEASE_ROUNDS; k++) {
		if (ls->hb_nonce[k] == m->nonce) {
			lease_leader_ack(&ls->l, m->from.replica, ls->hb_round[k], lease_now(p));
			return;
		}
	}
}

bool paxos_lease_read_ok(const struct paxos *p, const struct paxos_time *now, uint64_t host_ns)
{
	const struct paxos_lease_state *ls = &p->ls;

	if (!ls->on || p->halted || !paxos_can_serve_reads(p) || !ls->bound ||
	    msg_ballot_cmp(&ls->ballot, &p->promised) != 0)
		return false;
	return lease_leader_read_ok(&ls->l, paxos_lease_time(p, now, host_ns));
}

bool paxos_lease_held(const struct paxos *p)
{
	return paxos_lease_read_ok(p, &p->now, p->ls.host_ns);
}

uint64_t paxos_lease_reads(const struct paxos *p)
{
	return p->ls.served;
}
