/* The RESP command table (DESIGN.md section 9): names, arities, flags and key positions, the
 * argument checks with Redis's exact error texts, the translation of each key-value command
 * into ONE src/kv state-machine command (cmd_request) and the formatting of its result as
 * Redis's reply (cmd_response). Pure: no I/O, no clock (the caller passes now_ms); the only
 * allocation is cmd_request's output.
 *
 * Error texts are written without the leading "-" and trailing CRLF, ready for
 * resp_add_error(): "ERR wrong number of arguments for 'get' command". Buffers named `err` are
 * CMD_ERR_LEN bytes and owned by the caller.
 *
 * Arity is Redis's convention: counted with the command name, positive = exactly, negative =
 * at least |arity|. Key positions are Redis's (first, last, step); last < 0 counts from the
 * end (-1: the last argument). */
#ifndef TEEMS_NET_COMMANDS_H
#define TEEMS_NET_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"
#include "net/resp.h"

#define CMD_ERR_LEN 512

enum cmd_id {
	CMD_PING,
	CMD_HELLO,
	CMD_AUTH,
	CMD_QUIT,
	CMD_GET,
	CMD_SET,
	CMD_DEL,
	CMD_EXISTS,
	CMD_MGET,
	CMD_MSET,
	CMD_INCR,
	CMD_INCRBY,
	CMD_DECR,
	CMD_DECRBY,
	CMD_SCAN,
	CMD_VGET,
	CMD_VSET,
	CMD_LEASE_ACQUIRE,
	CMD_LEASE_RENEW,
	CMD_LEASE_RELEASE,
	CMD_LEASE_INFO,
	CMD_INFO,
	CMD_TEEMS_STATUS,
	CMD_TEEMS_RECOVER, /* TEEMS.RECOVER STATUS | AUTHORIZE ... (src/server/replica_recover.h) */
	/* Users and permissions (Redis 7's ACL, the subset of docs/OPERATIONS.md). ACL is a
	 * container: cmd_check returns the spec of its subcommand, named "acl|setuser" as Redis
	 * names it in errors; cmd_lookup never finds those by name. */
	CMD_ACL,
	CMD_ACL_SETUSER,
	CMD_ACL_DELUSER,
	CMD_ACL_LIST,
	CMD_ACL_WHOAMI,
	/* Per-key policies (issue 7 item 5; kv.h, "Users, permissions and policies"):
	 *   TEEMS.POLICY.SET key owner readers writers   -> +OK
	 *     readers, writers: comma lists of user names, "*" for every user, "-" for none
	 *   TEEMS.POLICY.GET key   -> [owner, readers, writers] (lists as given, "-" when
	 *                             empty), or null when the key has no policy */
	CMD_POLICY_SET,
	CMD_POLICY_GET,
	CMD_ACL_GETUSER, /* ACL GETUSER name: Redis 7's map (flags, passwords, commands, keys,
			  * channels "", selectors []), or null */
	CMD_COUNT_
};

enum cmd_flag {
	CMD_F_WRITE = 1u << 0,	/* changes replicated state: goes through the log (leader) */
	CMD_F_READ = 1u << 1,	/* reads keys: a linearizable read (lease, read-index or oread) */
	CMD_F_ADMIN = 1u << 2,	/* needs the admin permission */
	CMD_F_NOAUTH = 1u << 3, /* allowed before AUTH (as Redis: AUTH, HELLO, QUIT) */
	CMD_F_LOCAL = 1u << 4,	/* answered by the replica itself, no quorum */
};

struct cmd_spec {
	enum cmd_id id;
	const char *name; /* lower case, as Redis prints it in errors */
	int arity;
	unsigned flags;
	int first_key; /* 0: no keys */
	int last_key;
	int key_step;
};

/* Case-insensitive lookup; NULL if unknown. */
const struct cmd_spec *cmd_lookup(const uint8_t *name, size_t len);
/* The whole table (CMD_COUNT_ entries, indexed by enum cmd_id). */
const struct cmd_spec *cmd_table(void);

/* Looks argv[0] up and checks the arity. Returns the spec, or NULL with err filled:
 * "ERR unknown command 'foo', with args beginning with: 'a' 'b' " (Redis 7's text, args
 * truncated to 128 bytes in all) or "ERR wrong number of arguments for 'get' command".
 * For ACL: the subcommand's spec, or "ERR unknown subcommand 'foo'. Try ACL HELP.",
 * "ERR wrong number of arguments for 'acl|setuser' command".
 * argc must be at least 1. */
const struct cmd_spec *cmd_check(const struct resp_arg *argv, size_t argc, char *err);
/* cmd_lookup, then the subcommand of a container (ACL), without the arity checks; NULL if
 * unknown. For callers that only need the flags (the shell's session order). */
const struct cmd_spec *cmd_resolve(const struct resp_arg *argv, size_t argc);
/* The category (KV_ACL_READ, _WRITE, _ADMIN, or 0: every user may) a user needs to run a
 * command: CMD_F_ADMIN -> admin, else CMD_F_WRITE -> write, else CMD_F_READ -> read. */
unsigned cmd_category(const struct cmd_spec *spec);

/* Indices of the key arguments of a checked command, in order; returns how many (at most
 * max are stored). */
size_t cmd_keys(const struct cmd_spec *spec, size_t argc, size_t *idx, size_t max);

/* SET key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-s|PXAT unix-ms|KEEPTTL]. */
struct cmd_set_opts {
	bool nx, xx, get, keepttl;
	bool has_expire;
	bool absolute;	    /* EXAT, PXAT: expire_ms is a time, not a duration */
	uint64_t expire_ms; /* seconds converted to milliseconds */
};
/* Errors (return -1, err filled): "ERR syntax error" (unknown or conflicting option, missing
 * argument), "ERR value is not an integer or out of range",
 * "ERR invalid expire time in 'set' command". Returns 0 on success. */
int cmd_parse_set(const struct resp_arg *argv, size_t argc, struct cmd_set_opts *o, char *err);

/* HELLO [protover [AUTH username password] [SETNAME clientname]]. proto is 0 when absent. */
struct cmd_hello {
	int proto;
	const struct resp_arg *user, *pass, *name;
};
/* Errors: "ERR Protocol version is not an integer or out of range",
 * "NOPROTO unsupported protocol version", "ERR Syntax error in HELLO option 'auth'",
 * "ERR Syntax error in HELLO option '<opt>'". */
int cmd_parse_hello(const struct resp_arg *argv, size_t argc, struct cmd_hello *h, char *err);

/* AUTH [username] password: user is NULL for the one-argument form ("default" in Redis).
 * Error: "ERR syntax error" for more than two arguments. */
int cmd_parse_auth(const struct resp_arg *argv, size_t argc, const struct resp_arg **user,
		   const struct resp_arg **pass, char *err);

/* INCRBY's increment, VSET's version, lease TTLs: Redis's integer rule (no spaces, no '+', no
 * leading zeros). Error: "ERR value is not an integer or out of range". */
int cmd_parse_int(const struct resp_arg *a, long long *v, char *err);
int cmd_parse_u64(const struct resp_arg *a, uint64_t *v, char *err);

/* SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] (a repeated option: the last wins).
 * The cursor is read as Redis does (strtoul: sign, leading zeros, "" is 0). Errors:
 * "ERR invalid cursor", "ERR value is not an integer or out of range", "ERR syntax error". */
struct cmd_scan {
	uint64_t cursor;
	const struct resp_arg *match; /* NULL: every key */
	uint64_t count;		      /* default 10 */
	const struct resp_arg *type;  /* NULL: any; every key is a "string" */
};
int cmd_parse_scan(const struct resp_arg *argv, size_t argc, struct cmd_scan *s, char *err);

/* The older translation into the simulator's model ops (kv.h KV_GET..KV_DEL), several per
 * command and without Redis's options; kept for tests/fuzz/fuzz_resp.c. The engine uses
 * cmd_request / cmd_response below. Translates a checked command into the src/kv commands
 * that implement it, in order:
 *   GET k            -> KV_GET k                  (reply: bulk or null)
 *   VGET k           -> KV_GET k                  (reply: [value|null, version])
 *   SET k v          -> KV_SET k v                (plain SET only; see below)
 *   VSET k v ver     -> KV_CAS k ver v
 *   DEL k...         -> KV_DEL per key            (see below for the reply count)
 *   EXISTS k...      -> KV_GET per key
 *   MGET k...        -> KV_GET per key
 *   MSET k v...      -> KV_SET per pair
 * ops[i] point into argv. Returns the number of ops (<= max_ops), or -1 with err filled:
 * a key over KV_MAX_KEY or empty ("ERR key is too long" / "ERR empty key"), a value over
 * KV_MAX_VALUE ("ERR value is too large"), more ops than max_ops ("ERR too many keys"), and
 * for what the KV model cannot express yet ("ERR 'incr' is not supported yet" ...).
 * DEL and EXISTS replies count keys that existed: the caller needs a GET per key before the
 * DEL, in the same log batch, for Redis's count. */
int cmd_to_kv(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
	      struct kv_cmd *ops, size_t max_ops, char *err);

/* Encodes the reply to a command from the results of the ops cmd_to_kv gave (n of them, in
 * the same order):
 *   GET     bulk, or null
 *   VGET    [bulk or null, version]   (RESP3: the same two-element array)
 *   SET     +OK;  MSET +OK
 *   VSET    [1, new version] if the compare-and-set took effect, else [0, current version]:
 *           the loser learns the version to retry against without another round trip
 *   EXISTS  the number of keys found (a key given twice counts twice, as Redis)
 *   MGET    array of bulk or null
 * Returns 0, or -1 for a command without a KV reply (DEL needs the found counts of GETs
 * before it; see cmd_to_kv). Allocation failures are in out->err. */
int cmd_reply(const struct cmd_spec *spec, const struct kv_result *res, size_t n,
	      struct resp_out *out);

/* One checked RESP command (cmd_check) as ONE encoded state-machine command: the bytes the
 * engine proposes (spec->flags & CMD_F_WRITE) or runs on local state after a linearizable read
 * barrier (CMD_F_READ), with kv_apply_encoded; the whole command is one atomic op (MSET, DEL
 * of many keys). now_ms: the proposing (or, for a read, the serving) replica's clock in ms,
 * carried inside the command so that every replica applies the same thing: EX/PX deadlines
 * are now_ms + ttl, and a key whose deadline is <= now_ms is absent (kv.h, Expiry). EXAT and
 * PXAT are read on the same clock.
 * Commands: GET, SET [NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL], DEL, EXISTS, MGET, MSET, INCR,
 * INCRBY, DECR, DECRBY, SCAN cursor [MATCH p] [COUNT n] [TYPE t], VGET, VSET.
 * *out is teems_malloc'd; the caller frees it. Returns 0, or -1 with err holding the Redis
 * error text (no leading '-'): Redis's own ("ERR syntax error", "ERR invalid expire time in
 * 'set' command", "ERR value is not an integer or out of range", "ERR invalid cursor",
 * "ERR decrement would overflow"), teems's limits ("ERR key is too long",
 * "ERR value is too large", "ERR pattern is too long", "ERR command is too large" (over
 * KV_MAX_COMMAND), "ERR out of memory"), or "ERR '<name>' is not a key-value command" for the
 * other commands of the table (PING, LEASE.*, ...). *out is then NULL. */
int cmd_request(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		uint64_t now_ms, uint8_t **out, size_t *out_len, char *err);
/* cmd_request, run as `user` (NULL: unwrapped, unchecked; KV_USER_ANON: a connection that
 * never authenticated): the encoded command carries the user name (KV_FORMAT_AS) and the state
 * machine checks it when it applies or runs the command (kv.h, "Users, permissions and
 * policies"). Also makes the commands only a user has:
 *   AUTH [user] pass      -> KV_R_AUTH with SHA-256(pass) (never wrapped, whatever user is)
 *   ACL SETUSER name rule...  rules (case-insensitive): on off nopass resetpass reset >pass
 *                         <pass #sha256hex !sha256hex ~pattern %R~pattern %W~pattern
 *                         %RW~pattern allkeys resetkeys +@all -@all +@read -@read +@write
 *                         -@write +@admin -@admin allcommands nocommands; channel rules
 *                         (&pattern allchannels resetchannels) are accepted and ignored
 *   ACL DELUSER name...   ACL LIST   ACL GETUSER name   TEEMS.POLICY.SET / GET (above)
 * Errors besides cmd_request's, Redis 7's texts where Redis has them:
 *   "ERR Usernames can't contain spaces or null characters" (teems: a name is 1..128 bytes of
 *   '!'..'~' except ','), "ERR Error in ACL SETUSER modifier '<m>': Syntax error",
 *   "... Unknown command or category name in ACL" (an unknown category), "... teems grants
 *   categories only (@all, @read, @write, @admin)" (+get and such), "... The password hash
 *   must be exactly 64 characters and contain only lowercase hexadecimal characters",
 *   "ERR invalid owner '<x>'", "ERR invalid user list '<x>'". */
int cmd_request_as(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		   uint64_t now_ms, const char *user, uint8_t **out, size_t *out_len, char *err);

/* Appends to out (in out->proto: null is $-1 or _ as Redis sends it) the reply for a command's
 * encoded result, i.e. what kv_apply_encoded gave for the bytes cmd_request made from the same
 * spec: GET bulk|null; SET +OK, or null when NX/XX was not met, or with GET the old value|null;
 * DEL, EXISTS, INCR.. integer; MGET array of bulk|null; MSET +OK; SCAN [cursor as a bulk
 * string, [keys]]; VGET [bulk|null, version]; VSET [1, new version] or [0, current version].
 * Errors decided when applying are error replies and return 0: "ERR value is not an integer or
 * out of range", "ERR increment or decrement would overflow", "ERR reply is too large".
 * Returns -1 when the result does not decode or is not a result of spec's command (out then
 * holds an -ERR reply). */
int cmd_response(const struct cmd_spec *spec, const uint8_t *result, size_t len,
		 struct resp_out *out);
/* cmd_response also answers AUTH (+OK), ACL SETUSER (+OK), ACL DELUSER (count), ACL LIST
 * (array of "user <name> on|off [nopass] [#<sha256>...] [~p|%R~p|%W~p...] +@all|-@all
 * [+@read] [+@write] [+@admin]" lines), TEEMS.POLICY.SET (+OK), TEEMS.POLICY.GET, and the
 * permission errors of any command run as a user:
 *   "NOAUTH Authentication required."                       the user is gone or off
 *   "NOPERM this user has no permissions to run the '<name>' command"
 *   "NOPERM this user has no permissions to access one of the keys used as arguments"
 *   "WRONGPASS invalid username-password pair or user is disabled."
 *   and the state machine's own texts ("ERR The 'default' user cannot be removed", "ERR AUTH
 *   <password> called without any password configured for the default user. Are you sure
 *   your configuration is correct?", "NOPERM a new policy must name its creator as the
 *   owner", ...). (Redis 7.0.15's texts, checked against redis-server.) */

#endif
