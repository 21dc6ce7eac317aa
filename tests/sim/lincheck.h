/* Checkers for client histories (DESIGN.md section 11): linearizability of the key-value model
 * described in history.h, and monotonic reads per client.
 *
 * Linearizability: the model is independent per key, so the history is partitioned by key
 * (P-compositionality, Herlihy & Wing) and each key is searched on its own with the Wing & Gong
 * algorithm as improved by Lowe ("Testing for linearizability", 2017) and used by Knossos and
 * Porcupine: a doubly linked list of call and return events, a stack to undo, and a cache of
 * visited configurations (set of linearized ops, model state) so that no configuration is
 * explored twice.
 *
 * How outcomes are read: fail ops are dropped (they did not happen); unknown GETs are dropped
 * (they tell nothing); an unknown write may be linearized anywhere after its invocation, or not
 * at all. The search succeeds once every ok op of the key is linearized.
 *
 * Verdicts: LINCHECK_OK only if a linearization was found for every key. LINCHECK_VIOLATION if
 * for some key none exists (a definite answer). LINCHECK_UNKNOWN if some key's search explored
 * more configurations than its budget: never read this as a pass.
 *
 * Exactness: the set of linearized ops is remembered as a 128-bit Zobrist hash, not as a bitset
 * (a bitset of a 5,000-op key is 625 bytes per configuration). Two different configurations
 * share a hash with probability about 2^-128 per pair; the only effect a collision could have is
 * to prune a branch, i.e. a false VIOLATION, never a false OK.
 *
 * Reductions (each keeps the verdict exact; the argument is next to the code in lincheck.c;
 * test_lincheck checks them against a brute-force search and against no_reductions):
 * - values that no ok GET of the key returned are one value, "unread", in the model state; with
 *   versions, so is the value of an unknown write that no GET can observe (every GET of that
 *   value has a known version, produced by an ok write);
 * - unknown ops with the same effect in every state (both CAS with the same expected version,
 *   or both SET/DEL, and the same value) are linearized in invocation order among themselves;
 * - an unknown SET or DEL is not tried where an unknown CAS with the same effect applies, nor,
 *   if its value cannot be observed at that version, where an unread unknown write could go;
 * - an unknown SET of an unread value is dropped when the key has no version to check;
 * - an unknown CAS is only linearized where it applies (where it would not, "never" is the same);
 * - a read-only ok op (GET, failed CAS) that fits the current state is linearized at once and
 *   no alternative is tried there (moving such an op earlier never breaks a linearization);
 * - a configuration whose version is past the version a pending ok op needs is dead;
 * - ok ops are tried before unknown ones at each step (this only orders the search).
 * With them a linearizable 5,000-op, 8-client key takes about as many configurations as ops.
 *
 * Not thread-safe per call, but calls on different histories may run in parallel (no globals). */
#ifndef TEEMS_SIM_LINCHECK_H
#define TEEMS_SIM_LINCHECK_H

#include <stdint.h>

#include "history.h"

enum lincheck_verdict {
	LINCHECK_OK,
	LINCHECK_VIOLATION,
	LINCHECK_UNKNOWN, /* search budget exceeded: no verdict */
};

/* Per-key budget when the options leave it at 0. A configuration costs 24 bytes of cache
 * (times at most 2 for the hash table's load factor). */
#define LINCHECK_DEFAULT_MAX_STATES 2000000u

struct lincheck_options {
	uint64_t max_states_per_key; /* configurations explored per key; 0: the default */
	/* For tests of the checker: search without the reductions listed above (except the
	 * unread-value merging and the unknown-CAS rule). The verdict must not change; only the
	 * number of configurations grows, often exponentially. */
	bool no_reductions;
};

struct lincheck_result {
	enum lincheck_verdict verdict;
	size_t ops;		 /* ops in the history (all outcomes) */
	size_t keys;		 /* distinct keys */
	uint64_t states;	 /* configurations explored, all keys */
	uint64_t max_key_states; /* the most any one key explored */
	/* For VIOLATION and UNKNOWN, the key concerned (owned by the result) and a multi-line
	 * explanation (owned, NUL-terminated; NULL for OK). For a linearizability violation: the
	 * key's longest linearizable prefix found (its last ops), the model state after it, the op
	 * that could not be placed and the other candidates, each with the reason it does not fit.
	 */
	struct history_bytes key;
	char *explanation;
};

/* Checks that h is linearizable. opt may be NULL (defaults). *res is overwritten (call
 * lincheck_result_free afterwards, whatever the return value). When several keys fail, the
 * first in byte order with a violation is reported; a violation wins over an exceeded budget.
 * Errors: TEEMS_ECORRUPT (h breaks history_validate's rules; errbuf says how), TEEMS_ENOMEM. */
int lincheck_check(const struct history *h, const struct lincheck_options *opt,
		   struct lincheck_result *res, char *errbuf);

/* Monotonic reads: for each client and key, the ok GETs of that client, in invocation order,
 * never observe an older state than an earlier one did. "Older" is decided in two independent
 * ways, and a violation of either is reported:
 * - versions: a GET with a known version never returns less than an earlier GET's version;
 * - writers, for engines without versions (ABD): a GET's value is attributed to the write that
 *   produced it. This ASSUMES every write of a key writes a distinct value (the simulator and
 *   the system tests write unique values); a value written by several ops, or by none, is not
 *   attributed and its GET is skipped. An absent result is attributed to the initial state if
 *   the key has no DEL. A GET goes backwards if its writer completed before the writer seen by
 *   an earlier GET was invoked (real-time order of the writes), or if it sees the initial
 *   state after an earlier GET saw a write.
 * Reads are only checked against reads (read-your-writes is implied by linearizability).
 * verdict is OK or VIOLATION; ops, keys and key/explanation as for lincheck_check.
 * Errors: TEEMS_ECORRUPT, TEEMS_ENOMEM. */
int lincheck_monotonic_reads(const struct history *h, struct lincheck_result *res, char *errbuf);

void lincheck_result_free(struct lincheck_result *res);

const char *lincheck_verdict_name(enum lincheck_verdict v);

#endif
