/* The replicated key-value state machine (DESIGN.md sections 1 and 9, `src/kv`): what the
 * RR-Paxos log applies. Pure: no I/O, no clock of its own, no globals; allocation through
 * teems_malloc.
 *
 * State: per key (value bytes or absent, version u64, expiry u64 absolute ms or none), initially
 * (absent, 0, none); plus `clock`, the highest now_ms of any applied write command.
 *
 * Two families of commands share the map:
 *   - The model ops KV_GET, KV_SET, KV_CAS, KV_DEL (tests/sim/history.h, which the
 *     linearizability checker judges): one key, no clock of their own (they run at `clock`).
 *       GET k          -> (absent | value, version)
 *       SET k v        -> writes, version + 1, clears the expiry; returns the new version
 *       CAS k exp v    -> if version == exp: as SET, returns ok(new version);
 *                         else fail(current version), nothing changes
 *       DEL k          -> absent, version + 1 (even on an absent key); returns the new version
 *   - One op per RESP command (KV_R_*, DESIGN.md section 9), each carrying the proposer's
 *     now_ms; see enum kv_op for each one's meaning. They have Redis's semantics; the RESP
 *     layer (src/net/commands.h) builds them and formats their results.
 *
 * Versions: every change of a key (a write, a delete, an expiry) adds 1 to its version, and a
 * deleted key keeps its version (a tombstone), so versions never go backwards and a
 * compare-and-set on versions cannot suffer ABA. Version 0 means "never written"; a deleted or
 * expired key reads as (absent, its tombstone's version), which is what VSET must then give.
 * Tombstones are never collected: the map keeps every key ever written (collecting them is
 * open, as for ABD's, docs/STATUS.md).
 *
 * Expiry, deterministic: a command runs at t = max(clock, now_ms) (model ops: t = clock). A key
 * whose expiry is <= t is absent for that command, and reads as (absent, version + 1): its
 * expiry is a change. A write command that touches an expired key first turns it into that
 * tombstone ("materializes" the expiry), then acts. Because t never goes below `clock` and every
 * write raises `clock`, a materialization can never be seen by a later command: replicas agree
 * on everything any command observes, whichever proposer's clock ran ahead.
 *
 * SCAN order: keys are visited in increasing (h, key) order, h = a fixed 64-bit hash of the
 * key. A SCAN from cursor c walks the entries (live keys, tombstones and expired keys alike)
 * with h >= c until it has walked `count` of them and the next one has a different h; it
 * returns the live ones (and MATCH's) and, as the next cursor, that next entry's h (0 when
 * none is left). So a full iteration returns every key that exists throughout it exactly once,
 * and a reply depends only on the map's content, never on its table's size or history:
 * replicas agree, and a cursor from one replica is good on any other.
 *
 * Encodings (little-endian), all checked by their decoders against the caps and the remaining
 * bytes (counts, lengths, op codes, flags, trailing bytes, key order in snapshots); anything
 * else is TEEMS_ECORRUPT. Encodings are canonical: what a decoder accepts re-encodes to the
 * same bytes. A key is `u16 length | bytes`, a value `u32 length | bytes`.
 *   model command:  u8 op (1..4) | key | CAS: u64 expected | SET, CAS: value
 *   model result:   u8 status (0 ok, 1 CAS failed) | u8 found | u64 version | value
 *                   (GET with found only; length 0 otherwise)
 *   RESP command:   u8 KV_FORMAT_R | u8 op (KV_R_*) | u64 now_ms | body:
 *     R_GET      key
 *     R_SET      u8 flags (KV_SET_*) | EXPIRE: u64 expire_at_ms (>= 1) | key | value
 *     R_DEL, R_EXISTS, R_MGET   u32 n (>= 1) | n keys
 *     R_MSET     u32 n (>= 1) | n (key | value)
 *     R_INCRBY   key | i64 delta
 *     R_SCAN     u64 cursor | u32 count (>= 1) | u8 flags (KV_SCAN_*) | MATCH: u32 len | pattern
 *     R_VSET     key | u64 expected version | value
 *   RESP result:    u8 KV_FORMAT_R | u8 op | u8 status (enum kv_status) | body, empty for the
 *                   error statuses (>= KV_ERR_NOT_INTEGER):
 *     R_GET      u8 found | u64 version | found: value
 *     R_SET      u8 old (0 not asked, 1 asked and absent, 2 asked and present) | u64 version
 *                | old == 2: value                   (status KV_NOT_DONE: NX/XX not met)
 *     R_DEL, R_EXISTS   u64 count
 *     R_MGET     u32 n | n (u8 found | found: value)
 *     R_MSET     (empty)
 *     R_INCRBY   i64 new value | u64 version
 *     R_SCAN     u64 next cursor | u32 n | n keys
 *     R_VSET     u64 version (new if ok, else current; status KV_NOT_DONE when stale)
 *     R_AUTH     u8 flags | key (user) | value (hash)
 *     R_ACL_SETUSER, R_POLICY_SET   key | value
 *     R_ACL_DELUSER  as R_DEL;  R_ACL_LIST (empty);  R_POLICY_GET, R_ACL_GETUSER  key
 *   run as a user:  u8 KV_FORMAT_AS | key (user name) | RESP command (from KV_FORMAT_R on)
 *   RESP result (new ops): R_AUTH, R_ACL_SETUSER, R_POLICY_SET (empty); R_ACL_DELUSER u64
 *                   count; R_ACL_LIST, R_POLICY_GET, R_ACL_GETUSER as R_MGET (GETUSER: the
 *                   strings "on|off[ nopass]", the hex hashes, the categories and the key
 *                   patterns, space-separated as ACL LIST writes them); status KV_ERR_TEXT:
 *                   value.
 *   snapshot:       "TKVS" | u32 format (4) | u64 clock | u64 key count | per key, in strictly
 *                   increasing byte order of keys: key | u64 version (>= 1) | u8 state (0
 *                   tombstone, 1 value, 2 value with expiry) | state 2: u64 expiry (>= 1)
 *                   | state 1, 2: value
 *                   | u32 user count | per user, by name: key | value (the user record)
 *                   | u32 policy count | per policy, by key: key | value (the policy)
 *                   | u32 length | the client lease table (lease_table_encode's bytes)
 *                   Formats 1 (before expiry), 2 (before users) and 3 (before leases)
 *                   are refused. */
#ifndef TEEMS_KV_KV_H
#define TEEMS_KV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_MAX_KEY 4096u		 /* bytes in a key (may be empty, as in Redis) */
#define KV_MAX_VALUE (1u << 20)		 /* bytes in a value */
#define KV_MAX_PATTERN 4096u		 /* bytes in a SCAN MATCH pattern */
#define KV_MAX_COMMAND ((size_t)8 << 20) /* an encoded command (MSG_MAX_BLOB in src/core/msg.h) */
#define KV_MAX_RESULT ((size_t)8 << 20)	 /* an encoded result (MSG_MAX_BLOB) */

#define KV_FORMAT_R 0x81 /* first byte of the RESP commands' encoding, version 1 */

enum kv_op {
	/* the model ops (no clock) */
	KV_GET = 1,
	KV_SET = 2,
	KV_CAS = 3,
	KV_DEL = 4,
	/* one per RESP command; read-only unless marked (W) */
	KV_R_GET = 16, /* GET, VGET: value or absent, and version */
	KV_R_SET,      /* (W) SET k v [NX|XX] [GET] [expiry|KEEPTTL]; without KEEPTTL the expiry
			* becomes the command's (or none) */
	KV_R_DEL,      /* (W) deletes each present key; count of keys deleted (a key given twice
			* counts once: it is gone the second time) */
	KV_R_EXISTS,   /* count of the keys present (a key given twice counts twice) */
	KV_R_MGET,     /* values or absent */
	KV_R_MSET,     /* (W) sets every pair in order (the last of a repeated key wins), clearing
			* expiries; all of them or, on TEEMS_ENOMEM, none */
	KV_R_INCRBY,   /* (W) adds delta to the decimal integer value (absent: 0), keeping the
			* expiry; KV_ERR_NOT_INTEGER, KV_ERR_OVERFLOW change nothing */
	KV_R_SCAN,     /* live keys in a range of the hash order, filtered by MATCH (Redis's
			* glob, kv_glob_match) */
	KV_R_VSET,     /* (W) compare-and-set on versions; the write clears the expiry */
	/* Users and policies (see "Users, permissions and policies" below) */
	KV_R_AUTH,	  /* user's credentials: KV_OK or KV_ERR_WRONGPASS (or KV_ERR_TEXT) */
	KV_R_ACL_SETUSER, /* (W) applies modifiers to a user (created if absent), all or none */
	KV_R_ACL_DELUSER, /* (W) deletes users; count of those that existed */
	KV_R_ACL_LIST,	  /* every user as a Redis ACL LIST line, by name */
	KV_R_POLICY_SET,  /* (W) sets a key's policy (owner, readers, writers) */
	KV_R_POLICY_GET,  /* a key's policy, or none */
	KV_R_ACL_GETUSER, /* a user's flags, password hashes, categories, keys; or none */
	KV_R_LAST_ = KV_R_ACL_GETUSER,
};

/* KV_R_SET flags. NX and XX exclude each other, as do KEEPTTL and EXPIRE. */
#define KV_SET_NX 1u
#define KV_SET_XX 2u
#define KV_SET_GET 4u
#define KV_SET_KEEPTTL 8u
#define KV_SET_EXPIRE 16u
/* KV_R_SCAN flags. NOTHING: a TYPE filter naming a type other than string (nothing passes). */
#define KV_SCAN_MATCH 1u
#define KV_SCAN_NOTHING 2u

/* Users, permissions and policies (issue 5 item 3, issue 7 item 5; Redis 7's ACL model, the
 * subset teems needs). Two tables beside the map, never reachable by key commands:
 *   users:    name -> on|off, nopass, SHA-256 hashes of its passwords (as Redis stores them),
 *             categories (KV_ACL_*), key patterns each with R, W or both. Initially one user,
 *             "default": on, nopass, every key (~*), every category, so that a cluster nobody
 *             configured works as before. "default" cannot be deleted.
 *   policies: key -> owner, readers, writers (user names; "*" in a list: every user).
 * A RESP command runs as a user when wrapped (KV_FORMAT_AS below). Then, at apply time, on the
 * applying replica's state (so every replica decides alike, and a permission change committed
 * before a write wins over it):
 *   - the user must exist and be on, else KV_ERR_NOAUTH;
 *   - it must hold the op's category (reads KV_ACL_READ, writes KV_ACL_WRITE, ACL ops
 *     KV_ACL_ADMIN), else KV_ERR_NOPERM_CMD;
 *   - every key must match one of its patterns with the access needed (reads R, writes W,
 *     INCRBY and SET ... GET both), and on a key with a policy the user must be its owner or
 *     a reader (R) / writer (W), else KV_ERR_NOPERM_KEY. SCAN returns only the keys the user
 *     may read (Redis does not filter SCAN; teems does, so names of objects one may not read
 *     do not leak).
 *   - POLICY_SET: on a key with a policy only its owner or a +@admin user may change it; on a
 *     key without one, a user who may write the key creates it and must name itself owner
 *     (an admin may name anyone). POLICY_GET: owner, readers, writers and admins.
 * Unwrapped commands (the model ops, tests) are the system's own and are not checked. */
#define KV_FORMAT_AS 0x82 /* u8 KV_FORMAT_AS | key-encoded user name | an R command */
/* Reserved: the client lease commands (kv/lease_table.h, KV_LEASE_FORMAT), which
 * kv_apply_encoded dispatches to the lease table, bare or wrapped in KV_FORMAT_AS (the lease
 * name is then checked as a key: LEASE.INFO reads it, the others write it). Their results are
 * kv/lease_table.h's (KV_LEASE_RESULT_LEN bytes), or an R result with the KV_ERR_* status of a
 * refused permission check. */
#define KV_FORMAT_LEASE 0x83
#define KV_MAX_USER 128u /* bytes in a user name: printable ASCII, no space, no ',', not "-" */
/* The user of KV_FORMAT_AS for a connection that never authenticated: it acts as "default"
 * only while "default" is on and nopass when the command is applied (else KV_ERR_NOAUTH), so
 * a password given to "default" binds such connections from the commit on, on every replica,
 * whatever a lagging replica believed when it sent the command on. Not a valid user name. */
#define KV_USER_ANON "-"
#define KV_ACL_MAX_PASSWORDS 32u
#define KV_ACL_MAX_PATTERNS 64u
#define KV_ACL_MAX_MODIFIERS 65536u /* bytes of an encoded ACL SETUSER modifier list */
#define KV_MAX_POLICY 16384u	    /* bytes of an encoded policy */
#define KV_ACL_READ 1u
#define KV_ACL_WRITE 2u
#define KV_ACL_ADMIN 4u
#define KV_ACL_ALL 7u
#define KV_PASSWORD_HASH_LEN 32

/* ACL SETUSER modifiers, encoded one after the other in kv_cmd.value (R_ACL_SETUSER):
 * u8 kind | ADDPASS, DELPASS: 32-byte hash | CATS_ADD, CATS_DEL: u8 KV_ACL_* bits |
 * KEY: u8 access (1 R, 2 W, 3 both) | u16 length | pattern. */
enum kv_acl_mod {
	KV_ACL_ON = 1,
	KV_ACL_OFF,
	KV_ACL_NOPASS,
	KV_ACL_RESETPASS,
	KV_ACL_RESETKEYS,
	KV_ACL_RESET, /* off, resetpass, resetkeys, no category */
	KV_ACL_ADDPASS,
	KV_ACL_DELPASS,
	KV_ACL_CATS_ADD,
	KV_ACL_CATS_DEL,
	KV_ACL_KEY,
};

/* SHA-256 of a password, as stored and as AUTH sends it to the state machine (the log never
 * holds a password in clear). */
void kv_password_hash(const uint8_t *pass, size_t len, uint8_t out[KV_PASSWORD_HASH_LEN]);
/* True if name is a valid user name (1..KV_MAX_USER bytes of '!'..'~' except ',', and not
 * "-", which means "nobody" in policy lists and KV_USER_ANON in commands). */
bool kv_user_name_ok(const uint8_t *name, size_t len);

/* A key, or a key-value pair (MSET), or a value (MGET results: found says if present). */
struct kv_item {
	const uint8_t *key;
	uint16_t key_len;
	bool found;
	const uint8_t *value;
	uint32_t value_len;
};

/* A command. Decoded commands point into the decoder's input (borrowed). Fields not used by an
 * op are ignored. */
struct kv_cmd {
	enum kv_op op;
	const uint8_t *key; /* single-key ops */
	uint16_t key_len;
	uint64_t expected_version; /* CAS, R_VSET */
	const uint8_t *value;	   /* SET, CAS, R_SET, R_VSET */
	uint32_t value_len;
	uint64_t now_ms;       /* R ops */
	unsigned flags;	       /* R_SET: KV_SET_*; R_SCAN: KV_SCAN_* */
	uint64_t expire_at_ms; /* R_SET with KV_SET_EXPIRE */
	int64_t delta;	       /* R_INCRBY */
	/* R_DEL, R_EXISTS, R_MGET (keys) and R_MSET (pairs): n_items of them, either in items
	 * (the caller's array, to encode) or still encoded in list[0..list_len) (decoded) */
	uint32_t n_items;
	const struct kv_item *items;
	const uint8_t *list;
	size_t list_len;
	uint64_t cursor; /* R_SCAN */
	uint32_t count;	 /* R_SCAN: work hint, >= 1 */
	const uint8_t *pattern;
	uint32_t pattern_len; /* R_SCAN with KV_SCAN_MATCH */
	/* KV_FORMAT_AS: the user the command runs as (user_len 0 and user NULL: unwrapped) */
	const uint8_t *user;
	uint16_t user_len;
};
/* R_AUTH: key = user name, value = the password's hash (KV_PASSWORD_HASH_LEN bytes), flags
 * KV_AUTH_DEFAULT_FORM for Redis's one-argument AUTH (key "default").
 * R_ACL_SETUSER: key = name, value = the modifiers. R_ACL_DELUSER: items = names.
 * R_POLICY_SET: key, value = "owner\nreaders\nwriters" (comma lists, may be empty).
 * R_POLICY_GET: key. */
#define KV_AUTH_DEFAULT_FORM 1u

enum kv_status {
	KV_OK = 0,
	KV_CAS_FAILED = 1, /* model CAS; and for R ops: */
	KV_NOT_DONE = 1,   /* R_SET's NX/XX condition not met, R_VSET's version stale */
	KV_ERR_NOT_INTEGER = 2,
	KV_ERR_OVERFLOW = 3,
	KV_ERR_TOO_LARGE = 4, /* the result would exceed KV_MAX_RESULT (R_MGET, R_SCAN) */
	/* any R op run as a user (KV_FORMAT_AS): */
	KV_ERR_NOAUTH = 5,     /* the user does not exist or is off */
	KV_ERR_NOPERM_CMD = 6, /* the user lacks the op's category */
	KV_ERR_NOPERM_KEY = 7, /* a key outside its patterns, or its policy refuses */
	KV_ERR_WRONGPASS = 8,  /* R_AUTH */
	KV_ERR_TEXT = 9,       /* an error whose whole Redis text is the result's value */
};

/* A result. value points into the kv map (kv_apply: valid until the next change of that key)
 * or into the decoder's input (kv_result_decode), as does list. op is 0 for a model op's
 * result (the model result encoding) and the R op otherwise. */
struct kv_result {
	enum kv_op op;
	enum kv_status status;
	bool found;	  /* GET, R_GET; R_SET: the old value (with KV_SET_GET) */
	bool asked;	  /* R_SET: KV_SET_GET was given */
	uint64_t version; /* GET: current; SET, DEL: new; CAS: new if ok, else current */
	const uint8_t *value;
	uint32_t value_len;
	int64_t integer;     /* R_DEL, R_EXISTS: count; R_INCRBY: new value */
	uint64_t cursor;     /* R_SCAN: next, 0 when done */
	uint32_t n_items;    /* R_MGET (values), R_SCAN (keys), read with kv_result_item */
	const uint8_t *list; /* the items, encoded */
	size_t list_len;
	/* R_ACL_LIST (lines), R_ACL_GETUSER and R_POLICY_GET (owner, readers, writers; n_items
	 * 0: no such user or policy)
	 * use list and n_items as R_MGET does; KV_ERR_TEXT puts its text in value. */
};

/* Encoded size of a command, or 0 if it is invalid (bad op, flags or counts, key over
 * KV_MAX_KEY, value over KV_MAX_VALUE, pattern over KV_MAX_PATTERN, whole over
 * KV_MAX_COMMAND). */
size_t kv_cmd_size(const struct kv_cmd *c);
/* Encodes into buf[0..cap). Errors: TEEMS_EINVAL (invalid command), TEEMS_EFULL (cap too small;
 * *len is then the size needed). */
int kv_cmd_encode(const struct kv_cmd *c, uint8_t *buf, size_t cap, size_t *len);
/* Errors: TEEMS_ECORRUPT. out points into buf. */
int kv_cmd_decode(const uint8_t *buf, size_t len, struct kv_cmd *out);
/* True for the ops that may change the map (model SET, CAS, DEL and the (W) R ops). */
bool kv_op_writes(enum kv_op op);

/* Walks a command's items (R_DEL, R_EXISTS, R_MGET, R_MSET) or a result's (R_MGET, R_SCAN):
 * start with *pos = 0; each call fills *it and returns true, false after the last. */
bool kv_cmd_item(const struct kv_cmd *c, size_t *pos, struct kv_item *it);
bool kv_result_item(const struct kv_result *r, size_t *pos, struct kv_item *it);

size_t kv_result_size(const struct kv_result *r);
/* Errors: TEEMS_EINVAL, TEEMS_EFULL (as kv_cmd_encode). */
int kv_result_encode(const struct kv_result *r, uint8_t *buf, size_t cap, size_t *len);
/* Errors: TEEMS_ECORRUPT. */
int kv_result_decode(const uint8_t *buf, size_t len, struct kv_result *out);

/* Redis's glob (stringmatchlen, KEYS and SCAN MATCH): `*` any run, `?` any byte, `[...]` a set
 * (`^` first negates, `a-z` ranges, either order; `\` escapes inside), `\` escapes outside.
 * An unclosed `[` runs to the end of the pattern. Bytes compare unsigned. Linear memory, no
 * recursion, O(pattern * string) time. */
bool kv_glob_match(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen);

struct kv;

/* Errors: TEEMS_ENOMEM. */
int kv_new(struct kv **out);
void kv_free(struct kv *kv);

/* Applies one model op (GET, SET, CAS, DEL). *res's value (GET) points into the map until the
 * key next changes. The R ops go through kv_apply_encoded.
 * Errors: TEEMS_EINVAL (invalid command or an R op), TEEMS_ENOMEM (nothing changed). */
int kv_apply(struct kv *kv, const struct kv_cmd *cmd, struct kv_result *res);

/* Decodes and applies an encoded command (either family), and encodes its result into a
 * buffer that belongs to the caller (teems_free). A command that does not decode is not
 * applied: the result is then TEEMS_ECORRUPT and nothing changes (every replica makes the same
 * decision). Read-only ops never change the map. Errors: TEEMS_ECORRUPT, TEEMS_ENOMEM (nothing
 * changed: a multi-key write is all or nothing). */
int kv_apply_encoded(struct kv *kv, const uint8_t *cmd, size_t len, uint8_t **result,
		     size_t *result_len);

/* Entries (keys with a version: present, expired or deleted). */
size_t kv_count(const struct kv *kv);
/* The highest now_ms of the applied write commands. */
uint64_t kv_clock(const struct kv *kv);
/* Looks a key up at time `clock` without changing anything (res as for the model GET). */
void kv_get(const struct kv *kv, const uint8_t *key, size_t key_len, struct kv_result *res);

/* Serializes the whole map (the snapshot format above); *buf belongs to the caller
 * (teems_free). Errors: TEEMS_ENOMEM. */
int kv_snapshot(const struct kv *kv, uint8_t **buf, size_t *len);
/* Replaces the map's content with the snapshot's, all or nothing.
 * Errors: TEEMS_ECORRUPT (kv unchanged), TEEMS_ENOMEM (kv unchanged). */
int kv_restore(struct kv *kv, const uint8_t *buf, size_t len);

/* The engine's checks on its local state (replica.h): whether a connection that never
 * authenticated acts as "default" (default is on and nopass), and whether `user` (a name, or
 * KV_USER_ANON) may run commands of `category` (KV_ACL_*; 0: any existing user that is on).
 * kv_acl_check returns KV_OK, KV_ERR_NOAUTH or KV_ERR_NOPERM_CMD. */
bool kv_acl_default_open(const struct kv *kv);
enum kv_status kv_acl_check(const struct kv *kv, const char *user, unsigned category);
/* Number of users. */
size_t kv_user_count(const struct kv *kv);

/* True if both maps hold the same clock, keys, values, versions and expiries, users and
 * policies. */
bool kv_equal(const struct kv *a, const struct kv *b);

#endif
