/* Client leases as state-machine commands: see lease_table.h. */
#include "kv/lease_table.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "teems/err.h"

struct kv_leases {
	struct lease_table *t;
};

bool kv_lease_is_cmd(const uint8_t *cmd, size_t len)
{
	return len > 0 && cmd[0] == KV_LEASE_FORMAT;
}

static bool good_type(unsigned t)
{
	return t >= LEASE_CMD_ACQUIRE && t <= LEASE_CMD_EXPIRE;
}

int kv_lease_cmd_encode(const struct lease_cmd *c, uint8_t *buf, size_t cap, size_t *len)
{
	size_t need;

	if (!good_type(c->type) || !c->name || c->name_len == 0 || c->name_len > LEASE_NAME_MAX)
		return TEEMS_EINVAL;
	need = KV_LEASE_CMD_FIXED + c->name_len;
	*len = need;
	if (!buf || cap < need)
		return TEEMS_EFULL;
	buf[0] = KV_LEASE_FORMAT;
	buf[1] = (uint8_t)c->type;
	put_le16(buf + 2, (uint16_t)c->name_len);
	memcpy(buf + 4, c->name, c->name_len);
	buf += 4 + c->name_len;
	put_le64(buf, c->ttl_ms);
	put_le64(buf + 8, c->token);
	put_le64(buf + 16, c->generation);
	put_le64(buf + 24, c->unsafe_host_ns);
	return TEEMS_OK;
}

int kv_lease_cmd_decode(const uint8_t *buf, size_t len, struct lease_cmd *out)
{
	size_t nl;

	if (len < KV_LEASE_CMD_FIXED || buf[0] != KV_LEASE_FORMAT || !good_type(buf[1]))
		return TEEMS_ECORRUPT;
	nl = get_le16(buf + 2);
	if (nl == 0 || nl > LEASE_NAME_MAX || len != KV_LEASE_CMD_FIXED + nl)
		return TEEMS_ECORRUPT;
	memset(out, 0, sizeof(*out));
	out->type = (enum lease_cmd_type)buf[1];
	out->name = (const char *)buf + 4;
	out->name_len = nl;
	buf += 4 + nl;
	out->ttl_ms = get_le64(buf);
	out->token = get_le64(buf + 8);
	out->generation = get_le64(buf + 16);
	out->unsafe_host_ns = get_le64(buf + 24);
	return TEEMS_OK;
}

static bool name_is(const uint8_t *a, size_t len, const char *want)
{
	size_t n = strlen(want);

	if (len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = a[i];

		if (c >= 'a' && c <= 'z')
			c = (uint8_t)(c - 'a' + 'A');
		if (c != (uint8_t)want[i])
			return false;
	}
	return true;
}

/* A decimal u64 without sign or spaces, as Redis accepts integers. */
static bool parse_u64(const uint8_t *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

int kv_lease_parse(size_t argc, const uint8_t *const *argv, const size_t *lens,
		   struct kv_lease_req *out, char *errbuf)
{
	struct lease_cmd *c = &out->cmd;
	size_t want;

	memset(out, 0, sizeof(*out));
	if (argc == 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "ERR empty command");
	if (name_is(argv[0], lens[0], "LEASE.ACQUIRE")) {
		c->type = LEASE_CMD_ACQUIRE;
		want = 3;
	} else if (name_is(argv[0], lens[0], "LEASE.RENEW")) {
		c->type = LEASE_CMD_RENEW;
		want = 3;
	} else if (name_is(argv[0], lens[0], "LEASE.RELEASE")) {
		c->type = LEASE_CMD_RELEASE;
		want = 3;
	} else if (name_is(argv[0], lens[0], "LEASE.INFO")) {
		out->info = true;
		want = 2;
	} else {
		return teems_errf(errbuf, TEEMS_EINVAL, "ERR unknown lease command");
	}
	if (argc != want)
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "ERR wrong number of arguments for '%.*s' command",
				  (int)(lens[0] > 32 ? 32 : lens[0]), (const char *)argv[0]);
	if (lens[1] == 0 || lens[1] > LEASE_NAME_MAX)
		return teems_errf(errbuf, TEEMS_EINVAL, "ERR lease name must be 1..%u bytes",
				  (unsigned)LEASE_NAME_MAX);
	c->name = (const char *)argv[1];
	c->name_len = lens[1];
	if (out->info)
		return TEEMS_OK;
	if (c->type == LEASE_CMD_ACQUIRE) {
		if (!parse_u64(argv[2], lens[2], &c->ttl_ms) || c->ttl_ms == 0 ||
		    c->ttl_ms > KV_LEASE_TTL_MAX_MS)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "ERR ttl_ms must be an integer in 1..%llu",
					  (unsigned long long)KV_LEASE_TTL_MAX_MS);
	} else if (!parse_u64(argv[2], lens[2], &c->token)) {
		return teems_errf(errbuf, TEEMS_EINVAL, "ERR token must be a non-negative integer");
	}
	return TEEMS_OK;
}

int kv_leases_new(struct kv_leases **out)
{
	struct kv_leases *l = teems_calloc(1, sizeof(*l));

	*out = NULL;
	if (!l)
		return TEEMS_ENOMEM;
	if (lease_table_new(&l->t) != 0) {
		teems_free(l);
		return TEEMS_ENOMEM;
	}
	*out = l;
	return TEEMS_OK;
}

void kv_leases_free(struct kv_leases *l)
{
	if (!l)
		return;
	lease_table_free(l->t);
	teems_free(l);
}

const struct lease_table *kv_leases_table(const struct kv_leases *l)
{
	return l->t;
}

int kv_leases_apply(struct kv_leases *l, const uint8_t *cmd, size_t len, struct lease_result *res,
		    struct lease_cmd *decoded)
{
	struct lease_cmd c;
	int rc = kv_lease_cmd_decode(cmd, len, &c);

	if (rc)
		return rc;
	if (decoded)
		*decoded = c;
	return lease_table_apply(l->t, &c, res);
}

void kv_leases_info(const struct kv_leases *l, const struct lease_cmd *cmd,
		    struct lease_result *res)
{
	lease_table_info(l->t, cmd->name, cmd->name_len, res);
}

/* Appends what snprintf would print; returns the total length so far. */
static size_t put(uint8_t *buf, size_t cap, size_t off, const char *s)
{
	size_t n = strlen(s);

	if (off + n <= cap)
		memcpy(buf + off, s, n);
	return off + n;
}

size_t kv_lease_reply(bool info, enum lease_cmd_type type, const struct lease_result *res,
		      int64_t remaining_ms, uint8_t *buf, size_t cap)
{
	char tmp[160];

	if (res->status == LEASE_BAD_ARG)
		return put(buf, cap, 0, "-ERR invalid lease request\r\n");
	if (info) {
		if (res->status == LEASE_NOT_FOUND)
			return put(buf, cap, 0, "$-1\r\n");
		snprintf(tmp, sizeof(tmp),
			 "*4\r\n:%d\r\n:%" PRIu64 "\r\n:%" PRIu64 "\r\n:%" PRId64 "\r\n",
			 res->held ? 1 : 0, res->token, res->held ? res->ttl_ms : 0,
			 res->held ? remaining_ms : -1);
		return put(buf, cap, 0, tmp);
	}
	switch (res->status) {
	case LEASE_OK:
		if (type == LEASE_CMD_RELEASE || type == LEASE_CMD_EXPIRE)
			return put(buf, cap, 0, "+OK\r\n");
		snprintf(tmp, sizeof(tmp), "*2\r\n:%" PRIu64 "\r\n:%" PRIu64 "\r\n", res->token,
			 res->ttl_ms);
		return put(buf, cap, 0, tmp);
	case LEASE_HELD:
		if (remaining_ms >= 0)
			snprintf(tmp, sizeof(tmp),
				 "-LEASEHELD the lease is held by another holder, remaining_ms "
				 "%" PRId64 "\r\n",
				 remaining_ms);
		else
			snprintf(tmp, sizeof(tmp),
				 "-LEASEHELD the lease is held by another holder, remaining_ms at "
				 "most %" PRIu64 "\r\n",
				 res->ttl_ms);
		return put(buf, cap, 0, tmp);
	case LEASE_STALE:
		return put(buf, cap, 0,
			   "-LEASESTALE the token is not the lease's current token\r\n");
	default:
		return put(buf, cap, 0, "-ERR invalid lease request\r\n");
	}
}

int kv_leases_serialize(const struct kv_leases *l, uint8_t **out, size_t *len)
{
	size_t need;
	uint8_t *b;
	int rc;

	*out = NULL;
	(void)lease_table_encode(l->t, NULL, 0, &need);
	b = teems_malloc(need);
	if (!b)
		return TEEMS_ENOMEM;
	rc = lease_table_encode(l->t, b, need, len);
	if (rc) {
		teems_free(b);
		return rc;
	}
	*out = b;
	return TEEMS_OK;
}

int kv_leases_restore(struct kv_leases *l, const uint8_t *buf, size_t len)
{
	struct kv_leases *tmp;
	uint8_t *again = NULL;
	size_t n = 0;
	struct lease_table *t;
	int rc = kv_leases_new(&tmp);

	if (rc)
		return rc;
	rc = lease_table_decode(tmp->t, buf, len);
	/* Only the canonical bytes (names in order, as lease_table_encode writes them): a snapshot
	 * that restores re-encodes to itself, so replicas compare snapshots byte for byte. */
	if (!rc)
		rc = kv_leases_serialize(tmp, &again, &n);
	if (!rc && (n != len || memcmp(again, buf, len) != 0))
		rc = TEEMS_ECORRUPT;
	teems_free(again);
	if (!rc) {
		t = l->t;
		l->t = tmp->t;
		tmp->t = t;
	}
	kv_leases_free(tmp);
	return rc;
}

int kv_leases_apply_cmd(struct kv_leases *l, const struct lease_cmd *cmd, struct lease_result *res)
{
	return lease_table_apply(l->t, cmd, res);
}

bool kv_leases_equal(const struct kv_leases *a, const struct kv_leases *b)
{
	uint8_t *x = NULL, *y = NULL;
	size_t xl = 0, yl = 0;
	bool eq;

	/* Out of memory: "not equal", the safe answer for a test of agreement. */
	if (kv_leases_serialize(a, &x, &xl) != TEEMS_OK ||
	    kv_leases_serialize(b, &y, &yl) != TEEMS_OK) {
		teems_free(x);
		return false;
	}
	eq = xl == yl && (xl == 0 || memcmp(x, y, xl) == 0);
	teems_free(x);
	teems_free(y);
	return eq;
}

/* The user wrapper's first byte (kv.h KV_FORMAT_AS; not included here to keep this module
 * apart from kv.h). */
#define WRAP_AS 0x82

int kv_lease_req_encode(const struct kv_lease_req *q, const char *user, uint8_t **out, size_t *len)
{
	struct lease_cmd c = q->cmd;
	size_t ul = user ? strlen(user) : 0, pre = user ? 3 + ul : 0, n;
	uint8_t *b;

	*out = NULL;
	*len = 0;
	if (ul > UINT16_MAX)
		return TEEMS_EINVAL;
	if (q->info) {
		/* encoded as an ACQUIRE, then retagged: the layout is shared */
		c.type = LEASE_CMD_ACQUIRE;
		c.ttl_ms = c.token = c.generation = c.unsafe_host_ns = 0;
	}
	if (kv_lease_cmd_encode(&c, NULL, 0, &n) != TEEMS_EFULL)
		return TEEMS_EINVAL;
	b = teems_malloc(pre + n);
	if (!b)
		return TEEMS_ENOMEM;
	if (user) {
		b[0] = WRAP_AS;
		put_le16(b + 1, (uint16_t)ul);
		memcpy(b + 3, user, ul);
	}
	if (kv_lease_cmd_encode(&c, b + pre, n, &n) != TEEMS_OK) {
		teems_free(b);
		return TEEMS_EINVAL;
	}
	if (q->info)
		b[pre + 1] = KV_LEASE_INFO;
	*out = b;
	*len = pre + n;
	return TEEMS_OK;
}

int kv_lease_unwrap(const uint8_t *cmd, size_t len, struct kv_lease_req *q, const uint8_t **user,
		    uint16_t *user_len)
{
	size_t off = 0;
	bool info;

	*user = NULL;
	*user_len = 0;
	memset(q, 0, sizeof(*q));
	if (len >= 3 && cmd[0] == WRAP_AS) {
		size_t ul = get_le16(cmd + 1);

		if (len < 3 + ul + 1 || cmd[3 + ul] != KV_LEASE_FORMAT)
			return 0; /* an R command as a user, or corrupt: kv_cmd_decode decides */
		*user = cmd + 3;
		*user_len = (uint16_t)ul;
		off = 3 + ul;
	}
	if (len - off == 0 || cmd[off] != KV_LEASE_FORMAT)
		return 0;
	cmd += off;
	len -= off;
	if (len < KV_LEASE_CMD_FIXED)
		return TEEMS_ECORRUPT;
	info = cmd[1] == KV_LEASE_INFO;
	if (!info)
		return kv_lease_cmd_decode(cmd, len, &q->cmd) == TEEMS_OK ? 1 : TEEMS_ECORRUPT;
	/* INFO: decode with the tag of a command, the numbers must be 0 (canonical) */
	if (get_le16(cmd + 2) != len - KV_LEASE_CMD_FIXED)
		return TEEMS_ECORRUPT;
	for (size_t i = len - 32; i < len; i++)
		if (cmd[i] != 0)
			return TEEMS_ECORRUPT;
	q->info = true;
	q->cmd.type = LEASE_CMD_ACQUIRE; /* unused for INFO */
	q->cmd.name = (const char *)cmd + 4;
	q->cmd.name_len = get_le16(cmd + 2);
	if (q->cmd.name_len == 0 || q->cmd.name_len > LEASE_NAME_MAX)
		return TEEMS_ECORRUPT;
	return 1;
}

void kv_lease_result_encode(unsigned type, const struct lease_result *r, int64_t remaining_ms,
			    uint8_t out[KV_LEASE_RESULT_LEN])
{
	out[0] = KV_LEASE_FORMAT;
	out[1] = (uint8_t)type;
	out[2] = (uint8_t)r->status;
	out[3] = r->held ? 1 : 0;
	put_le64(out + 4, r->token);
	put_le64(out + 12, r->ttl_ms);
	put_le64(out + 20, r->generation);
	put_le64(out + 28, (uint64_t)remaining_ms);
}

int kv_lease_result_decode(const uint8_t *buf, size_t len, struct kv_lease_res *out)
{
	memset(out, 0, sizeof(*out));
	if (len != KV_LEASE_RESULT_LEN || buf[0] != KV_LEASE_FORMAT ||
	    (buf[1] != KV_LEASE_INFO && !good_type(buf[1])) || buf[2] > LEASE_BAD_ARG || buf[3] > 1)
		return TEEMS_ECORRUPT;
	out->type = buf[1];
	out->res.status = (enum lease_status)buf[2];
	out->res.held = buf[3] != 0;
	out->res.token = get_le64(buf + 4);
	out->res.ttl_ms = get_le64(buf + 12);
	out->res.generation = get_le64(buf + 20);
	out->remaining_ms = (int64_t)get_le64(buf + 28);
	return TEEMS_OK;
}

void kv_lease_result_set_remaining(uint8_t *buf, size_t len, int64_t remaining_ms)
{
	if (len == KV_LEASE_RESULT_LEN && buf[0] == KV_LEASE_FORMAT)
		put_le64(buf + 28, (uint64_t)remaining_ms);
}
