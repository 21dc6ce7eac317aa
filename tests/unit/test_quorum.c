/* RR quorum sizes (DESIGN.md section 3), checked by brute force rather than by the algebra:
 * for every F, M_R in 0..4 we enumerate which replicas are rolled back, which are suspicious,
 * which acknowledged a write and which answer a later read, and check the intersection
 * properties I1 and I3 of the RR paper. The negative control runs the same enumeration with
 * crash-fault majorities and must find a counterexample whenever M_R > 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/quorum.h"
#include "teems/err.h"

#define MAX_BOUND 4

typedef unsigned (*read_size_fn)(const struct quorum *q, unsigned s);
typedef unsigned (*write_size_fn)(const struct quorum *q);

static unsigned popcount(uint32_t x)
{
	return (unsigned)__builtin_popcount(x);
}

/* Crash-fault majorities that ignore suspicion: the "cft-quorums" mistake. */
static unsigned cft_size(const struct quorum *q)
{
	return q->n / 2 + 1;
}

static unsigned cft_read(const struct quorum *q, unsigned s)
{
	(void)s;
	return cft_size(q);
}

static void test_formulas(void **state)
{
	static const struct {
		unsigned f, m_r, n, w, r0, r1, r_all;
	} cases[] = {
		/* The configurations every test matrix covers, with SCENARIOS.md's numbers. */
		{1, 1, 3, 2, 2, 3, 3}, {1, 2, 4, 3, 2, 3, 4}, {2, 2, 5, 3, 3, 4, 5},
		{2, 4, 7, 5, 3, 4, 7}, {1, 0, 3, 2, 2, 2, 2}, /* M_R = 0: the crash-fault majorities
							       */
		{2, 0, 5, 3, 3, 3, 3}, {0, 0, 1, 1, 1, 1, 1},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct quorum q;
		assert_int_equal(quorum_n_for(cases[i].f, cases[i].m_r), cases[i].n);
		assert_int_equal(quorum_init(&q, cases[i].n, cases[i].f, cases[i].m_r, NULL),
				 TEEMS_OK);
		assert_int_equal(quorum_write(&q), cases[i].w);
		assert_int_equal(quorum_read(&q, 0), cases[i].r0);
		assert_int_equal(quorum_read(&q, 1), cases[i].r1);
		assert_int_equal(quorum_read(&q, q.n), cases[i].r_all);
		assert_int_equal(quorum_super(&q, 0),
				 cases[i].w > cases[i].r0 ? cases[i].w : cases[i].r0);
		assert_int_equal(quorum_reads_intersect(&q), cases[i].f >= cases[i].m_r);
	}
}

static void test_refuses_bad_configs(void **state)
{
	struct quorum q;
	char err[TEEMS_ERRBUF_LEN] = "";
	(void)state;

	assert_int_equal(quorum_init(&q, 4, 1, 1, err), TEEMS_ECONFIG);
	assert_non_null(strstr(err, "N=4"));
	assert_non_null(strstr(err, "= 3"));
	assert_int_equal(quorum_init(&q, 2, 1, 1, err), TEEMS_ECONFIG);
	assert_int_equal(quorum_init(&q, 5, 1, 2, err), TEEMS_ECONFIG);
	assert_non_null(strstr(err, "= 4"));
	assert_int_equal(quorum_init(&q, 40, 32, 0, err), TEEMS_ECONFIG);
	assert_non_null(strstr(err, "at most"));
	assert_int_equal(quorum_init(&q, 64, 31, 31, err), TEEMS_ECONFIG);
	assert_int_equal(quorum_init(&q, 63, 31, 31, err), TEEMS_OK);
	assert_int_equal(quorum_init(&q, 3, 1, 1, NULL), TEEMS_OK);
}

/* Lists every subset of n replicas of exactly k members. */
static unsigned subsets_of_size(unsigned n, unsigned k, uint32_t *out)
{
	unsigned count = 0;
	for (uint32_t m = 0; m < (1u << n); m++)
		if (popcount(m) == k)
			out[count++] = m;
	return count;
}

/* Counts the (rolled back, suspicious, write quorum, read quorum) combinations in which the
 * read quorum misses every replica that holds the write: a write acknowledged by W, then the
 * replicas in RB restart on state from before it (so they are suspicious, like every replica
 * in SUSP), then a reader collects answers from A, and stops as soon as |A| reaches the read
 * quorum for the s it has seen. Only minimal read quorums are enumerated: a larger answer set
 * contains a minimal one. */
static unsigned long read_write_misses(const struct quorum *q, read_size_fn read_size,
				       write_size_fn write_size)
{
	static uint32_t writes[1u << 9];
	unsigned n = q->n, nw = subsets_of_size(n, write_size(q), writes);
	unsigned long misses = 0;

	for (uint32_t rb = 0; rb < (1u << n); rb++) {
		if (popcount(rb) > q->m_r)
			continue;
		for (uint32_t a = 0; a < (1u << n); a++) {
			/* Suspicious answerers: every rolled-back one, plus any others. */
			uint32_t must = a & rb, may = a & ~rb;
			for (uint32_t extra = may;; extra = (extra - 1) & may) {
				uint32_t susp = must | extra;
				if (popcount(a) == read_size(q, popcount(susp))) {
					uint32_t fresh = a & ~rb;
					for (unsigned w = 0; w < nw; w++)
						misses += (writes[w] & fresh) == 0;
				}
				if (extra == 0)
					break;
			}
		}
	}
	return misses;
}

/* Two vote quorums (W_Q, or super quorums with any s) always share a replica. */
static unsigned long vote_misses(const struct quorum *q, write_size_fn write_size)
{
	static uint32_t sets[1u << 9];
	unsigned ns = subsets_of_size(q->n, write_size(q), sets);
	unsigned long misses = 0;

	for (unsigned i = 0; i < ns; i++)
		for (unsigned j = 0; j < ns; j++)
			misses += (sets[i] & sets[j]) == 0;
	return misses;
}

static unsigned super0(const struct quorum *q)
{
	return quorum_super(q, 0);
}

/* I1 with s counted, and I3: a super quorum (as the write) meets any read quorum in a replica
 * that was not rolled back, and any two write or super quorums meet. */
static void test_intersections_exhaustive(void **state)
{
	(void)state;
	for (unsigned f = 0; f <= MAX_BOUND; f++) {
		for (unsigned m_r = 0; m_r <= MAX_BOUND; m_r++) {
			struct quorum q;
			assert_int_equal(quorum_init(&q, quorum_n_for(f, m_r), f, m_r, NULL),
					 TEEMS_OK);
			assert_int_equal(read_write_misses(&q, quorum_read, quorum_write), 0);
			assert_int_equal(read_write_misses(&q, quorum_read, super0), 0);
			assert_int_equal(vote_misses(&q, quorum_write), 0);
			assert_int_equal(vote_misses(&q, super0), 0);
		}
	}
}

/* I2: with F < M_R two read quorums of fresh replicas can be disjoint; with F >= M_R never. */
static void test_read_read_split_brain(void **state)
{
	(void)state;
	for (unsigned f = 0; f <= MAX_BOUND; f++) {
		for (unsigned m_r = 0; m_r <= MAX_BOUND; m_r++) {
			struct quorum q;
			unsigned r = 0;
			assert_int_equal(quorum_init(&q, quorum_n_for(f, m_r), f, m_r, NULL),
					 TEEMS_OK);
			r = quorum_read(&q, 0);
			assert_int_equal(2 * r > q.n, quorum_reads_intersect(&q));
		}
	}
}

/* Negative control: the same checker must catch crash-fault majorities under rollback. */
static void test_negative_control_cft_quorums(void **state)
{
	(void)state;
	for (unsigned f = 0; f <= MAX_BOUND; f++) {
		for (unsigned m_r = 0; m_r <= MAX_BOUND; m_r++) {
			struct quorum q;
			unsigned long misses;
			assert_int_equal(quorum_init(&q, quorum_n_for(f, m_r), f, m_r, NULL),
					 TEEMS_OK);
			misses = read_write_misses(&q, cft_read, cft_size);
			/* With F = 0, M_R = 1 there are two replicas, and a majority of two
			 * is both of them: the one exception where majorities survive. */
			if (m_r == 0 || (f == 0 && m_r == 1))
				assert_int_equal(misses, 0);
			else
				assert_true(misses > 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formulas),
		cmocka_unit_test(test_refuses_bad_configs),
		cmocka_unit_test(test_intersections_exhaustive),
		cmocka_unit_test(test_read_read_split_brain),
		cmocka_unit_test(test_negative_control_cft_quorums),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
