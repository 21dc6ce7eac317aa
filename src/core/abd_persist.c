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

int abd_persist_decode(const uint8_t *rec, size_t len, struct abd_persist *out)
{
	const uint8_t *p = rec;

	memset(out, 0, sizeof(*out));
	if (len < REC_FIXED)
		return TEEMS_ECORRUPT;
	if (p[0] != ABD_PERSIST_VERSION)
		return p[0] > ABD_PERSIST_VERSION ? TEEMS_EVERSION : TEEMS_ECORRUPT;
	out->flags = p[1];
	out->seq = get(p + 2, 8);
	p += REC_FIXED;
	if ((out->flags != ABD_REC_REGISTER && out->flags != ABD_REC_RECOVERED) || out->seq == 0)
		return TEEMS_ECORRUPT;
	if (out->flags == ABD_REC_RECOVERED)
		return len == REC_FIXED ? 0 : TEEMS_ECORRUPT;
	if (len - REC_FIXED < REG_FIXED)
		return TEEMS_ECORRUPT;
	out->key_len = (uint32_t)get(p, 4);
	p += 4;
	if (out->key_len > MSG_MAX_KEY ||
	    (size_t)(rec + len - p) < (size_t)out->key_len + REG_FIXED - 4)
		return TEEMS_ECORRUPT;
	out->key = p;
	p += out->key_len;
	out->ts.seq = get(p, 8);
	out->ts.replica = (uint16_t)get(p + 8, 2);
	out->ts.reg.epoch = get(p + 10, 8);
	out->ts.reg.slot = get(p + 18, 8);
	out->ts.op = get(p + 26, 8);
	if (p[34] > 1)
		return TEEMS_ECORRUPT;
	out->tombstone = p[34];
	out->len = (uint32_t)get(p + 35, 4);
	p += 39;
	if (out->len > MSG_MAX_VALUE || (size_t)(rec + len - p) != out->len ||
	    (out->tombstone && out->len))
		return TEEMS_ECORRUPT;
	out->value = p;
	return 0;
}

int abd_restore(struct abd *a, const uint8_t *rec, size_t len)
{
	struct abd_ready scratch;
	struct abd_persist d;
	uint64_t saved;
	bool stored;
	int rc;

	if (a->stepped)
		return TEEMS_EINVAL;
	rc = abd_persist_decode(rec, len, &d);
	if (rc)
		return rc;
	if (d.flags == ABD_REC_RECOVERED)
		goto done;
	abd_ready_init(&scratch);
	saved = a->next_seq;
	rc = abd_store(a, &scratch, d.key, d.key_len, abd_hash(d.key, d.key_len), &d.ts,
		       d.tombstone, d.value, d.len, false, &stored);
	abd_ready_free(&scratch);
	a->next_seq = saved;
	if (rc)
		return rc;
	if (stored) {
		struct abd_reg *g = abd_reg_find(a, d.key, d.key_len, abd_hash(d.key, d.key_len));

		g->seq = d.seq;
	}
	if (d.ts.replica == a->cfg.self && !msg_regidx_cmp(&d.ts.reg, &a->cfg.reg) &&
	    d.ts.op > a->op_ctr)
		a->op_ctr = d.ts.op;
done:
	if (d.seq >= a->next_seq)
		a->next_seq = d.seq + 1;
	/* every restored record is durable: it was read back from the WAL */
	a->synced_seq = a->next_seq - 1;
	a->restored = true;
	a->restarted = true;
	a->suspicious = !(a->cfg.unsafe & ABD_UNSAFE_NO_RECOVERY);
	if (a->suspicious)
		memset(&a->reg, 0, sizeof(a->reg)); /* unregistered until abd_begin_recovery */
	return 0;
}

int abd_snapshot_records(const struct abd *a, int (*fn)(void *arg, const struct abd_persist *rec),
			 void *arg)
{
	struct abd_persist p;
	uint64_t top = 0;
	int rc;

	for (size_t b = 0; b < a->n_buckets; b++) {
		for (const struct abd_reg *g = a->buckets[b]; g; g = g->next) {
			memset(&p, 0, sizeof(p));
			p.seq = g->seq;
			p.flags = ABD_REC_REGISTER;
			p.key = g->key;
			p.key_len = g->key_len;
			p.ts = g->ts;
			p.tombstone = g->tombstone;
			p.value = g->value;
			p.len = g->len;
			rc = fn(arg, &p);
			if (rc)
				return rc;
			if (g->seq > top)
				top = g->seq;
		}
	}
	/* The seq must not go back: the WAL records after the snapshot continue above it. */
	if (a->next_seq - 1 > top) {
		memset(&p, 0, sizeof(p));
		p.seq = a->next_seq - 1;
		p.flags = ABD_REC_RECOVERED;
		return fn(arg, &p);
	}
	return 0;
}
