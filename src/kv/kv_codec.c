/* The encodings of commands and results (kv.h). One writer per encoding serves both the size
 * computation (a counting pass) and the encoding, so the two cannot disagree; the decoders
 * read through struct kv_rd, which checks every length against what is left. */
#include <string.h>

#include "kv/kv.h"
#include "kv/kv_internal.h"
#include "teems/err.h"

static bool is_r_op(enum kv_op op)
{
	return op >= KV_R_GET && op <= KV_R_LAST_;
}

static bool is_model_op(enum kv_op op)
{
	return op >= KV_GET && op <= KV_DEL;
}

static bool has_items(enum kv_op op)
{
	return op == KV_R_DEL || op == KV_R_EXISTS || op == KV_R_MGET || op == KV_R_MSET ||
	       op == KV_R_ACL_DELUSER;
}

/* The ops whose body is key | value, and the largest value each takes (0: none). */
static uint32_t kv_value_cap(enum kv_op op)
{
	switch (op) {
	case KV_R_AUTH:
		return KV_PASSWORD_HASH_LEN;
	case KV_R_ACL_SETUSER:
		return KV_ACL_MAX_MODIFIERS;
	case KV_R_POLICY_SET:
		return KV_MAX_POLICY;
	default:
		return 0;
	}
}

bool kv_op_writes(enum kv_op op)
{
	switch (op) {
	case KV_SET:
	case KV_CAS:
	case KV_DEL:
	case KV_R_SET:
	case KV_R_DEL:
	case KV_R_MSET:
	case KV_R_INCRBY:
	case KV_R_VSET:
	case KV_R_ACL_SETUSER:
	case KV_R_ACL_DELUSER:
	case KV_R_POLICY_SET:
		return true;
	default:
		return false;
	}
}

static bool key_ok(const uint8_t *key, size_t len)
{
	return len <= KV_MAX_KEY && (len == 0 || key != NULL);
}

static bool value_ok(const uint8_t *v, size_t len)
{
	return len <= KV_MAX_VALUE && (len == 0 || v != NULL);
}

/* ---- items ---- */

/* One encoded item of a list: a key, then for MSET a value. */
static bool read_item(const uint8_t *list, size_t len, size_t *pos, bool with_value,
		      struct kv_item *it)
{
	struct kv_rd r;

	if (*pos >= len)
		return false;
	kv_rd_init(&r, list + *pos, len - *pos);
	memset(it, 0, sizeof(*it));
	if (!kv_rd_key(&r, &it->key, &it->key_len, KV_MAX_KEY))
		return false;
	if (with_value && !kv_rd_value(&r, &it->value, &it->value_len, KV_MAX_VALUE))
		return false;
	it->found = with_value;
	*pos += r.off;
	return true;
}

bool kv_cmd_item(const struct kv_cmd *c, size_t *pos, struct kv_item *it)
{
	if (c->items != NULL) {
		if (*pos >= c->n_items)
			return false;
		*it = c->items[(*pos)++];
		return true;
	}
	if (c->list == NULL)
		return false;
	return read_item(c->list, c->list_len, pos, c->op == KV_R_MSET, it);
}

/* Writes (or counts, w->p NULL) the items; false if one is invalid or their number is not
 * n_items. */
static bool write_items(const struct kv_cmd *c, struct kv_wr *w)
{
	struct kv_item it;
	size_t pos = 0;
	uint32_t n = 0;

	if (c->n_items == 0)
		return false;
	kv_wr_u32(w, c->n_items);
	while (kv_cmd_item(c, &pos, &it)) {
		if (n == c->n_items || !key_ok(it.key, it.key_len))
			return false;
		kv_wr_key(w, it.key, it.key_len);
		if (c->op == KV_R_MSET) {
			if (!value_ok(it.value, it.value_len))
				return false;
			kv_wr_value(w, it.value, it.value_len);
		}
		n++;
	}
	if (c->items == NULL && pos != c->list_len)
		return false; /* a list that does not parse to its end */
	return n == c->n_items;
}

/* ---- commands ---- */

static bool write_cmd(const struct kv_cmd *c, struct kv_wr *w)
{
	if (is_model_op(c->op)) {
		if (!key_ok(c->key, c->key_len) || c->user != NULL || c->user_len != 0)
			return false;
		kv_wr_u8(w, (uint8_t)c->op);
		kv_wr_key(w, c->key, c->key_len);
		if (c->op == KV_CAS)
			kv_wr_u64(w, c->expected_version);
		if (c->op == KV_SET || c->op == KV_CAS) {
			if (!value_ok(c->value, c->value_len))
				return false;
			kv_wr_value(w, c->value, c->value_len);
		}
		return true;
	}
	if (!is_r_op(c->op))
		return false;
	if (c->user != NULL || c->user_len != 0) {
		if (c->user == NULL || (!kv_user_name_ok(c->user, c->user_len) &&
					!(c->user_len == 1 && c->user[0] == KV_USER_ANON[0])))
			return false;
		kv_wr_u8(w, KV_FORMAT_AS);
		kv_wr_key(w, c->user, c->user_len);
	}
	kv_wr_u8(w, KV_FORMAT_R);
	kv_wr_u8(w, (uint8_t)c->op);
	kv_wr_u64(w, c->now_ms);
	if (has_items(c->op))
		return write_items(c, w);
	if (c->op == KV_R_SCAN) {
		if (c->count == 0 || (c->flags & ~(KV_SCAN_MATCH | KV_SCAN_NOTHING)) ||
		    ((c->flags & KV_SCAN_MATCH) &&
		     (c->pattern_len > KV_MAX_PATTERN || (c->pattern_len && c->pattern == NULL))))
			return false;
		kv_wr_u64(w, c->cursor);
		kv_wr_u32(w, c->count);
		kv_wr_u8(w, (uint8_t)c->flags);
		if (c->flags & KV_SCAN_MATCH)
			kv_wr_value(w, c->pattern, c->pattern_len);
		return true;
	}
	if (c->op == KV_R_ACL_LIST)
		return true;
	if (c->op == KV_R_ACL_GETUSER) {
		if (!key_ok(c->key, c->key_len))
			return false;
		kv_wr_key(w, c->key, c->key_len);
		return true;
	}
	if (c->op == KV_R_AUTH) {
		if (c->flags & ~KV_AUTH_DEFAULT_FORM)
			return false;
		kv_wr_u8(w, (uint8_t)c->flags);
	}
	if (kv_value_cap(c->op) != 0) {
		if (!key_ok(c->key, c->key_len) || c->value_len > kv_value_cap(c->op) ||
		    (c->value_len && c->value == NULL) ||
		    (c->op == KV_R_AUTH && c->value_len != KV_PASSWORD_HASH_LEN))
			return false;
		kv_wr_key(w, c->key, c->key_len);
		kv_wr_value(w, c->value, c->value_len);
		return true;
	}
	if (c->op == KV_R_SET) {
		unsigned f = c->flags;

		if ((f & ~31u) || ((f & KV_SET_NX) && (f & KV_SET_XX)) ||
		    ((f & KV_SET_KEEPTTL) && (f & KV_SET_EXPIRE)) ||
		    ((f & KV_SET_EXPIRE) && c->expire_at_ms == 0))
			return false;
		kv_wr_u8(w, (uint8_t)f);
		if (f & KV_SET_EXPIRE)
			kv_wr_u64(w, c->expire_at_ms);
	}
	if (!key_ok(c->key, c->key_len))
		return false;
	kv_wr_key(w, c->key, c->key_len);
	if (c->op == KV_R_INCRBY)
		kv_wr_u64(w, (uint64_t)c->delta);
	if (c->op == KV_R_VSET)
		kv_wr_u64(w, c->expected_version);
	if (c->op == KV_R_SET || c->op == KV_R_VSET) {
		if (!value_ok(c->value, c->value_len))
			return false;
		kv_wr_value(w, c->value, c->value_len);
	}
	return true;
}

size_t kv_cmd_size(const struct kv_cmd *c)
{
	struct kv_wr w = {NULL, 0, 0, true};

	if (!write_cmd(c, &w) || w.off > KV_MAX_COMMAND)
		return 0;
	return w.off;
}

int kv_cmd_encode(const struct kv_cmd *c, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n = kv_cmd_size(c);
	struct kv_wr w = {buf, cap, 0, true};

	if (n == 0)
		return TEEMS_EINVAL;
	*len = n;
	if (cap < n)
		return TEEMS_EFULL;
	if (!write_cmd(c, &w) || !w.ok || w.off != n)
		return TEEMS_EINVAL;
	return TEEMS_OK;
}

static int decode_r(struct kv_rd *r, struct kv_cmd *out)
{
	out->op = (enum kv_op)kv_rd_u8(r);
	out->now_ms = kv_rd_u64(r);
	if (!r->ok || !is_r_op(out->op))
		return TEEMS_ECORRUPT;
	if (has_items(out->op)) {
		struct kv_item it;
		size_t start, pos = 0;

		out->n_items = kv_rd_u32(r);
		if (!r->ok || out->n_items == 0)
			return TEEMS_ECORRUPT;
		start = r->off;
		out->list = r->p + start;
		out->list_len = r->len - start;
		for (uint32_t i = 0; i < out->n_items; i++)
			if (!read_item(out->list, out->list_len, &pos, out->op == KV_R_MSET, &it))
				return TEEMS_ECORRUPT;
		out->list_len = pos;
		r->off = start + pos;
		return TEEMS_OK;
	}
	if (out->op == KV_R_SCAN) {
		out->cursor = kv_rd_u64(r);
		out->count = kv_rd_u32(r);
		out->flags = kv_rd_u8(r);
		if (!r->ok || out->count == 0 || (out->flags & ~(KV_SCAN_MATCH | KV_SCAN_NOTHING)))
			return TEEMS_ECORRUPT;
		if ((out->flags & KV_SCAN_MATCH) &&
		    !kv_rd_value(r, &out->pattern, &out->pattern_len, KV_MAX_PATTERN))
			return TEEMS_ECORRUPT;
		return TEEMS_OK;
	}
	if (out->op == KV_R_ACL_LIST)
		return TEEMS_OK;
	if (out->op == KV_R_ACL_GETUSER)
		return kv_rd_key(r, &out->key, &out->key_len, KV_MAX_KEY) ? TEEMS_OK
									  : TEEMS_ECORRUPT;
	if (out->op == KV_R_AUTH) {
		out->flags = kv_rd_u8(r);
		if (!r->ok || (out->flags & ~KV_AUTH_DEFAULT_FORM))
			return TEEMS_ECORRUPT;
	}
	if (kv_value_cap(out->op) != 0) {
		if (!kv_rd_key(r, &out->key, &out->key_len, KV_MAX_KEY) ||
		    !kv_rd_value(r, &out->value, &out->value_len, kv_value_cap(out->op)) ||
		    (out->op == KV_R_AUTH && out->value_len != KV_PASSWORD_HASH_LEN))
			return TEEMS_ECORRUPT;
		return TEEMS_OK;
	}
	if (out->op == KV_R_SET) {
		unsigned f = kv_rd_u8(r);

		if (!r->ok || (f & ~31u) || ((f & KV_SET_NX) && (f & KV_SET_XX)) ||
		    ((f & KV_SET_KEEPTTL) && (f & KV_SET_EXPIRE)))
			return TEEMS_ECORRUPT;
		out->flags = f;
		if (f & KV_SET_EXPIRE) {
			out->expire_at_ms = kv_rd_u64(r);
			if (!r->ok || out->expire_at_ms == 0)
				return TEEMS_ECORRUPT;
		}
	}
	if (!kv_rd_key(r, &out->key, &out->key_len, KV_MAX_KEY))
		return TEEMS_ECORRUPT;
	if (out->op == KV_R_INCRBY)
		out->delta = (int64_t)kv_rd_u64(r);
	if (out->op == KV_R_VSET)
		out->expected_version = kv_rd_u64(r);
	if ((out->op == KV_R_SET || out->op == KV_R_VSET) &&
	    !kv_rd_value(r, &out->value, &out->value_len, KV_MAX_VALUE))
		return TEEMS_ECORRUPT;
	return r->ok ? TEEMS_OK : TEEMS_ECORRUPT;
}

int kv_cmd_decode(const uint8_t *buf, size_t len, struct kv_cmd *out)
{
	struct kv_rd r;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > KV_MAX_COMMAND)
		return TEEMS_ECORRUPT;
	kv_rd_init(&r, buf, len);
	if (buf[0] == KV_FORMAT_AS) {
		kv_rd_u8(&r);
		if (!kv_rd_key(&r, &out->user, &out->user_len, KV_MAX_USER) ||
		    (!kv_user_name_ok(out->user, out->user_len) &&
		     !(out->user_len == 1 && out->user[0] == KV_USER_ANON[0])) ||
		    kv_rd_u8(&r) != KV_FORMAT_R || !r.ok) {
			memset(out, 0, sizeof(*out));
			return TEEMS_ECORRUPT;
		}
		rc = decode_r(&r, out);
	} else if (buf[0] == KV_FORMAT_R) {
		kv_rd_u8(&r);
		rc = decode_r(&r, out);
	} else {
		out->op = (enum kv_op)kv_rd_u8(&r);
		if (!is_model_op(out->op))
			return TEEMS_ECORRUPT;
		kv_rd_key(&r, &out->key, &out->key_len, KV_MAX_KEY);
		if (out->op == KV_CAS)
			out->expected_version = kv_rd_u64(&r);
		if (out->op == KV_SET || out->op == KV_CAS)
			kv_rd_value(&r, &out->value, &out->value_len, KV_MAX_VALUE);
		rc = r.ok ? TEEMS_OK : TEEMS_ECORRUPT;
	}
	if (rc != TEEMS_OK || r.off != len) {
		memset(out, 0, sizeof(*out));
		return TEEMS_ECORRUPT;
	}
	return TEEMS_OK;
}

/* ---- results ---- */

static bool status_ok(enum kv_op op, enum kv_status s)
{
	switch (s) {
	case KV_OK:
		return true;
	case KV_NOT_DONE:
		return op == KV_R_SET || op == KV_R_VSET;
	case KV_ERR_NOT_INTEGER:
	case KV_ERR_OVERFLOW:
		return op == KV_R_INCRBY;
	case KV_ERR_TOO_LARGE:
		return op == KV_R_MGET || op == KV_R_SCAN;
	case KV_ERR_NOAUTH:
	case KV_ERR_NOPERM_CMD:
	case KV_ERR_NOPERM_KEY:
	case KV_ERR_TEXT:
		return true;
	case KV_ERR_WRONGPASS:
		return op == KV_R_AUTH;
	}
	return false;
}

bool kv_result_item(const struct kv_result *r, size_t *pos, struct kv_item *it)
{
	struct kv_rd rd;

	if (r->list == NULL || *pos >= r->list_len)
		return false;
	kv_rd_init(&rd, r->list + *pos, r->list_len - *pos);
	memset(it, 0, sizeof(*it));
	if (r->op == KV_R_SCAN) {
		if (!kv_rd_key(&rd, &it->key, &it->key_len, KV_MAX_KEY))
			return false;
	} else if (r->op == KV_R_MGET || r->op == KV_R_ACL_LIST || r->op == KV_R_POLICY_GET ||
		   r->op == KV_R_ACL_GETUSER) {
		uint8_t f = kv_rd_u8(&rd);

		if (!rd.ok || f > 1)
			return false;
		it->found = f == 1;
		if (it->found && !kv_rd_value(&rd, &it->value, &it->value_len, KV_MAX_VALUE))
			return false;
	} else {
		return false;
	}
	*pos += rd.off;
	return true;
}

static bool write_result_list(const struct kv_result *r, struct kv_wr *w)
{
	struct kv_item it;
	size_t pos = 0;
	uint32_t n = 0;

	kv_wr_u32(w, r->n_items);
	while (kv_result_item(r, &pos, &it))
		n++;
	if (n != r->n_items || pos != r->list_len)
		return false;
	kv_wr_bytes(w, r->list, r->list_len);
	return true;
}

static bool write_result(const struct kv_result *r, struct kv_wr *w)
{
	if (r->op == 0) {
		if (r->status != KV_OK && r->status != KV_CAS_FAILED)
			return false;
		if ((!r->found && r->value_len) || !value_ok(r->value, r->value_len))
			return false;
		kv_wr_u8(w, (uint8_t)r->status);
		kv_wr_u8(w, r->found ? 1 : 0);
		kv_wr_u64(w, r->version);
		kv_wr_value(w, r->value, r->value_len);
		return true;
	}
	if (!is_r_op(r->op) || !status_ok(r->op, r->status))
		return false;
	kv_wr_u8(w, KV_FORMAT_R);
	kv_wr_u8(w, (uint8_t)r->op);
	kv_wr_u8(w, (uint8_t)r->status);
	if (r->status == KV_ERR_TEXT) {
		if (!value_ok(r->value, r->value_len))
			return false;
		kv_wr_value(w, r->value, r->value_len);
		return true;
	}
	if (r->status >= KV_ERR_NOT_INTEGER)
		return true;
	switch (r->op) {
	case KV_R_GET:
		if ((!r->found && r->value_len) || !value_ok(r->value, r->value_len))
			return false;
		kv_wr_u8(w, r->found ? 1 : 0);
		kv_wr_u64(w, r->version);
		if (r->found)
			kv_wr_value(w, r->value, r->value_len);
		return true;
	case KV_R_SET:
		if ((r->found && !r->asked) || (!r->found && r->value_len) ||
		    !value_ok(r->value, r->value_len))
			return false;
		kv_wr_u8(w, !r->asked ? 0 : r->found ? 2 : 1);
		kv_wr_u64(w, r->version);
		if (r->found)
			kv_wr_value(w, r->value, r->value_len);
		return true;
	case KV_R_DEL:
	case KV_R_EXISTS:
	case KV_R_ACL_DELUSER:
		if (r->integer < 0)
			return false;
		kv_wr_u64(w, (uint64_t)r->integer);
		return true;
	case KV_R_AUTH:
	case KV_R_ACL_SETUSER:
	case KV_R_POLICY_SET:
		return true;
	case KV_R_ACL_LIST:
	case KV_R_POLICY_GET:
	case KV_R_ACL_GETUSER:
		return write_result_list(r, w);
	case KV_R_INCRBY:
		kv_wr_u64(w, (uint64_t)r->integer);
		kv_wr_u64(w, r->version);
		return true;
	case KV_R_VSET:
		kv_wr_u64(w, r->version);
		return true;
	case KV_R_MSET:
		return true;
	case KV_R_MGET:
		return write_result_list(r, w);
	case KV_R_SCAN:
		kv_wr_u64(w, r->cursor);
		return write_result_list(r, w);
	default:
		return false;
	}
}

size_t kv_result_size(const struct kv_result *r)
{
	struct kv_wr w = {NULL, 0, 0, true};

	if (!write_result(r, &w) || w.off > KV_MAX_RESULT)
		return 0;
	return w.off;
}

int kv_result_encode(const struct kv_result *r, uint8_t *buf, size_t cap, size_t *len)
{
	size_t n = kv_result_size(r);
	struct kv_wr w = {buf, cap, 0, true};

	if (n == 0)
		return TEEMS_EINVAL;
	*len = n;
	if (cap < n)
		return TEEMS_EFULL;
	if (!write_result(r, &w) || !w.ok || w.off != n)
		return TEEMS_EINVAL;
	return TEEMS_OK;
}

static int decode_list(struct kv_rd *rd, struct kv_result *out)
{
	struct kv_item it;
	size_t pos = 0;

	out->n_items = kv_rd_u32(rd);
	if (!rd->ok)
		return TEEMS_ECORRUPT;
	out->list = rd->p + rd->off;
	out->list_len = rd->len - rd->off;
	for (uint32_t i = 0; i < out->n_items; i++)
		if (!kv_result_item(out, &pos, &it))
			return TEEMS_ECORRUPT;
	out->list_len = pos;
	if (pos == 0)
		out->list = NULL;
	rd->off += pos;
	return TEEMS_OK;
}

static int decode_result_r(struct kv_rd *rd, struct kv_result *out)
{
	uint8_t b;

	out->op = (enum kv_op)kv_rd_u8(rd);
	out->status = (enum kv_status)kv_rd_u8(rd);
	if (!rd->ok || !is_r_op(out->op) || !status_ok(out->op, out->status))
		return TEEMS_ECORRUPT;
	if (out->status == KV_ERR_TEXT)
		return kv_rd_value(rd, &out->value, &out->value_len, KV_MAX_VALUE) ? TEEMS_OK
										   : TEEMS_ECORRUPT;
	if (out->status >= KV_ERR_NOT_INTEGER)
		return TEEMS_OK;
	switch (out->op) {
	case KV_R_GET:
		b = kv_rd_u8(rd);
		out->version = kv_rd_u64(rd);
		if (!rd->ok || b > 1)
			return TEEMS_ECORRUPT;
		out->found = b == 1;
		if (out->found)
			kv_rd_value(rd, &out->value, &out->value_len, KV_MAX_VALUE);
		return TEEMS_OK;
	case KV_R_SET:
		b = kv_rd_u8(rd);
		out->version = kv_rd_u64(rd);
		if (!rd->ok || b > 2)
			return TEEMS_ECORRUPT;
		out->asked = b >= 1;
		out->found = b == 2;
		if (out->found)
			kv_rd_value(rd, &out->value, &out->value_len, KV_MAX_VALUE);
		return TEEMS_OK;
	case KV_R_DEL:
	case KV_R_EXISTS:
	case KV_R_ACL_DELUSER:
		out->integer = (int64_t)kv_rd_u64(rd);
		return out->integer < 0 ? TEEMS_ECORRUPT : TEEMS_OK;
	case KV_R_AUTH:
	case KV_R_ACL_SETUSER:
	case KV_R_POLICY_SET:
		return TEEMS_OK;
	case KV_R_ACL_LIST:
	case KV_R_POLICY_GET:
	case KV_R_ACL_GETUSER:
		return decode_list(rd, out);
	case KV_R_INCRBY:
		out->integer = (int64_t)kv_rd_u64(rd);
		out->version = kv_rd_u64(rd);
		return TEEMS_OK;
	case KV_R_VSET:
		out->version = kv_rd_u64(rd);
		return TEEMS_OK;
	case KV_R_MSET:
		return TEEMS_OK;
	case KV_R_MGET:
		return decode_list(rd, out);
	case KV_R_SCAN:
		out->cursor = kv_rd_u64(rd);
		return decode_list(rd, out);
	default:
		return TEEMS_ECORRUPT;
	}
}

int kv_result_decode(const uint8_t *buf, size_t len, struct kv_result *out)
{
	struct kv_rd rd;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > KV_MAX_RESULT)
		return TEEMS_ECORRUPT;
	kv_rd_init(&rd, buf, len);
	if (buf[0] == KV_FORMAT_R) {
		kv_rd_u8(&rd);
		rc = decode_result_r(&rd, out);
	} else {
		uint8_t st = kv_rd_u8(&rd), f = kv_rd_u8(&rd);

		out->version = kv_rd_u64(&rd);
		kv_rd_value(&rd, &out->value, &out->value_len, KV_MAX_VALUE);
		rc = (!rd.ok || st > KV_CAS_FAILED || f > 1 || (f == 0 && out->value_len))
			     ? TEEMS_ECORRUPT
			     : TEEMS_OK;
		out->status = (enum kv_status)st;
		out->found = f == 1;
	}
	if (rc != TEEMS_OK || !rd.ok || rd.off != len) {
		memset(out, 0, sizeof(*out));
		return TEEMS_ECORRUPT;
	}
	return TEEMS_OK;
}
