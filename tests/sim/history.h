/* Client histories of the key-value service, as the linearizability checker reads them
 * (DESIGN.md section 11: the simulator records one, the system tests record one, and
 * `teems-check HISTORY` checks a recorded file).
 *
 * An operation is one client request: its invocation (client, op id, key, arguments, invoke
 * time) and its completion (completion time and outcome). Times are u64 in any monotone unit
 * (the simulator uses virtual nanoseconds); only their order matters. Intervals are closed: op a
 * precedes op b in real time only if a.complete < b.invoke (strictly), so ops that touch at one
 * instant count as concurrent.
 *
 * Outcomes:
 * - ok:      the system answered; the result is recorded. A CAS whose expected version did not
 *            match is ok with a "fail" result (cas_ok = false), not a failed op.
 * - fail:    the system says the op did not happen (definitely not applied). The checker drops it.
 * - unknown: timed out or the connection was lost: a write may have taken effect at any time
 *            after its invocation, or never; a read tells nothing. The op stays open until the
 *            end of the history (its completion time, if recorded, is ignored by the checkers).
 *
 * A client has at most one op outstanding at a time, except that an op with an unknown outcome
 * stays open while the client goes on: sorted by invocation, every ok or failed op of a client
 * completes no later than the client's next invocation. (client, op id) is unique.
 *
 * The model (lincheck.h): each key holds (value bytes or absent, version u64), initially
 * (absent, 0). GET returns (absent | value, version). SET writes, version+1, and returns the new
 * version. CAS compares only versions: if version == expected it writes (version+1) and returns
 * ok(new version), else it returns fail(current version). DEL sets absent and version+1 (even on
 * an absent key) and returns the new version. Engines that do not expose versions (ABD) record
 * GET/SET/DEL results with version_known = false; a CAS always carries versions.
 *
 * File format (text, one op per line; '#' starts a comment line; blank lines are ignored; fields
 * are separated by spaces or tabs; a trailing '\r' is ignored):
 *
 *   <client> <op-id> <invoke> <complete|-> <ok|fail|unknown> GET <key>            [-> RESULT]
 *   <client> <op-id> <invoke> <complete|-> <ok|fail|unknown> SET <key> <value>    [-> RESULT]
 *   <client> <op-id> <invoke> <complete|-> <ok|fail|unknown> CAS <key> <expected-version> <value>
 *                                                                                 [-> RESULT]
 *   <client> <op-id> <invoke> <complete|-> <ok|fail|unknown> DEL <key>            [-> RESULT]
 *
 * Numbers are unsigned decimal u64. "-" as completion time is allowed only for unknown. The
 * "-> RESULT" part is required for ok and forbidden for fail and unknown:
 *
 *   GET:      absent <version|?>   or   value <bytes> <version|?>
 *   SET, DEL: <new-version|?>
 *   CAS:      ok <new-version>     or   fail <current-version>
 *
 * "?" means "version unknown" (the engine does not expose versions). Keys and values are byte
 * strings, percent-encoded: bytes 0x21..0x7e other than '%' and '"' stand for themselves, any
 * other byte is %XX (the writer uses upper case, the parser accepts both), and the empty string
 * is written "". Examples:
 *
 *   1 1 100 250 ok SET k v1 -> 1
 *   2 1 120 300 ok GET k -> value v1 1
 *   3 1 130 - unknown CAS k 1 v%20two
 *   2 2 310 400 ok CAS k 1 v3 -> fail 2
 *   1 2 260 420 ok DEL k -> 3
 *   4 1 500 510 ok GET %00%FF -> absent ?
 */
#ifndef TEEMS_SIM_HISTORY_H
#define TEEMS_SIM_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The completion time of an op that never completed ("-" in a file). */
#define HISTORY_OPEN UINT64_MAX

enum history_type {
	HISTORY_GET,
	HISTORY_SET,
	HISTORY_CAS,
	HISTORY_DEL,
};

enum history_outcome {
	HISTORY_OK,
	HISTORY_FAIL,
	HISTORY_UNKNOWN,
};

/* A byte string. Inside a struct history the bytes belong to the history; as an argument they
 * are borrowed for the duration of the call (the history copies them). */
struct history_bytes {
	const uint8_t *data;
	size_t len;
};

/* What an ok op returned. Ignored unless the outcome is HISTORY_OK. */
struct history_result {
	bool version_known; /* false: the engine did not report a version (GET, SET, DEL only) */
	bool found;	    /* GET: the key held a value */
	bool cas_ok;	    /* CAS: the swap happened */
	struct history_bytes value; /* GET with found: the value read */
	uint64_t version; /* GET: version read; SET, DEL: new version; CAS: new version if cas_ok,
			     else the current version */
};

struct history_op {
	uint64_t client;
	uint64_t op_id;
	uint64_t invoke;
	uint64_t complete; /* HISTORY_OPEN if it never completed (only with HISTORY_UNKNOWN) */
	enum history_outcome outcome;
	enum history_type type;
	struct history_bytes key;
	struct history_bytes value; /* SET, CAS: the value to write */
	uint64_t expected_version;  /* CAS */
	struct history_result result;
};

struct history {
	struct history_op *ops; /* ops[0..n), in the order they were added or parsed */
	size_t n;
	size_t cap;
};

void history_init(struct history *h);

/* Frees every op and its bytes; h is empty (and reusable) afterwards. */
void history_free(struct history *h);

/* Appends a deep copy of *op (key, value and result bytes are copied; fields that the op's
 * type and outcome do not use are cleared). Does not validate (history_validate does).
 * Errors: TEEMS_ENOMEM (h unchanged). */
int history_add(struct history *h, const struct history_op *op);

/* Recording in two steps, as a client sees it: history_invoke appends *op as outstanding
 * (outcome HISTORY_UNKNOWN, complete HISTORY_OPEN; *op's outcome, complete and result are
 * ignored) and stores its index in *index. history_complete records the completion of op
 * `index` at `time`: res is read only for HISTORY_OK (and may be NULL otherwise). An op left
 * outstanding at the end of the history is an unknown outcome. Errors: TEEMS_ENOMEM,
 * TEEMS_EINVAL (history_complete: index out of range); h unchanged on error. */
int history_invoke(struct history *h, const struct history_op *op, size_t *index);
int history_complete(struct history *h, size_t index, uint64_t time, enum history_outcome outcome,
		     const struct history_result *res);

/* Checks the rules in the comment at the top of this file: completion present and not before
 * invocation for ok and fail ops; versions present for CAS; (client, op id) unique; a client's
 * ok and failed ops do not overlap its next op. Errors: TEEMS_ECORRUPT (errbuf says which op),
 * TEEMS_ENOMEM. */
int history_validate(const struct history *h, char *errbuf);

/* Parses text[0..len) (the file format above; need not be NUL-terminated) and appends its ops
 * to h, then validates the whole history. On error h is left as it was before the call and
 * errbuf says "line N: reason". Errors: TEEMS_ECORRUPT, TEEMS_ENOMEM. */
int history_parse(struct history *h, const char *text, size_t len, char *errbuf);

/* Reads and parses a file ("-" is standard input). Errors: those of history_parse, and
 * TEEMS_ENOTFOUND, TEEMS_EIO. */
int history_read_file(struct history *h, const char *path, char *errbuf);

/* A growable NUL-terminated string (allocated through teems_realloc). After an allocation
 * failure it stays as it was and err is TEEMS_ENOMEM; further appends are ignored. */
struct history_str {
	char *data; /* NUL-terminated, or NULL while empty */
	size_t len;
	size_t cap;
	int err;
};

void history_str_free(struct history_str *s);
void history_str_printf(struct history_str *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends bytes in the file format's percent encoding. If max > 0 and the string is longer
 * than max bytes, only the first max are written, followed by "...(N bytes)". */
void history_str_bytes(struct history_str *s, struct history_bytes b, size_t max);

/* Appends one op as a line of the file format, without the newline (max: as history_str_bytes,
 * for explanations; 0 writes a line the parser reads back). */
void history_str_op(struct history_str *s, const struct history_op *op, size_t max);

/* Appends the whole history in the file format, with a header comment. Returns s->err. */
int history_format(const struct history *h, struct history_str *s);

/* Writes the whole history to f or to the file at path. Errors: TEEMS_ENOMEM, TEEMS_EIO. */
int history_write(const struct history *h, FILE *f, char *errbuf);
int history_write_file(const struct history *h, const char *path, char *errbuf);

/* True if a and b are the same op, comparing only the fields their type and outcome use. */
bool history_op_equal(const struct history_op *a, const struct history_op *b);

const char *history_type_name(enum history_type t);
const char *history_outcome_name(enum history_outcome o);

#endif
