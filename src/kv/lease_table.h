/* Client leases as state-machine commands (DESIGN.md section 8; docs/LEASES.md "Client
 * leases"): the RESP commands LEASE.ACQUIRE, LEASE.RENEW, LEASE.RELEASE and LEASE.INFO, their
 * encoding as log commands, their application to the replicated lease table (core/lease.h,
 * lease_table_*), their replies, and the table's bytes in a snapshot.
 *
 *   LEASE.ACQUIRE name ttl_ms  -> [token, ttl_ms]           or -LEASEHELD ... remaining_ms N
 *   LEASE.RENEW name token     -> [token, ttl_ms]           or -LEASESTALE ...
 *   LEASE.RELEASE name token   -> +OK                       or -LEASESTALE ...
 *   LEASE.INFO name            -> [held, token, ttl_ms, remaining_ms]  or nil (never acquired)
 *
 * ACQUIRE, RENEW and RELEASE go through the log like writes; the leader's expiry timers
 * (lease_timers_*) propose EXPIRE(name, generation) commands of the same encoding. INFO is a
 * read (serve it like GET: read index or leader lease). Tokens increase per name and are never
 * reused (fencing tokens). The replicated state holds no time: a refusal's remaining time and
 * INFO's remaining_ms come from the serving leader's timers (-1 when it has none: a follower).
 *
 * This module is pure (no clock, no I/O) and separate from kv.c; kv_apply dispatches to it on
 * the first byte KV_LEASE_FORMAT (see the report in docs/LEASES.md "Hooking client leases into
 * the daemon"). Memory: through teems_malloc; not thread-safe. */
#ifndef TEEMS_KV_LEASE_TABLE_H
#define TEEMS_KV_LEASE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/lease.h"

/* First byte of an encoded lease command (next to KV_FORMAT_R 0x81 and KV_FORMAT_AS 0x82). */
#define KV_LEASE_FORMAT 0x83
/* Longest ttl_ms accepted (one day): longer leases are a configuration error. */
#define KV_LEASE_TTL_MAX_MS (24ull * 3600 * 1000)

/* Encoded lease command: u8 KV_LEASE_FORMAT | u8 type (enum lease_cmd_type) | u16 name_len |
 * name | u64 ttl_ms | u64 token | u64 generation | u64 unsafe_host_ns, little-endian. */
#define KV_LEASE_CMD_FIXED (1 + 1 + 2 + 8 * 4)

bool kv_lease_is_cmd(const uint8_t *cmd, size_t len);
/* Errors: TEEMS_EINVAL (bad name or type), TEEMS_EFULL (*len = size needed). */
int kv_lease_cmd_encode(const struct lease_cmd *c, uint8_t *buf, size_t cap, size_t *len);
/* out->name points into buf. Errors: TEEMS_ECORRUPT. */
int kv_lease_cmd_decode(const uint8_t *buf, size_t len, struct lease_cmd *out);

/* A parsed RESP request. */
struct kv_lease_req {
	bool info;	      /* LEASE.INFO (a read); otherwise `cmd` goes through the log */
	struct lease_cmd cmd; /* name points into the argv */
};

/* Parses argv (argv[0] is the command name, any case). Returns 0; TEEMS_EINVAL with an error
 * message in errbuf (TEEMS_ERRBUF_LEN: unknown command, wrong arity, bad number, name length
 * outside 1..LEASE_NAME_MAX, ttl_ms outside 1..KV_LEASE_TTL_MAX_MS). */
int kv_lease_parse(size_t argc, const uint8_t *const *argv, const size_t *lens,
		   struct kv_lease_req *out, char *errbuf);

/* LEASE.INFO as an encoded command (a read, never proposed): the same layout as the others with
 * type byte KV_LEASE_INFO and the numbers 0. kv_lease_cmd_decode refuses it;
 * kv_lease_req_decode accepts it. */
#define KV_LEASE_INFO 0

/* Encodes a parsed request (INFO too) for kv_apply_encoded; with user non-NULL it is wrapped
 * (u8 KV_FORMAT_AS | u16 user length | user | the lease command), as kv.h wraps R commands,
 * and the state machine checks the user's permissions on the lease name as on a key (INFO
 * reads it, the others write it). *out is teems_malloc'd. Errors: TEEMS_EINVAL, TEEMS_ENOMEM. */
int kv_lease_req_encode(const struct kv_lease_req *q, const char *user, uint8_t **out, size_t *len);
/* Looks at an encoded command: 0 if it is not a lease command (wrapped or not), 1 with *q (name
 * into cmd) and *user (NULL when unwrapped) filled if it is one, TEEMS_ECORRUPT if it starts
 * like one but does not decode. */
int kv_lease_unwrap(const uint8_t *cmd, size_t len, struct kv_lease_req *q, const uint8_t **user,
		    uint16_t *user_len);

/* The encoded result of a lease command (what kv_apply_encoded gives for it):
 * u8 KV_LEASE_FORMAT | u8 type (KV_LEASE_INFO or enum lease_cmd_type) | u8 status (enum
 * lease_status) | u8 held | u64 token | u64 ttl_ms | u64 generation | i64 remaining_ms, LE.
 * remaining_ms is -1 as applied; the leader's engine fills it in from its timers
 * (kv_lease_result_set_remaining) before it answers. A lease command refused by the
 * permission checks gets an R result instead (KV_FORMAT_R, op KV_R_GET for INFO and KV_R_SET
 * otherwise, with the KV_ERR_* status). */
#define KV_LEASE_RESULT_LEN 36
struct kv_lease_res {
	unsigned type; /* KV_LEASE_INFO or enum lease_cmd_type */
	struct lease_result res;
	int64_t remaining_ms;
};
void kv_lease_result_encode(unsigned type, const struct lease_result *r, int64_t remaining_ms,
			    uint8_t out[KV_LEASE_RESULT_LEN]);
/* Errors: TEEMS_ECORRUPT. */
int kv_lease_result_decode(const uint8_t *buf, size_t len, struct kv_lease_res *out);
/* Sets the remaining_ms of an encoded result (no-op if buf is not one). */
void kv_lease_result_set_remaining(uint8_t *buf, size_t len, int64_t remaining_ms);

struct kv_leases;

/* Errors: TEEMS_ENOMEM. */
int kv_leases_new(struct kv_leases **out);
void kv_leases_free(struct kv_leases *l);
/* The table, for the leader's timers (lease_timers_take_office). */
const struct lease_table *kv_leases_table(const struct kv_leases *l);
/* Applies one encoded lease command (deterministic); *decoded (may be NULL) gets the decoded
 * command (name points into cmd) for lease_timers_applied. Errors: TEEMS_ECORRUPT (not a lease
 * command: nothing changed), TEEMS_ENOMEM (table unchanged). */
int kv_leases_apply(struct kv_leases *l, const uint8_t *cmd, size_t len, struct lease_result *res,
		    struct lease_cmd *decoded);
/* The lease table of a state machine (kv.h), for the leader's timers. */
struct kv;
const struct lease_table *kv_lease_table(const struct kv *kv);
/* Applies a decoded command (lease_table_apply). Errors: TEEMS_ENOMEM (table unchanged). */
int kv_leases_apply_cmd(struct kv_leases *l, const struct lease_cmd *cmd, struct lease_result *res);
/* Whether two tables hold the same leases (their encodings are equal). */
bool kv_leases_equal(const struct kv_leases *a, const struct kv_leases *b);
void kv_leases_info(const struct kv_leases *l, const struct lease_cmd *cmd,
		    struct lease_result *res);

/* The RESP2 reply to a request of `type` (or INFO when info) with result res; remaining_ms is
 * the serving leader's lease_timers_remaining_ns in ms, or -1 when unknown. Returns the reply's
 * length; writes only if it fits in cap (call with cap 0 to size it). */
size_t kv_lease_reply(bool info, enum lease_cmd_type type, const struct lease_result *res,
		      int64_t remaining_ms, uint8_t *buf, size_t cap);

/* Snapshot bytes of the table (lease_table_encode's format; deterministic). *out is
 * teems_malloc'd. Errors: TEEMS_ENOMEM. */
int kv_leases_serialize(const struct kv_leases *l, uint8_t **out, size_t *len);
/* Replaces the table by a serialization. Errors: TEEMS_ECORRUPT, TEEMS_ENOMEM (unchanged). */
int kv_leases_restore(struct kv_leases *l, const uint8_t *buf, size_t len);

#endif
