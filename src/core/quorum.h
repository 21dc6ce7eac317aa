/* RR quorum sizes (DESIGN.md section 3; RR paper section III-D, equations 1-14).
 *
 *   N      = max(M_R, F) + F + 1
 *   W_Q    = max(M_R, F) + 1                 write quorum (every vote quorum)
 *   R_Q(s) = F + min(s, M_R) + 1             read quorum, s = replies flagged suspicious
 *   S_Q(s) = max(R_Q(s), W_Q)                read-modify-write ("super") quorum
 *
 * Properties (checked exhaustively by tests/unit/test_quorum.c):
 *   I1  every read quorum meets every write quorum in a replica that was not rolled back;
 *   I2  two read quorums may be disjoint when F < M_R (then ABD stabilizes and the Paxos
 *       optimized read aborts);
 *   I3  a super quorum meets a quorum of any type in a replica that was not rolled back.
 * M_R = 0 gives the classic crash-fault majorities (N = 2F + 1, W_Q = R_Q = F + 1).
 *
 * s only grows as replies arrive: callers re-evaluate the quorum on every reply. */
#ifndef TEEMS_CORE_QUORUM_H
#define TEEMS_CORE_QUORUM_H

#include <stdbool.h>

/* Replica ids are 0..N-1 and sets of replicas are 64-bit masks throughout the cores. */
#define QUORUM_MAX_REPLICAS 64
#define QUORUM_MAX_F 31
#define QUORUM_MAX_MR 31

struct quorum {
	unsigned n;   /* replicas */
	unsigned f;   /* most replicas unreachable at once (liveness) */
	unsigned m_r; /* most replicas rolled back or forked at once (safety) */
};

/* The N that the formulas give for (F, M_R). */
unsigned quorum_n_for(unsigned f, unsigned m_r);

/* Fills q after checking that (n, f, m_r) obey the formulas. On a violation it returns
 * TEEMS_ECONFIG and says in errbuf which rule and what value would be valid, for example
 * "N=4 does not fit F=1, M_R=1: N must be max(M_R, F) + F + 1 = 3". */
int quorum_init(struct quorum *q, unsigned n, unsigned f, unsigned m_r, char *errbuf);

unsigned quorum_write(const struct quorum *q);
unsigned quorum_read(const struct quorum *q, unsigned s);
unsigned quorum_super(const struct quorum *q, unsigned s);

/* True when any two read quorums meet (F >= M_R): stabilization and the optimized-read abort
 * are then not needed for safety (RR thesis, theorem 3.1), though teems keeps them. */
bool quorum_reads_intersect(const struct quorum *q);

#endif
