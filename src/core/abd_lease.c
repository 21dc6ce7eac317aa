/* The configuration lease of RR-ABD coordinators (abd_lease.h; DESIGN.md section 8; S15). The
 * glue between lease.h's use 2 and the wire, shared by the simulator (tests/sim/sim_abd.c) and
 * the daemon (src/server/replica_abd.c). */
#include "core/abd_lease.h"

#include <string.h>

#include "teems/err.h"

#define SLOT_BITS 40
#define SLOT_MAX ((1ull << SLOT_BITS) - 1)

uint64_t abd_lease_index(struct msg_regidx idx)
{
	uint64_t slot = idx.slot > SLOT_MAX ? SLOT_MAX : idx.slot;
	uint64_t epoch =
		idx.epoch > (UINT64_MAX >> SLOT_BITS) ? (UINT64_MAX >> SLOT_BITS) : idx.epoch;

	return epoch << SLOT_BITS | slot;
}

int abd_lease_init(struct abd_lease *l, const struct abd_lease_config *cfg, char *errbuf)
{
	int rc;

	if (cfg->n == 0 || cfg->n > QUORUM_MAX_REPLICAS || cfg->n > LEASE_MAX_REPLICAS)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd_lease: n %u out of range", cfg->n);
	if (cfg->self >= cfg->n)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd_lease: self %u not below n %u",
				  cfg->self, cfg->n);
	if (cfg->w_q == 0 || cfg->w_q > cfg->n)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd_lease: w_q %u out of range", cfg->w_q);
	if (cfg->t_cfg_ns == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "abd_lease: t_cfg is 0");
	memset(l, 0, sizeof(*l));
	l->cfg = *cfg;
	if (l->cfg.renew_ns == 0)
		l->cfg.renew_ns = cfg->t_cfg_ns / 3 ? cfg->t_cfg_ns / 3 : 1;
	/* The top bit keeps every nonce non-zero (0 means "no collection" in a frame). */
	l->cfg.nonce_key |= 1ull << 63;
	/* The holder counts itself by hand, only when its own grantor grants (LEASE_NO_SELF). */
	rc = lease_cfg_holder_init(&l->h, cfg->w_q, LEASE_NO_SELF, cfg->t_cfg_ns, cfg->rho_ppm);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "abd_lease: rho %u ppm too large", cfg->rho_ppm);
	l->g.fenced = true; /* nothing is granted before the first abd_lease_configure */
	l->from.replica = cfg->self;
	return TEEMS_OK;
}

void abd_lease_configure(struct abd_lease *l, uint64_t applied, uint64_t accepted,
			 struct msg_incarnation self, const struct msg_incarnation *regs, size_t n,
			 bool fenced)
{
	if (!l->configured || applied != l->applied) {
		/* Bound to the old index: not valid for the new one (lease_cfg_valid); forget it
		 * now, and ask for the new one at once. */
		lease_quorum_drop(&l->h.q);
		l->renew_now = true;
	}
	l->configured = true;
	l->applied = applied;
	/* Monotonic but for a replaced uncommitted entry (paxos_config_accepted_index): the
	 * grantor field is set, not raised, so that such an entry stops blocking renewals. */
	l->g.accepted_cfg_index = accepted > applied ? accepted : applied;
	l->g.fenced = fenced;
	l->from = self;
	for (size_t i = 0; i < n; i++)
		if (regs[i].replica < QUORUM_MAX_REPLICAS)
			l->regs[regs[i].replica] = regs[i].reg;
}

bool abd_lease_renew_due(const struct abd_lease *l, struct lease_time now)
{
	if (!l->configured)
		return false;
	return l->renew_now || !l->sent_any || now.hi_ns - l->last_sent_hi >= l->cfg.renew_ns;
}

static void header(const struct abd_lease *l, struct msg *m, enum msg_type type, uint64_t nonce)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = l->from;
	m->suspicious = l->g.fenced;
	m->nonce = nonce;
}

void abd_lease_renew(struct abd_lease *l, struct lease_time now, struct msg *out)
{
	uint64_t round = lease_cfg_request(&l->h, l->applied, now);

	l->renew_now = false;
	l->sent_any = true;
	l->last_sent_hi = now.hi_ns;
	l->last_round = round;
	l->stats.renewals++;
	if (lease_cfg_grant(&l->g, l->applied) == LEASE_GRANTED) {
		(void)lease_cfg_granted(&l->h, l->cfg.self, round, l->applied, now);
		l->stats.grants_counted++;
	}
	header(l, out, MSG_LEASE_RENEW, round ^ l->cfg.nonce_key);
	out->lease_renew.config_index = l->applied;
	out->lease_renew.duration_ns = l->cfg.t_cfg_ns;
}

bool abd_lease_on_renew(struct abd_lease *l, const struct msg *m, struct msg *reply)
{
	enum lease_verdict v;
	uint64_t holder_index;

	if (m->type != MSG_LEASE_RENEW || m->from.replica >= l->cfg.n ||
	    m->from.replica == l->cfg.self || m->nonce == 0)
		return false;
	holder_index = m->lease_renew.config_index;
	if (l->cfg.unsafe & ABD_LEASE_UNSAFE_NO_INDEX)
		holder_index = UINT64_MAX; /* the negative control: the index is not looked at */
	v = lease_cfg_grant(&l->g, holder_index);
	header(l, reply, MSG_LEASE_REPLY, m->nonce);
	reply->lease_reply.duration_ns = l->cfg.t_cfg_ns;
	if (v == LEASE_GRANTED) {
		reply->lease_reply.granted = true;
		reply->lease_reply.config_index = m->lease_renew.config_index;
		l->stats.grants_given++;
	} else {
		reply->lease_reply.granted = false;
		reply->lease_reply.config_index = l->g.accepted_cfg_index;
		if (v == LEASE_REFUSED_FENCED)
			l->stats.refused_fenced++;
		else
			l->stats.refused_stale++;
	}
	/* No registration vector: a grantor grants only when it has accepted no configuration
	 * entry above the holder's index, so its vector could show nothing the holder's applied
	 * configuration does not (an accepted REGISTER at or below that index whose slot the
	 * holder applied as another value is dropped from vectors, section 4). */
	return true;
}

bool abd_lease_on_reply(struct abd_lease *l, const struct msg *m, struct lease_time now)
{
	uint16_t from = m->from.replica;

	if (m->type != MSG_LEASE_REPLY || from >= l->cfg.n || from == l->cfg.self)
		return false;
	if (!m->lease_reply.granted) {
		l->stats.refusals_seen++;
		return false;
	}
	/* The discard rule (section 4): a grant from an incarnation the configuration shows
	 * superseded is not counted; nor one from a replica that calls itself suspicious (a
	 * fenced grantor never grants). */
	if (m->suspicious || msg_regidx_cmp(&l->regs[from], &m->from.reg) > 0 ||
	    !lease_cfg_granted(&l->h, from, m->nonce ^ l->cfg.nonce_key,
			       m->lease_reply.config_index, now)) {
		l->stats.grants_ignored++;
		return false;
	}
	l->stats.grants_counted++;
	return true;
}

uint64_t abd_lease_valid_until(const struct abd_lease *l, struct lease_time now)
{
	uint64_t left;

	if (!l->configured || !lease_cfg_valid(&l->h, l->applied, now))
		return 0;
	left = lease_quorum_remaining_ns(&l->h.q, now);
	if (left == 0 || now.hi_ns > UINT64_MAX - left)
		return 0;
	return now.hi_ns + left;
}
