#include "quorum.h"
#include "teems/err.h"

_Static_assert(QUORUM_MAX_MR + QUORUM_MAX_F + 1 <= QUORUM_MAX_REPLICAS,
	       "the largest N must fit a replica mask");

static unsigned max_u(unsigned a, unsigned b)
{
	return a > b ? a : b;
}

static unsigned min_u(unsigned a, unsigned b)
{
	return a < b ? a : b;
}

unsigned quorum_n_for(unsigned f, unsigned m_r)
{
	return max_u(m_r, f) + f + 1;
}

int quorum_init(struct quorum *q, unsigned n, unsigned f, unsigned m_r, char *errbuf)
{
	unsigned want;

	if (f > QUORUM_MAX_F || m_r > QUORUM_MAX_MR)
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "F=%u, M_R=%u: each bound must be at most %u", f, m_r,
				  QUORUM_MAX_F);
	want = quorum_n_for(f, m_r); /* at most 63 with the bounds above */
	/* A larger N with the same W_Q would let two write quorums miss each other, and a
	 * smaller one could not make progress with F replicas unreachable: only equality is
	 * safe and live (RR paper, equations 1-14 with delta_N = 0). */
	if (n != want)
		return teems_errf(
			errbuf, TEEMS_ECONFIG,
			"N=%u does not fit F=%u, M_R=%u: N must be max(M_R, F) + F + 1 = %u", n, f,
			m_r, want);
	q->n = n;
	q->f = f;
	q->m_r = m_r;
	return TEEMS_OK;
}

unsigned quorum_write(const struct quorum *q)
{
	return max_u(q->m_r, q->f) + 1;
}

unsigned quorum_read(const struct quorum *q, unsigned s)
{
	return q->f + min_u(s, q->m_r) + 1;
}

unsigned quorum_super(const struct quorum *q, unsigned s)
{
	return max_u(quorum_read(q, s), quorum_write(q));
}

bool quorum_reads_intersect(const struct quorum *q)
{
	return q->f >= q->m_r;
}
