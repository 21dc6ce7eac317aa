/* RR-ABD WAL records and restart (abd.h). Layout, little-endian:
 *   u8 version (ABD_PERSIST_VERSION), u8 flags, u64 seq,
 *   ABD_REC_REGISTER only: u32 key_len, key, u64 ts.seq, u16 ts.replica, u64 ts.reg.epoch,
 *   u64 ts.reg.slot, u64 ts.op, u8 tombstone, u32 len, value.
 * Stability is not stored: a restored register is never stable (section 4, step 5). */
#include <string.h>

#include "common/alloc.h"
#include "core/abd_internal.h"
#include "teems/err.h"

#define REC_FIXED (1 + 1 + 8)
#define REG_FIXED (4 + 8 + 2 + 8 + 8 + 8 + 1 + 4)

static uint8_t *put(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	return p + bytes;
}

static uint64_t get(const uint8_t *p, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int abd_persist_encode(const struct abd_persist *rec, uint8_t *buf, size_t cap, size_t *len)
{
	size_t need = REC_FIXED;
	uint8_t *p = buf;

	if (rec->flags != ABD_REC_REGISTER && rec->flags != ABD_REC_RECOVERED)
		return TEEMS_EINVAL;
	if (rec->flags == ABD_REC_REGISTER) {
		if (rec->key_len > MSG_MAX_KEY || rec->len > MSG_MAX_VALUE ||
		    (rec->tombstone && rec->len))
			return TEEMS_EINVAL;
		need += REG_FIXED + rec->key_len + rec->len;
	}
	*len = need;
	if (cap < need)
		return TEEMS_EFULL;
	*p++ = ABD_PERSIST_VERSION;
	*p++ = (uint8_t)rec->flags;
	p = put(p, rec->seq, 8);
	if (rec->flags == ABD_REC_REGISTER) {
		p = put(p, rec->key_len, 4);
		if (rec->key_len)
			memcpy(p, rec->key, rec->key_len);
		p += rec->key_len;
		p = put(p, rec->ts.seq, 8);
		p = put(p, rec->ts.replica, 2);
		p = put(p, rec->ts.reg.epoch, 8);
		p = put(p, rec->ts.reg.slot, 8);
		p = put(p, rec->ts.op, 8);
		*p++ = rec->tombstone;
		p = put(p, rec->len, 4);
		if (rec->len)
			memcpy(p, rec->value, rec->len);
	}
	return 0;
}

int abd_restore(struct abd *a, const uint8_t *rec, size_t len)
{
	struct abd_ready scratch;
	struct msg_timestamp ts;
	const uint8_t *p = rec, *key, *value;
	uint32_t key_len, vlen;
	uint64_t seq, saved;
	unsigned flags;
	bool tomb, stored;
	int rc;

	if (a->stepped)
		return TEEMS_EINVAL;
	if (len < REC_FIXED)
		return TEEMS_ECORRUPT;
	if (p[0] != ABD_PERSIST_VERSION)
		return p[0] > ABD_PERSIST_VERSION ? TEEMS_EVERSION : TEEMS_ECORRUPT;
	flags = p[1];
	seq = get(p + 2, 8);
	p += REC_FIXED;
	if ((flags != ABD_REC_REGISTER && flags != ABD_REC_RECOVERED) || seq == 0)
		return TEEMS_ECORRUPT;
	if (flags == ABD_REC_RECOVERED) {
		if (len != REC_FIXED)
			return TEEMS_ECORRUPT;
		goto done;
	}
	if (len - REC_FIXED < REG_FIXED)
		return TEEMS_ECORRUPT;
	key_len = (uint32_t)get(p, 4);
	p += 4;
	if (key_len > MSG_MAX_KEY || (size_t)(rec + len - p) < (size_t)key_len + REG_FIXED - 4)
		return TEEMS_ECORRUPT;
	key = p;
	p += key_len;
	ts.seq = get(p, 8);
	ts.replica = (uint16_t)get(p + 8, 2);
	ts.reg.epoch = get(p + 10, 8);
	ts.reg.slot = get(p + 18, 8);
	ts.op = get(p + 26, 8);
	if (p[34] > 1)
		return TEEMS_ECORRUPT;
	tomb = p[34];
	vlen = (uint32_t)get(p + 35, 4);
	p += 39;
	if (vlen > MSG_MAX_VALUE || (size_t)(rec + len - p) != vlen || (tomb && vlen))
		return TEEMS_ECORRUPT;
	value = p;
	abd_ready_init(&scratch);
	saved = a->next_seq;
	rc = abd_store(a, &scratch, key, key_len, abd_hash(key, key_len), &ts, tomb, value, vlen,
		       false, &stored);
	abd_ready_free(&scratch);
	a->next_seq = saved;
	if (rc)
		return rc;
	if (stored) {
		struct abd_reg *g = abd_reg_find(a, key, key_len, abd_hash(key, key_len));

		g->seq = seq;
	}
	if (ts.replica == a->cfg.self && !msg_regidx_cmp(&ts.reg, &a->cfg.reg) && ts.op > a->op_ctr)
		a->op_ctr = ts.op;
done:
	if (seq >= a->next_seq)
		a->next_seq = seq + 1;
	/* every restored record is durable: it was read back from the WAL */
	a->synced_seq = a->next_seq - 1;
	a->restored = true;
	a->restarted = true;
	a->suspicious = !(a->cfg.unsafe & ABD_UNSAFE_NO_RECOVERY);
	if (a->suspicious)
		memset(&a->reg, 0, sizeof(a->reg)); /* unregistered until abd_begin_recovery */
	return 0;
}
