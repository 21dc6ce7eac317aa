/* The RESP command table and argument checks (commands.h). Error texts are Redis 7's
 * (redis/src/server.c processCommand, t_string.c setCommand / parseExtendedStringArguments,
 * networking.c helloCommand). */
#include "net/commands.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "kv/lease_table.h"
#include "teems/err.h"

#define W CMD_F_WRITE
#define R CMD_F_READ
#define A CMD_F_ADMIN
#define NA CMD_F_NOAUTH
#define L CMD_F_LOCAL

/* LEASE.* (teems's own commands, DESIGN.md section 8; src/kv/lease_table.h):
 *   LEASE.ACQUIRE name ttl_ms  -> [token, ttl_ms], or -LEASEHELD naming the remaining time
 *   LEASE.RENEW name token     -> [token, ttl_ms], or -LEASESTALE
 *   LEASE.RELEASE name token   -> +OK, or -LEASESTALE
 *   LEASE.INFO name            -> [held, token, ttl_ms, remaining_ms], or null
 * A lease name is a key for permissions (key-prefix rules apply). */
static const struct cmd_spec table[CMD_COUNT_] = {
	[CMD_PING] = {CMD_PING, "ping", -1, L, 0, 0, 0},
	[CMD_HELLO] = {CMD_HELLO, "hello", -1, NA | L, 0, 0, 0},
	[CMD_AUTH] = {CMD_AUTH, "auth", -2, NA | L, 0, 0, 0},
	[CMD_QUIT] = {CMD_QUIT, "quit", -1, NA | L, 0, 0, 0},
	[CMD_GET] = {CMD_GET, "get", 2, R, 1, 1, 1},
	[CMD_SET] = {CMD_SET, "set", -3, W, 1, 1, 1},
	[CMD_DEL] = {CMD_DEL, "del", -2, W, 1, -1, 1},
	[CMD_EXISTS] = {CMD_EXISTS, "exists", -2, R, 1, -1, 1},
	[CMD_MGET] = {CMD_MGET, "mget", -2, R, 1, -1, 1},
	[CMD_MSET] = {CMD_MSET, "mset", -3, W, 1, -1, 2},
	[CMD_INCR] = {CMD_INCR, "incr", 2, W, 1, 1, 1},
	[CMD_INCRBY] = {CMD_INCRBY, "incrby", 3, W, 1, 1, 1},
	[CMD_DECR] = {CMD_DECR, "decr", 2, W, 1, 1, 1},
	[CMD_DECRBY] = {CMD_DECRBY, "decrby", 3, W, 1, 1, 1},
	[CMD_SCAN] = {CMD_SCAN, "scan", -2, R, 0, 0, 0},
	[CMD_VGET] = {CMD_VGET, "vget", 2, R, 1, 1, 1},
	[CMD_VSET] = {CMD_VSET, "vset", 4, W, 1, 1, 1},
	[CMD_LEASE_ACQUIRE] = {CMD_LEASE_ACQUIRE, "lease.acquire", 3, W, 1, 1, 1},
	[CMD_LEASE_RENEW] = {CMD_LEASE_RENEW, "lease.renew", 3, W, 1, 1, 1},
	[CMD_LEASE_RELEASE] = {CMD_LEASE_RELEASE, "lease.release", 3, W, 1, 1, 1},
	[CMD_LEASE_INFO] = {CMD_LEASE_INFO, "lease.info", 2, R, 1, 1, 1},
	[CMD_INFO] = {CMD_INFO, "info", -1, L, 0, 0, 0},
	[CMD_TEEMS_STATUS] = {CMD_TEEMS_STATUS, "teems.status", 1, L | A, 0, 0, 0},
	[CMD_TEEMS_RECOVER] = {CMD_TEEMS_RECOVER, "teems.recover", -2, L | A, 0, 0, 0},
	[CMD_ACL] = {CMD_ACL, "acl", -2, 0, 0, 0, 0},
	[CMD_ACL_SETUSER] = {CMD_ACL_SETUSER, "acl|setuser", -3, W | A, 0, 0, 0},
	[CMD_ACL_DELUSER] = {CMD_ACL_DELUSER, "acl|deluser", -3, W | A, 0, 0, 0},
	[CMD_ACL_LIST] = {CMD_ACL_LIST, "acl|list", 2, R | A, 0, 0, 0},
	[CMD_ACL_WHOAMI] = {CMD_ACL_WHOAMI, "acl|whoami", 2, L, 0, 0, 0},
	[CMD_POLICY_SET] = {CMD_POLICY_SET, "teems.policy.set", 5, W, 1, 1, 1},
	[CMD_POLICY_GET] = {CMD_POLICY_GET, "teems.policy.get", 2, R, 1, 1, 1},
	[CMD_ACL_GETUSER] = {CMD_ACL_GETUSER, "acl|getuser", 3, R | A, 0, 0, 0},
};

const struct cmd_spec *cmd_table(void)
{
	return table;
}

static bool arg_is(const struct resp_arg *a, const char *s)
{
	size_t n = strlen(s);

	return a->len == n && strncasecmp((const char *)a->p, s, n) == 0;
}

const struct cmd_spec *cmd_lookup(const uint8_t *name, size_t len)
{
	struct resp_arg a = {name, len, 0};

	for (size_t i = 0; i < CMD_COUNT_; i++)
		if (strchr(table[i].name, '|') == NULL && arg_is(&a, table[i].name))
			return &table[i];
	return NULL;
}

/* The subcommand argv[1] of container `parent` ("acl|<argv[1]>"), or NULL. */
static const struct cmd_spec *subcommand(const struct cmd_spec *parent, const struct resp_arg *sub)
{
	size_t plen = strlen(parent->name);

	for (size_t i = 0; i < CMD_COUNT_; i++) {
		const char *n = table[i].name;

		if (strncmp(n, parent->name, plen) == 0 && n[plen] == '|' &&
		    strlen(n + plen + 1) == sub->len &&
		    strncasecmp(n + plen + 1, (const char *)sub->p, sub->len) == 0)
			return &table[i];
	}
	return NULL;
}

const struct cmd_spec *cmd_resolve(const struct resp_arg *argv, size_t argc)
{
	const struct cmd_spec *s = cmd_lookup(argv[0].p, argv[0].len);

	if (s != NULL && s->id == CMD_ACL)
		s = argc >= 2 ? subcommand(s, &argv[1]) : NULL;
	return s;
}

unsigned cmd_category(const struct cmd_spec *spec)
{
	if (spec->flags & CMD_F_ADMIN)
		return KV_ACL_ADMIN;
	if (spec->flags & CMD_F_WRITE)
		return KV_ACL_WRITE;
	if (spec->flags & CMD_F_READ)
		return KV_ACL_READ;
	return 0;
}

/* Appends "%.*s" to err at *pos, replacing bytes Redis would not print (it sanitizes error
 * replies to one printable line) by spaces. */
static void append(char *err, size_t *pos, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && *pos + 1 < CMD_ERR_LEN; i++)
		err[(*pos)++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : ' ';
	err[*pos] = '\0';
}

const struct cmd_spec *cmd_check(const struct resp_arg *argv, size_t argc, char *err)
{
	const struct cmd_spec *s = cmd_lookup(argv[0].p, argv[0].len);
	size_t pos = 0;

	if (s == NULL) {
		size_t args = 0; /* length of the quoted-args part, capped at 128 as Redis does */

		append(err, &pos, (const uint8_t *)"ERR unknown command '", 21);
		append(err, &pos, argv[0].p, argv[0].len < 128 ? argv[0].len : 128);
		append(err, &pos, (const uint8_t *)"', with args beginning with: ", 29);
		for (size_t i = 1; i < argc && args < 128; i++) {
			size_t n = argv[i].len < 128 - args ? argv[i].len : 128 - args;

			append(err, &pos, (const uint8_t *)"'", 1);
			append(err, &pos, argv[i].p, n);
			append(err, &pos, (const uint8_t *)"' ", 2);
			args += n + 3;
		}
		return NULL;
	}
	if ((s->arity > 0 && argc != (size_t)s->arity) ||
	    (s->arity < 0 && argc < (size_t)-s->arity)) {
		snprintf(err, CMD_ERR_LEN, "ERR wrong number of arguments for '%s' command",
			 s->name);
		return NULL;
	}
	if (s->id == CMD_MSET && argc % 2 == 0) {
		snprintf(err, CMD_ERR_LEN, "ERR wrong number of arguments for 'mset' command");
		return NULL;
	}
	if (s->id == CMD_ACL) {
		const struct cmd_spec *sub = subcommand(s, &argv[1]);

		if (sub == NULL) {
			append(err, &pos, (const uint8_t *)"ERR unknown subcommand '", 24);
			append(err, &pos, argv[1].p, argv[1].len < 128 ? argv[1].len : 128);
			append(err, &pos, (const uint8_t *)"'. Try ACL HELP.", 16);
			return NULL;
		}
		if ((sub->arity > 0 && argc != (size_t)sub->arity) ||
		    (sub->arity < 0 && argc < (size_t)-sub->arity)) {
			snprintf(err, CMD_ERR_LEN, "ERR wrong number of arguments for '%s' command",
				 sub->name);
			return NULL;
		}
		return sub;
	}
	return s;
}

size_t cmd_keys(const struct cmd_spec *spec, size_t argc, size_t *idx, size_t max)
{
	size_t n = 0, last;

	if (spec->first_key <= 0 || (size_t)spec->first_key >= argc)
		return 0;
	last = spec->last_key < 0 ? argc - (size_t)(-spec->last_key) : (size_t)spec->last_key;
	for (size_t i = (size_t)spec->first_key; i <= last && i < argc;
	     i += (size_t)spec->key_step) {
		if (n < max)
			idx[n] = i;
		n++;
	}
	return n < max ? n : max;
}

static int fail(char *err, const char *msg)
{
	snprintf(err, CMD_ERR_LEN, "%s", msg);
	return -1;
}

/* Redis's string2ll on a view. */
static bool view_ll(const struct resp_arg *a, long long *out)
{
	char tmp[24];
	size_t i = 0;
	bool neg = false;
	unsigned long long v = 0;

	if (a->len == 0 || a->len > 20)
		return false;
	memcpy(tmp, a->p, a->len);
	tmp[a->len] = '\0';
	if (a->len == 1 && tmp[0] == '0') {
		*out = 0;
		return true;
	}
	if (tmp[0] == '-') {
		neg = true;
		i = 1;
	}
	if (tmp[i] < '1' || tmp[i] > '9')
		return false;
	for (; i < a->len; i++) {
		if (tmp[i] < '0' || tmp[i] > '9')
			return false;
		if (v > (ULLONG_MAX - (unsigned)(tmp[i] - '0')) / 10)
			return false;
		v = v * 10 + (unsigned)(tmp[i] - '0');
	}
	if (neg ? v > (unsigned long long)LLONG_MAX + 1 : v > (unsigned long long)LLONG_MAX)
		return false;
	*out = neg ? (v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v)
		   : (long long)v;
	return true;
}

int cmd_parse_int(const struct resp_arg *a, long long *v, char *err)
{
	if (!view_ll(a, v))
		return fail(err, "ERR value is not an integer or out of range");
	return 0;
}

int cmd_parse_u64(const struct resp_arg *a, uint64_t *v, char *err)
{
	uint64_t x = 0;

	if (a->len == 0 || a->len > 20 || (a->len > 1 && a->p[0] == '0'))
		return fail(err, "ERR value is not an integer or out of range");
	for (size_t i = 0; i < a->len; i++) {
		if (a->p[i] < '0' || a->p[i] > '9' || x > (UINT64_MAX - (a->p[i] - '0')) / 10)
			return fail(err, "ERR value is not an integer or out of range");
		x = x * 10 + (uint64_t)(a->p[i] - '0');
	}
	*v = x;
	return 0;
}

int cmd_parse_set(const struct resp_arg *argv, size_t argc, struct cmd_set_opts *o, char *err)
{
	const struct resp_arg *expire = NULL;
	bool seconds = false;
	int expire_kind = 0;
	long long v;

	memset(o, 0, sizeof(*o));
	/* As Redis (t_string.c parseExtendedStringArguments): an option may repeat (the last
	 * expiry wins) but not meet its opposite. */
	for (size_t i = 3; i < argc; i++) {
		const struct resp_arg *a = &argv[i];
		bool has_next = i + 1 < argc;
		int kind = arg_is(a, "ex")     ? 1
			   : arg_is(a, "px")   ? 2
			   : arg_is(a, "exat") ? 3
			   : arg_is(a, "pxat") ? 4
					       : 0;

		if (arg_is(a, "nx") && !o->xx) {
			o->nx = true;
		} else if (arg_is(a, "xx") && !o->nx) {
			o->xx = true;
		} else if (arg_is(a, "get")) {
			o->get = true;
		} else if (arg_is(a, "keepttl") && !o->has_expire) {
			o->keepttl = true;
		} else if (kind != 0 && !o->keepttl && (expire_kind == 0 || expire_kind == kind) &&
			   has_next) {
			expire_kind = kind;
			o->has_expire = true;
			o->absolute = kind >= 3;
			seconds = kind == 1 || kind == 3;
			expire = &argv[++i];
		} else {
			return fail(err, "ERR syntax error");
		}
	}
	if (expire == NULL)
		return 0;
	/* as Redis: the value is read once every option is known to be well-formed */
	if (cmd_parse_int(expire, &v, err) != 0)
		return -1;
	if (v <= 0 || (seconds && v > LLONG_MAX / 1000))
		return fail(err, "ERR invalid expire time in 'set' command");
	o->expire_ms = (uint64_t)v * (seconds ? 1000u : 1u);
	return 0;
}

int cmd_parse_hello(const struct resp_arg *argv, size_t argc, struct cmd_hello *h, char *err)
{
	size_t i = 2;

	memset(h, 0, sizeof(*h));
	if (argc < 2)
		return 0;
	{
		long long v;

		if (!view_ll(&argv[1], &v) || v < INT_MIN || v > INT_MAX)
			return fail(err, "ERR Protocol version is not an integer or out of range");
		if (v != 2 && v != 3)
			return fail(err, "NOPROTO unsupported protocol version");
		h->proto = (int)v;
	}
	for (; i < argc; i++) {
		size_t more = argc - i - 1;

		if (arg_is(&argv[i], "auth") && more >= 2) {
			h->user = &argv[i + 1];
			h->pass = &argv[i + 2];
			i += 2;
		} else if (arg_is(&argv[i], "setname") && more >= 1) {
			h->name = &argv[i + 1];
			i += 1;
		} else {
			size_t pos;

			snprintf(err, CMD_ERR_LEN, "ERR Syntax error in HELLO option '");
			pos = strlen(err);
			append(err, &pos, argv[i].p, argv[i].len < 128 ? argv[i].len : 128);
			append(err, &pos, (const uint8_t *)"'", 1);
			return -1;
		}
	}
	return 0;
}

int cmd_parse_auth(const struct resp_arg *argv, size_t argc, const struct resp_arg **user,
		   const struct resp_arg **pass, char *err)
{
	if (argc > 3)
		return fail(err, "ERR syntax error");
	*user = argc == 3 ? &argv[1] : NULL;
	*pass = &argv[argc - 1];
	return 0;
}

/* Redis parses the cursor with strtoul: an optional sign (a '-' wraps around), any number of
 * leading zeros, no spaces, nothing after the digits; "" is 0; out of range is an error. */
static bool parse_cursor(const struct resp_arg *a, uint64_t *out)
{
	size_t i = 0;
	bool neg = false, digits = false;
	uint64_t v = 0;

	if (a->len > 0 && (a->p[0] == '+' || a->p[0] == '-')) {
		neg = a->p[0] == '-';
		i = 1;
	}
	for (; i < a->len; i++) {
		unsigned d = (unsigned)a->p[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
		digits = true;
	}
	if (!digits && a->len > 0)
		return false;
	*out = neg ? 0 - v : v;
	return true;
}

int cmd_parse_scan(const struct resp_arg *argv, size_t argc, struct cmd_scan *s, char *err)
{
	memset(s, 0, sizeof(*s));
	s->count = 10;
	if (!parse_cursor(&argv[1], &s->cursor))
		return fail(err, "ERR invalid cursor");
	for (size_t i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			return fail(err, "ERR syntax error");
		if (arg_is(&argv[i], "match")) {
			s->match = &argv[++i];
		} else if (arg_is(&argv[i], "type")) {
			s->type = &argv[++i];
		} else if (arg_is(&argv[i], "count")) {
			long long v;

			if (cmd_parse_int(&argv[++i], &v, err) != 0)
				return -1;
			if (v < 1)
				return fail(err, "ERR syntax error");
			s->count = (uint64_t)v;
		} else {
			return fail(err, "ERR syntax error");
		}
	}
	return 0;
}

static int key_op(enum kv_op op, const struct resp_arg *k, const struct resp_arg *v,
		  uint64_t expected, struct kv_cmd *out, char *err)
{
	if (k->len == 0)
		return fail(err, "ERR empty key");
	if (k->len > KV_MAX_KEY)
		return fail(err, "ERR key is too long");
	if (v != NULL && v->len > KV_MAX_VALUE)
		return fail(err, "ERR value is too large");
	memset(out, 0, sizeof(*out));
	out->op = op;
	out->key = k->p;
	out->key_len = (uint16_t)k->len;
	out->expected_version = expected;
	if (v != NULL) {
		out->value = v->p;
		out->value_len = (uint32_t)v->len;
	}
	return 0;
}

int cmd_to_kv(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
	      struct kv_cmd *ops, size_t max_ops, char *err)
{
	size_t n = 0;

	switch (spec->id) {
	case CMD_GET:
	case CMD_VGET:
		if (max_ops < 1)
			return fail(err, "ERR too many keys");
		return key_op(KV_GET, &argv[1], NULL, 0, &ops[0], err) ? -1 : 1;
	case CMD_SET: {
		struct cmd_set_opts o;

		if (cmd_parse_set(argv, argc, &o, err) != 0)
			return -1;
		if (o.nx || o.xx || o.get || o.keepttl || o.has_expire)
			return fail(err, "ERR SET options NX, XX, GET, EX, PX and KEEPTTL are not "
					 "supported yet");
		if (max_ops < 1)
			return fail(err, "ERR too many keys");
		return key_op(KV_SET, &argv[1], &argv[2], 0, &ops[0], err) ? -1 : 1;
	}
	case CMD_VSET: {
		uint64_t ver;

		if (cmd_parse_u64(&argv[3], &ver, err) != 0)
			return -1;
		if (max_ops < 1)
			return fail(err, "ERR too many keys");
		return key_op(KV_CAS, &argv[1], &argv[2], ver, &ops[0], err) ? -1 : 1;
	}
	case CMD_DEL:
	case CMD_EXISTS:
	case CMD_MGET:
		for (size_t i = 1; i < argc; i++, n++) {
			if (n >= max_ops)
				return fail(err, "ERR too many keys");
			if (key_op(spec->id == CMD_DEL ? KV_DEL : KV_GET, &argv[i], NULL, 0,
				   &ops[n], err))
				return -1;
		}
		return (int)n;
	case CMD_MSET:
		for (size_t i = 1; i + 1 < argc; i += 2, n++) {
			if (n >= max_ops)
				return fail(err, "ERR too many keys");
			if (key_op(KV_SET, &argv[i], &argv[i + 1], 0, &ops[n], err))
				return -1;
		}
		return (int)n;
	default:
		snprintf(err, CMD_ERR_LEN, "ERR '%s' is not supported yet", spec->name);
		return -1;
	}
}

static void reply_value(const struct kv_result *r, struct resp_out *out)
{
	if (r->found)
		resp_add_bulk(out, r->value, r->value_len);
	else
		resp_add_null(out);
}

int cmd_reply(const struct cmd_spec *spec, const struct kv_result *res, size_t n,
	      struct resp_out *out)
{
	long long found = 0;

	switch (spec->id) {
	case CMD_GET:
		if (n != 1)
			return -1;
		reply_value(&res[0], out);
		return 0;
	case CMD_VGET:
		if (n != 1 || res[0].version > (uint64_t)LLONG_MAX)
			return -1;
		resp_add_array(out, 2);
		reply_value(&res[0], out);
		resp_add_int(out, (long long)res[0].version);
		return 0;
	case CMD_SET:
	case CMD_MSET:
		resp_add_simple(out, "OK");
		return 0;
	case CMD_VSET:
		if (n != 1 || res[0].version > (uint64_t)LLONG_MAX)
			return -1;
		resp_add_array(out, 2);
		resp_add_int(out, res[0].status == KV_OK ? 1 : 0);
		resp_add_int(out, (long long)res[0].version);
		return 0;
	case CMD_EXISTS:
		for (size_t i = 0; i < n; i++)
			found += res[i].found ? 1 : 0;
		resp_add_int(out, found);
		return 0;
	case CMD_MGET:
		resp_add_array(out, n);
		for (size_t i = 0; i < n; i++)
			reply_value(&res[i], out);
		return 0;
	default:
		return -1;
	}
}

/* ---- one RESP command as one state-machine command ---- */

static int check_key(const struct resp_arg *k, char *err)
{
	if (k->len > KV_MAX_KEY)
		return fail(err, "ERR key is too long");
	return 0;
}

static int check_value(const struct resp_arg *v, char *err)
{
	if (v->len > KV_MAX_VALUE)
		return fail(err, "ERR value is too large");
	return 0;
}

/* Keys (every one of argv[1..]) or pairs (MSET) into a new items array. */
static int take_items(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		      struct kv_cmd *c, struct kv_item **items, char *err)
{
	size_t step = spec->id == CMD_MSET ? 2 : 1, n = (argc - 1) / step;
	struct kv_item *it;

	if (n == 0 || n > UINT32_MAX)
		return fail(err, "ERR too many keys");
	it = teems_calloc(n, sizeof(*it));
	if (it == NULL)
		return fail(err, "ERR out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct resp_arg *k = &argv[1 + i * step];

		if (check_key(k, err) != 0 ||
		    (step == 2 && check_value(&argv[2 + i * 2], err) != 0)) {
			teems_free(it);
			return -1;
		}
		it[i].key = k->p;
		it[i].key_len = (uint16_t)k->len;
		if (step == 2) {
			it[i].value = argv[2 + i * 2].p;
			it[i].value_len = (uint32_t)argv[2 + i * 2].len;
		}
	}
	c->items = it;
	c->n_items = (uint32_t)n;
	*items = it;
	return 0;
}

static int request_set(const struct resp_arg *argv, size_t argc, uint64_t now_ms, struct kv_cmd *c,
		       char *err)
{
	struct cmd_set_opts o;

	if (cmd_parse_set(argv, argc, &o, err) != 0)
		return -1;
	c->op = KV_R_SET;
	c->flags = (o.nx ? KV_SET_NX : 0) | (o.xx ? KV_SET_XX : 0) | (o.get ? KV_SET_GET : 0) |
		   (o.keepttl ? KV_SET_KEEPTTL : 0);
	if (o.has_expire) {
		/* Redis: a deadline past LLONG_MAX ms is an invalid expire time */
		if (!o.absolute &&
		    (now_ms > (uint64_t)LLONG_MAX || o.expire_ms > (uint64_t)LLONG_MAX - now_ms))
			return fail(err, "ERR invalid expire time in 'set' command");
		c->flags |= KV_SET_EXPIRE;
		c->expire_at_ms = o.absolute ? o.expire_ms : now_ms + o.expire_ms;
	}
	if (check_key(&argv[1], err) != 0 || check_value(&argv[2], err) != 0)
		return -1;
	c->key = argv[1].p;
	c->key_len = (uint16_t)argv[1].len;
	c->value = argv[2].p;
	c->value_len = (uint32_t)argv[2].len;
	return 0;
}

static int request_incr(const struct cmd_spec *spec, const struct resp_arg *argv, struct kv_cmd *c,
			char *err)
{
	long long by = 1;

	if (spec->id == CMD_INCRBY || spec->id == CMD_DECRBY) {
		if (cmd_parse_int(&argv[2], &by, err) != 0)
			return -1;
		if (spec->id == CMD_DECRBY && by == LLONG_MIN)
			return fail(err, "ERR decrement would overflow");
	}
	if (check_key(&argv[1], err) != 0)
		return -1;
	c->op = KV_R_INCRBY;
	c->delta = spec->id == CMD_DECR || spec->id == CMD_DECRBY ? -by : by;
	c->key = argv[1].p;
	c->key_len = (uint16_t)argv[1].len;
	return 0;
}

static int request_scan(const struct resp_arg *argv, size_t argc, struct kv_cmd *c, char *err)
{
	struct cmd_scan s;

	if (cmd_parse_scan(argv, argc, &s, err) != 0)
		return -1;
	c->op = KV_R_SCAN;
	c->cursor = s.cursor;
	c->count = s.count > UINT32_MAX ? UINT32_MAX : (uint32_t)s.count; /* a hint anyway */
	if (s.match != NULL) {
		if (s.match->len > KV_MAX_PATTERN)
			return fail(err, "ERR pattern is too long");
		c->flags |= KV_SCAN_MATCH;
		c->pattern = s.match->p;
		c->pattern_len = (uint32_t)s.match->len;
	}
	if (s.type != NULL && !arg_is(s.type, "string"))
		c->flags |= KV_SCAN_NOTHING; /* Redis filters by the type's name: none match */
	return 0;
}

int cmd_request(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		uint64_t now_ms, uint8_t **out, size_t *out_len, char *err)
{
	return cmd_request_as(spec, argv, argc, now_ms, NULL, out, out_len, err);
}

/* ---- users and policies ---- */

static bool name_ok(const struct resp_arg *a)
{
	return kv_user_name_ok(a->p, a->len);
}

/* The modifier text in an error, Redis's way: "ERR Error in ACL SETUSER modifier '%s': %s". */
static int mod_fail(const struct resp_arg *m, const char *why, char *err)
{
	size_t pos;

	snprintf(err, CMD_ERR_LEN, "ERR Error in ACL SETUSER modifier '");
	pos = strlen(err);
	append(err, &pos, m->p, m->len < 128 ? m->len : 128);
	append(err, &pos, (const uint8_t *)"': ", 3);
	append(err, &pos, (const uint8_t *)why, strlen(why));
	return -1;
}

/* A growable byte buffer for the modifier list (allocation failure sticks). */
struct mbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void mb_add(struct mbuf *b, const void *src, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		uint8_t *np;

		while (cap - b->len < n)
			cap *= 2;
		np = teems_realloc(b->p, cap);
		if (np == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void mb_u8(struct mbuf *b, unsigned v)
{
	uint8_t x = (uint8_t)v;

	mb_add(b, &x, 1);
}

static bool hex_hash(const uint8_t *p, size_t len, uint8_t out[KV_PASSWORD_HASH_LEN])
{
	if (len != 2 * KV_PASSWORD_HASH_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		int d = p[i] >= '0' && p[i] <= '9'   ? p[i] - '0'
			: p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10
						     : -1;

		if (d < 0)
			return false;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(d << 4);
		else
			out[i / 2] |= (uint8_t)d;
	}
	return true;
}

/* One ACL SETUSER modifier into b. */
static int setuser_mod(const struct resp_arg *m, struct mbuf *b, char *err)
{
	static const struct {
		const char *word;
		enum kv_acl_mod kind;
		unsigned cats;
	} words[] = {
		{"on", KV_ACL_ON, 0},
		{"off", KV_ACL_OFF, 0},
		{"nopass", KV_ACL_NOPASS, 0},
		{"resetpass", KV_ACL_RESETPASS, 0},
		{"resetkeys", KV_ACL_RESETKEYS, 0},
		{"reset", KV_ACL_RESET, 0},
		{"allcommands", KV_ACL_CATS_ADD, KV_ACL_ALL},
		{"nocommands", KV_ACL_CATS_DEL, KV_ACL_ALL},
		{"+@all", KV_ACL_CATS_ADD, KV_ACL_ALL},
		{"-@all", KV_ACL_CATS_DEL, KV_ACL_ALL},
		{"+@read", KV_ACL_CATS_ADD, KV_ACL_READ},
		{"-@read", KV_ACL_CATS_DEL, KV_ACL_READ},
		{"+@write", KV_ACL_CATS_ADD, KV_ACL_WRITE},
		{"-@write", KV_ACL_CATS_DEL, KV_ACL_WRITE},
		{"+@admin", KV_ACL_CATS_ADD, KV_ACL_ADMIN},
		{"-@admin", KV_ACL_CATS_DEL, KV_ACL_ADMIN},
	};
	uint8_t h[KV_PASSWORD_HASH_LEN];
	unsigned access = 0;
	size_t skip = 0;

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (arg_is(m, words[i].word)) {
			mb_u8(b, words[i].kind);
			if (words[i].kind == KV_ACL_CATS_ADD || words[i].kind == KV_ACL_CATS_DEL)
				mb_u8(b, words[i].cats);
			return 0;
		}
	}
	/* channels: teems has no pub/sub, so these change nothing */
	if (arg_is(m, "allchannels") || arg_is(m, "resetchannels") || (m->len && m->p[0] == '&'))
		return 0;
	if (arg_is(m, "allkeys")) {
		mb_u8(b, KV_ACL_KEY);
		mb_u8(b, 3);
		mb_add(b, "\x01\x00*", 3);
		return 0;
	}
	if (m->len >= 1 && (m->p[0] == '>' || m->p[0] == '<')) {
		kv_password_hash(m->p + 1, m->len - 1, h);
		mb_u8(b, m->p[0] == '>' ? KV_ACL_ADDPASS : KV_ACL_DELPASS);
		mb_add(b, h, sizeof(h));
		return 0;
	}
	if (m->len >= 1 && (m->p[0] == '#' || m->p[0] == '!')) {
		if (!hex_hash(m->p + 1, m->len - 1, h))
			return mod_fail(m,
					"The password hash must be exactly 64 characters and "
					"contain only lowercase hexadecimal characters",
					err);
		mb_u8(b, m->p[0] == '#' ? KV_ACL_ADDPASS : KV_ACL_DELPASS);
		mb_add(b, h, sizeof(h));
		return 0;
	}
	if (m->len >= 1 && m->p[0] == '~') {
		access = 3;
		skip = 1;
	} else if (m->len >= 1 && m->p[0] == '%') {
		size_t i = 1;

		for (; i < m->len && m->p[i] != '~'; i++) {
			if (m->p[i] == 'R' || m->p[i] == 'r')
				access |= 1;
			else if (m->p[i] == 'W' || m->p[i] == 'w')
				access |= 2;
			else
				return mod_fail(m, "Syntax error", err);
		}
		if (i == m->len || access == 0)
			return mod_fail(m, "Syntax error", err);
		skip = i + 1;
	}
	if (access != 0) {
		uint8_t l[2];

		if (m->len - skip > KV_MAX_PATTERN)
			return mod_fail(m, "pattern is too long", err);
		mb_u8(b, KV_ACL_KEY);
		mb_u8(b, access);
		l[0] = (uint8_t)(m->len - skip);
		l[1] = (uint8_t)((m->len - skip) >> 8);
		mb_add(b, l, 2);
		mb_add(b, m->p + skip, m->len - skip);
		return 0;
	}
	if (m->len >= 2 && m->p[0] == '+' && m->p[1] == '@')
		return mod_fail(m, "Unknown command or category name in ACL", err);
	if (m->len >= 2 && m->p[0] == '-' && m->p[1] == '@')
		return mod_fail(m, "Unknown command or category name in ACL", err);
	if (m->len >= 1 && (m->p[0] == '+' || m->p[0] == '-'))
		return mod_fail(m, "teems grants categories only (@all, @read, @write, @admin)",
				err);
	return mod_fail(m, "Syntax error", err);
}

/* "-" is the empty list; otherwise names or "*", comma-separated. */
static bool policy_list(const struct resp_arg *a, struct mbuf *b)
{
	size_t start = 0;

	if (a->len == 1 && a->p[0] == '-')
		return true;
	if (a->len == 0)
		return false;
	for (size_t i = 0; i <= a->len; i++) {
		if (i == a->len || a->p[i] == ',') {
			if (!(i - start == 1 && a->p[start] == '*') &&
			    !kv_user_name_ok(a->p + start, i - start))
				return false;
			start = i + 1;
		}
	}
	mb_add(b, a->p, a->len);
	return true;
}

static int quoted_fail(char *err, const char *what, const struct resp_arg *a)
{
	size_t pos;

	snprintf(err, CMD_ERR_LEN, "ERR invalid %s '", what);
	pos = strlen(err);
	append(err, &pos, a->p, a->len < 128 ? a->len : 128);
	append(err, &pos, (const uint8_t *)"'", 1);
	return -1;
}

/* The commands of users and policies into c; *blob (the value c points to) is the caller's
 * to free. Returns 1 when spec is not one of them. */
static int request_acl(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		       struct kv_cmd *c, struct mbuf *blob, uint8_t hash[KV_PASSWORD_HASH_LEN],
		       char *err)
{
	switch (spec->id) {
	case CMD_AUTH: {
		const struct resp_arg *user, *pass;

		if (cmd_parse_auth(argv, argc, &user, &pass, err) != 0)
			return -1;
		c->op = KV_R_AUTH;
		if (user == NULL) {
			c->flags = KV_AUTH_DEFAULT_FORM;
			c->key = (const uint8_t *)"default";
			c->key_len = 7;
		} else {
			if (check_key(user, err) != 0)
				return -1;
			c->key = user->p;
			c->key_len = (uint16_t)user->len;
		}
		kv_password_hash(pass->p, pass->len, hash);
		c->value = hash;
		c->value_len = KV_PASSWORD_HASH_LEN;
		c->user = NULL; /* whoever asks: AUTH is how one becomes someone */
		c->user_len = 0;
		return 0;
	}
	case CMD_ACL_SETUSER:
		if (!name_ok(&argv[2]))
			return fail(err, "ERR Usernames can't contain spaces or null characters");
		for (size_t i = 3; i < argc; i++)
			if (setuser_mod(&argv[i], blob, err) != 0)
				return -1;
		if (blob->oom)
			return fail(err, "ERR out of memory");
		if (blob->len > KV_ACL_MAX_MODIFIERS)
			return fail(err, "ERR command is too large");
		c->op = KV_R_ACL_SETUSER;
		c->key = argv[2].p;
		c->key_len = (uint16_t)argv[2].len;
		c->value = blob->p;
		c->value_len = (uint32_t)blob->len;
		return 0;
	case CMD_ACL_LIST:
		c->op = KV_R_ACL_LIST;
		return 0;
	case CMD_ACL_GETUSER:
		if (check_key(&argv[2], err) != 0)
			return -1;
		c->op = KV_R_ACL_GETUSER;
		c->key = argv[2].p;
		c->key_len = (uint16_t)argv[2].len;
		return 0;
	case CMD_POLICY_SET:
		if (check_key(&argv[1], err) != 0)
			return -1;
		if (!name_ok(&argv[2]))
			return quoted_fail(err, "owner", &argv[2]);
		mb_add(blob, argv[2].p, argv[2].len);
		mb_add(blob, "\n", 1);
		if (!policy_list(&argv[3], blob))
			return quoted_fail(err, "user list", &argv[3]);
		mb_add(blob, "\n", 1);
		if (!policy_list(&argv[4], blob))
			return quoted_fail(err, "user list", &argv[4]);
		if (blob->oom)
			return fail(err, "ERR out of memory");
		if (blob->len > KV_MAX_POLICY)
			return fail(err, "ERR policy is too large");
		c->op = KV_R_POLICY_SET;
		c->key = argv[1].p;
		c->key_len = (uint16_t)argv[1].len;
		c->value = blob->p;
		c->value_len = (uint32_t)blob->len;
		return 0;
	case CMD_POLICY_GET:
		if (check_key(&argv[1], err) != 0)
			return -1;
		c->op = KV_R_POLICY_GET;
		c->key = argv[1].p;
		c->key_len = (uint16_t)argv[1].len;
		return 0;
	default:
		return 1;
	}
}

static bool is_lease(enum cmd_id id)
{
	return id == CMD_LEASE_ACQUIRE || id == CMD_LEASE_RENEW || id == CMD_LEASE_RELEASE ||
	       id == CMD_LEASE_INFO;
}

/* LEASE.*: kv/lease_table.h parses and encodes them (one format for the daemon and the
 * simulator). */
static int lease_request(const struct resp_arg *argv, size_t argc, const char *user, uint8_t **out,
			 size_t *out_len, char *err)
{
	const uint8_t *av[3];
	size_t lens[3];
	struct kv_lease_req q;
	char eb[TEEMS_ERRBUF_LEN];
	int rc;

	if (argc > 3)
		return fail(err, "ERR syntax error");
	for (size_t i = 0; i < argc; i++) {
		av[i] = argv[i].p;
		lens[i] = argv[i].len;
	}
	if (kv_lease_parse(argc, av, lens, &q, eb) != TEEMS_OK) {
		snprintf(err, CMD_ERR_LEN, "%s", eb);
		return -1;
	}
	rc = kv_lease_req_encode(&q, user, out, out_len);
	if (rc == TEEMS_ENOMEM)
		return fail(err, "ERR out of memory");
	if (rc != TEEMS_OK)
		return fail(err, "ERR invalid lease request");
	return 0;
}

/* The reply to a lease command's own result (kv/lease_table.h). */
static int lease_response(const struct cmd_spec *spec, const uint8_t *result, size_t len,
			  struct resp_out *out)
{
	struct kv_lease_res lr;
	char text[CMD_ERR_LEN];
	bool info = spec->id == CMD_LEASE_INFO;

	if (kv_lease_result_decode(result, len, &lr) != TEEMS_OK ||
	    info != (lr.type == KV_LEASE_INFO) || lr.res.token > (uint64_t)LLONG_MAX ||
	    lr.res.ttl_ms > (uint64_t)LLONG_MAX) {
		resp_add_error(out, "ERR internal error: the command's result does not decode");
		return -1;
	}
	if (lr.res.status == LEASE_BAD_ARG) {
		resp_add_error(out, "ERR invalid lease request");
		return 0;
	}
	if (info) {
		if (lr.res.status == LEASE_NOT_FOUND) {
			resp_add_null(out);
			return 0;
		}
		resp_add_array(out, 4);
		resp_add_int(out, lr.res.held ? 1 : 0);
		resp_add_int(out, (long long)lr.res.token);
		resp_add_int(out, lr.res.held ? (long long)lr.res.ttl_ms : 0);
		resp_add_int(out,
			     lr.res.held && lr.remaining_ms >= 0 ? (long long)lr.remaining_ms : -1);
		return 0;
	}
	switch (lr.res.status) {
	case LEASE_OK:
		if (lr.type == LEASE_CMD_RELEASE || lr.type == LEASE_CMD_EXPIRE) {
			resp_add_simple(out, "OK");
			return 0;
		}
		resp_add_array(out, 2);
		resp_add_int(out, (long long)lr.res.token);
		resp_add_int(out, (long long)lr.res.ttl_ms);
		return 0;
	case LEASE_HELD:
		if (lr.remaining_ms >= 0)
			snprintf(text, sizeof(text),
				 "LEASEHELD the lease is held by another holder, remaining_ms %lld",
				 (long long)lr.remaining_ms);
		else
			snprintf(text, sizeof(text),
				 "LEASEHELD the lease is held by another holder, remaining_ms at "
				 "most %llu",
				 (unsigned long long)lr.res.ttl_ms);
		resp_add_error(out, text);
		return 0;
	case LEASE_STALE:
		resp_add_error(out, "LEASESTALE the token is not the lease's current token");
		return 0;
	default:
		resp_add_error(out, "ERR invalid lease request");
		return 0;
	}
}

int cmd_request_as(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		   uint64_t now_ms, const char *user, uint8_t **out, size_t *out_len, char *err)
{
	struct kv_cmd c;
	struct kv_item *items = NULL;
	struct mbuf blob = {0};
	uint8_t hash[KV_PASSWORD_HASH_LEN];
	uint8_t *buf;
	size_t n;
	int rc = 0;

	*out = NULL;
	*out_len = 0;
	memset(&c, 0, sizeof(c));
	c.now_ms = now_ms;
	if (user != NULL) {
		if (!kv_user_name_ok((const uint8_t *)user, strlen(user)) &&
		    strcmp(user, KV_USER_ANON) != 0)
			return fail(err, "ERR Usernames can't contain spaces or null characters");
		c.user = (const uint8_t *)user;
		c.user_len = (uint16_t)strlen(user);
	}
	if (is_lease(spec->id))
		return lease_request(argv, argc, user, out, out_len, err);
	switch (spec->id) {
	case CMD_AUTH:
	case CMD_ACL_SETUSER:
	case CMD_ACL_LIST:
	case CMD_ACL_GETUSER:
	case CMD_POLICY_SET:
	case CMD_POLICY_GET:
		rc = request_acl(spec, argv, argc, &c, &blob, hash, err);
		break;
	case CMD_ACL_DELUSER:
		c.op = KV_R_ACL_DELUSER;
		rc = take_items(spec, argv + 1, argc - 1, &c, &items, err);
		break;
	case CMD_GET:
	case CMD_VGET:
		rc = check_key(&argv[1], err);
		c.op = KV_R_GET;
		c.key = argv[1].p;
		c.key_len = (uint16_t)argv[1].len;
		break;
	case CMD_SET:
		rc = request_set(argv, argc, now_ms, &c, err);
		break;
	case CMD_DEL:
	case CMD_EXISTS:
	case CMD_MGET:
	case CMD_MSET:
		c.op = spec->id == CMD_DEL	? KV_R_DEL
		       : spec->id == CMD_EXISTS ? KV_R_EXISTS
		       : spec->id == CMD_MGET	? KV_R_MGET
						: KV_R_MSET;
		rc = take_items(spec, argv, argc, &c, &items, err);
		break;
	case CMD_INCR:
	case CMD_INCRBY:
	case CMD_DECR:
	case CMD_DECRBY:
		rc = request_incr(spec, argv, &c, err);
		break;
	case CMD_SCAN:
		rc = request_scan(argv, argc, &c, err);
		break;
	case CMD_VSET:
		rc = cmd_parse_u64(&argv[3], &c.expected_version, err);
		if (rc == 0)
			rc = check_key(&argv[1], err);
		if (rc == 0)
			rc = check_value(&argv[2], err);
		c.op = KV_R_VSET;
		c.key = argv[1].p;
		c.key_len = (uint16_t)argv[1].len;
		c.value = argv[2].p;
		c.value_len = (uint32_t)argv[2].len;
		break;
	default:
		snprintf(err, CMD_ERR_LEN, "ERR '%s' is not a key-value command", spec->name);
		return -1;
	}
	if (rc != 0)
		goto out;
	n = kv_cmd_size(&c);
	if (n == 0) {
		rc = fail(err, "ERR command is too large");
		goto out;
	}
	buf = teems_malloc(n);
	if (buf == NULL) {
		rc = fail(err, "ERR out of memory");
		goto out;
	}
	if (kv_cmd_encode(&c, buf, n, &n) != TEEMS_OK) {
		teems_free(buf);
		rc = fail(err, "ERR command is too large");
		goto out;
	}
	*out = buf;
	*out_len = n;
out:
	teems_free(items);
	teems_free(blob.p);
	return rc;
}

static enum kv_op result_op(enum cmd_id id)
{
	switch (id) {
	case CMD_GET:
	case CMD_VGET:
		return KV_R_GET;
	case CMD_SET:
		return KV_R_SET;
	case CMD_DEL:
		return KV_R_DEL;
	case CMD_EXISTS:
		return KV_R_EXISTS;
	case CMD_MGET:
		return KV_R_MGET;
	case CMD_MSET:
		return KV_R_MSET;
	case CMD_INCR:
	case CMD_INCRBY:
	case CMD_DECR:
	case CMD_DECRBY:
		return KV_R_INCRBY;
	case CMD_SCAN:
		return KV_R_SCAN;
	case CMD_VSET:
		return KV_R_VSET;
	case CMD_AUTH:
		return KV_R_AUTH;
	case CMD_ACL_SETUSER:
		return KV_R_ACL_SETUSER;
	case CMD_ACL_DELUSER:
		return KV_R_ACL_DELUSER;
	case CMD_ACL_LIST:
		return KV_R_ACL_LIST;
	case CMD_POLICY_SET:
		return KV_R_POLICY_SET;
	case CMD_POLICY_GET:
		return KV_R_POLICY_GET;
	case CMD_ACL_GETUSER:
		return KV_R_ACL_GETUSER;
	/* a lease command refused by the permission checks (kv.h KV_FORMAT_LEASE) */
	case CMD_LEASE_INFO:
		return KV_R_GET;
	case CMD_LEASE_ACQUIRE:
	case CMD_LEASE_RENEW:
	case CMD_LEASE_RELEASE:
		return KV_R_SET;
	default:
		return (enum kv_op)0;
	}
}

/* An array of the space-separated words of s. */
static void add_words(struct resp_out *out, const uint8_t *s, size_t len)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i < len; i++)
		n += (i == 0 || s[i - 1] == ' ') && s[i] != ' ';
	resp_add_array(out, n);
	for (size_t i = 0; i <= len; i++) {
		if (i == len || s[i] == ' ') {
			if (i > start)
				resp_add_bulk(out, s + start, i - start);
			start = i + 1;
		}
	}
}

/* ACL GETUSER as Redis 7 answers it: a map (a flat array in RESP2), or null. */
static int getuser_reply(const struct kv_result *r, struct resp_out *out)
{
	struct kv_item it[4];
	size_t pos = 0;

	if (r->n_items == 0) {
		resp_add_null(out);
		return 0;
	}
	for (int i = 0; i < 4; i++)
		if (r->n_items != 4 || !kv_result_item(r, &pos, &it[i]))
			return -1;
	resp_add_map(out, 6);
	resp_add_bulk_cstr(out, "flags");
	add_words(out, it[0].value, it[0].value_len);
	resp_add_bulk_cstr(out, "passwords");
	add_words(out, it[1].value, it[1].value_len);
	resp_add_bulk_cstr(out, "commands");
	resp_add_bulk(out, it[2].value, it[2].value_len);
	resp_add_bulk_cstr(out, "keys");
	resp_add_bulk(out, it[3].value, it[3].value_len);
	resp_add_bulk_cstr(out, "channels");
	resp_add_bulk_cstr(out, "");
	resp_add_bulk_cstr(out, "selectors");
	resp_add_array(out, 0);
	return 0;
}

int cmd_response(const struct cmd_spec *spec, const uint8_t *result, size_t len,
		 struct resp_out *out)
{
	struct kv_result r;
	struct kv_item it;
	size_t pos = 0;
	char num[24];

	if (is_lease(spec->id) && len > 0 && result[0] == KV_LEASE_FORMAT)
		return lease_response(spec, result, len, out);
	if (kv_result_decode(result, len, &r) != TEEMS_OK || r.op == 0 ||
	    r.op != result_op(spec->id) || r.version > (uint64_t)LLONG_MAX)
		goto bad;
	switch (r.status) {
	case KV_ERR_NOT_INTEGER:
		resp_add_error(out, "ERR value is not an integer or out of range");
		return 0;
	case KV_ERR_OVERFLOW:
		resp_add_error(out, "ERR increment or decrement would overflow");
		return 0;
	case KV_ERR_TOO_LARGE:
		resp_add_error(out, "ERR reply is too large");
		return 0;
	case KV_ERR_NOAUTH:
		resp_add_error(out, "NOAUTH Authentication required.");
		return 0;
	case KV_ERR_NOPERM_CMD: {
		char text[CMD_ERR_LEN];

		snprintf(text, sizeof(text),
			 "NOPERM this user has no permissions to run the '%s' command", spec->name);
		resp_add_error(out, text);
		return 0;
	}
	case KV_ERR_NOPERM_KEY:
		resp_add_error(out, "NOPERM this user has no permissions to access one of the "
				    "keys used as arguments");
		return 0;
	case KV_ERR_WRONGPASS:
		resp_add_error(out,
			       "WRONGPASS invalid username-password pair or user is disabled.");
		return 0;
	case KV_ERR_TEXT: {
		char text[CMD_ERR_LEN];
		size_t at = 0;

		text[0] = '\0';
		append(text, &at, r.value, r.value_len);
		resp_add_error(out, at ? text : "ERR teems: refused");
		return 0;
	}
	default:
		break;
	}
	switch (spec->id) {
	case CMD_GET:
		if (r.found)
			resp_add_bulk(out, r.value, r.value_len);
		else
			resp_add_null(out);
		return 0;
	case CMD_VGET:
		resp_add_array(out, 2);
		if (r.found)
			resp_add_bulk(out, r.value, r.value_len);
		else
			resp_add_null(out);
		resp_add_int(out, (long long)r.version);
		return 0;
	case CMD_SET:
		if (r.asked && r.found)
			resp_add_bulk(out, r.value, r.value_len);
		else if (r.asked || r.status != KV_OK)
			resp_add_null(out);
		else
			resp_add_simple(out, "OK");
		return 0;
	case CMD_DEL:
	case CMD_EXISTS:
	case CMD_INCR:
	case CMD_INCRBY:
	case CMD_DECR:
	case CMD_DECRBY:
		resp_add_int(out, (long long)r.integer);
		return 0;
	case CMD_MSET:
		resp_add_simple(out, "OK");
		return 0;
	case CMD_MGET:
		resp_add_array(out, r.n_items);
		while (kv_result_item(&r, &pos, &it)) {
			if (it.found)
				resp_add_bulk(out, it.value, it.value_len);
			else
				resp_add_null(out);
		}
		return 0;
	case CMD_SCAN:
		snprintf(num, sizeof(num), "%llu", (unsigned long long)r.cursor);
		resp_add_array(out, 2);
		resp_add_bulk_cstr(out, num);
		resp_add_array(out, r.n_items);
		while (kv_result_item(&r, &pos, &it))
			resp_add_bulk(out, it.key, it.key_len);
		return 0;
	case CMD_VSET:
		resp_add_array(out, 2);
		resp_add_int(out, r.status == KV_OK ? 1 : 0);
		resp_add_int(out, (long long)r.version);
		return 0;
	case CMD_AUTH:
	case CMD_ACL_SETUSER:
	case CMD_POLICY_SET:
		resp_add_simple(out, "OK");
		return 0;
	case CMD_ACL_DELUSER:
		resp_add_int(out, (long long)r.integer);
		return 0;
	case CMD_ACL_GETUSER:
		if (getuser_reply(&r, out) == 0)
			return 0;
		break;
	case CMD_ACL_LIST:
	case CMD_POLICY_GET:
		if (spec->id == CMD_POLICY_GET && r.n_items == 0) {
			resp_add_null(out);
			return 0;
		}
		resp_add_array(out, r.n_items);
		while (kv_result_item(&r, &pos, &it)) {
			if (spec->id == CMD_POLICY_GET && it.value_len == 0)
				resp_add_bulk_cstr(out, "-"); /* an empty list, as it was given */
			else
				resp_add_bulk(out, it.value, it.value_len);
		}
		return 0;
	default:
		break;
	}
bad:
	resp_add_error(out, "ERR internal error: the command's result does not decode");
	return -1;
}
