/* The replicated key-value state machine (DESIGN.md section 1, `src/kv`): what the RR-Paxos log
 * applies. Pure: no I/O, no clock, no globals; allocation through teems_malloc.
 *
 * Model (the same as tests/sim/history.h, so that the linearizability checker judges exactly
 * what this module does): each key holds (value bytes or absent, version u64), initially
 * (absent, 0).
 *   GET k              -> (absent | value, version)
 *   SET k v            -> writes, version + 1; returns the new version
 *   CAS k expected v   -> if version == expected: writes, version + 1, returns ok(new version);
 *                         else returns fail(current version) and changes nothing
 *   DEL k              -> absent, version + 1 (even on an absent key); returns the new version
 * A deleted key keeps its version (a tombstone), so versions never go backwards.
 *
 * Encodings (little-endian; also the payload of a paxos_command):
 *   command:  u8 op (1 GET, 2 SET, 3 CAS, 4 DEL) | u16 key length | key
 *             | CAS: u64 expected version | SET, CAS: u32 value length | value
 *   result:   u8 status (0 ok, 1 CAS failed) | u8 found (GET: 1 if a value) | u64 version
 *             | u32 value length | value (GET with found only; 0 otherwise)
 *   snapshot: "TKVS" | u32 format (1) | u64 key count | per key, in strictly increasing byte
 *             order of keys: u16 key length | key | u64 version | u8 present
 *             | present: u32 value length | value
 * Decoders validate everything (lengths against the caps and the remaining bytes, op codes,
 * flags, trailing bytes, key order in snapshots) and return TEEMS_ECORRUPT for anything else.
 * Encodings are canonical: what a decoder accepts re-encodes to the same bytes. */
#ifndef TEEMS_KV_KV_H
#define TEEMS_KV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAX_KEY 4096u	/* bytes in a key (non-empty) */
#define KV_MAX_VALUE (1u << 20) /* bytes in a value */

enum kv_op {
	KV_GET = 1,
	KV_SET = 2,
	KV_CAS = 3,
	KV_DEL = 4,
};

/* A command. Decoded commands point into the decoder's input (borrowed). */
struct kv_cmd {
	enum kv_op op;
	const uint8_t *key;
	uint16_t key_len;
	uint64_t expected_version; /* CAS */
	const uint8_t *value;	   /* SET, CAS */
	uint32_t value_len;
};

enum kv_status {
	KV_OK = 0,
	KV_CAS_FAILED = 1,
};

/* A result. value points into the kv map (kv_apply: valid until the next change of that key)
 * or into the decoder's input (kv_result_decode). */
struct kv_result {
	enum kv_status status;
	bool found;	  /* GET */
	uint64_t version; /* GET: current; SET, DEL: new; CAS: new if ok, else current */
	const uint8_t *value;
	uint32_t value_len;
};

/* Encoded size of a command, or 0 if it is invalid (bad op, key empty or over KV_MAX_KEY,
 * value over KV_MAX_VALUE). */
size_t kv_cmd_size(const struct kv_cmd *c);
/* Encodes into buf[0..cap). Errors: TEEMS_EINVAL (invalid command), TEEMS_EFULL (cap too small;
 * *len is then the size needed). */
int kv_cmd_encode(const struct kv_cmd *c, uint8_t *buf, size_t cap, size_t *len);
/* Errors: TEEMS_ECORRUPT. out points into buf. */
int kv_cmd_decode(const uint8_t *buf, size_t len, struct kv_cmd *out);

size_t kv_result_size(const struct kv_result *r);
/* Errors: TEEMS_EINVAL, TEEMS_EFULL (as kv_cmd_encode). */
int kv_result_encode(const struct kv_result *r, uint8_t *buf, size_t cap, size_t *len);
/* Errors: TEEMS_ECORRUPT. */
int kv_result_decode(const uint8_t *buf, size_t len, struct kv_result *out);

struct kv;

/* Errors: TEEMS_ENOMEM. */
int kv_new(struct kv **out);
void kv_free(struct kv *kv);

/* Applies one command. *res's value (GET) points into the map until the key next changes.
 * Errors: TEEMS_EINVAL (invalid command), TEEMS_ENOMEM (nothing changed). */
int kv_apply(struct kv *kv, const struct kv_cmd *cmd, struct kv_result *res);

/* Decodes and applies an encoded command, and encodes its result into a buffer that belongs to
 * the caller (teems_free). A command that does not decode is not applied: the result is then
 * TEEMS_ECORRUPT and nothing changes (every replica makes the same decision).
 * Errors: TEEMS_ECORRUPT, TEEMS_ENOMEM. */
int kv_apply_encoded(struct kv *kv, const uint8_t *cmd, size_t len, uint8_t **result,
		     size_t *result_len);

/* Keys with a version (present or deleted). */
size_t kv_count(const struct kv *kv);
/* Looks a key up without changing anything (res as for GET). */
void kv_get(const struct kv *kv, const uint8_t *key, size_t key_len, struct kv_result *res);

/* Serializes the whole map (the snapshot format above); *buf belongs to the caller
 * (teems_free). Errors: TEEMS_ENOMEM. */
int kv_snapshot(const struct kv *kv, uint8_t **buf, size_t *len);
/* Replaces the map's content with the snapshot's, all or nothing.
 * Errors: TEEMS_ECORRUPT (kv unchanged), TEEMS_ENOMEM (kv unchanged). */
int kv_restore(struct kv *kv, const uint8_t *buf, size_t len);

/* True if both maps hold the same keys, values and versions. */
bool kv_equal(const struct kv *a, const struct kv *b);

#endif
