/* RR-Paxos: the WAL record format and restart from it (DESIGN.md sections 4 and 7).
 *
 * Record layout, version 2 (little-endian; docs/PROTOCOL.md "Paxos WAL record"):
 *
 *	u8  version (2)       u8  flags (PAXOS_REC_*)      u64 seq
 *	ballot promised       u64 commit_index
 *	[flags & REGISTERED:  regidx own_reg, u8[32] own_key]
 *	[flags & RESTART:     u64 epoch, u64 rs_epoch, ballot rs_promised, u8 has_accepted,
 *	                      ballot accepted, u16 n, n x (u16 replica, regidx)]
 *	[flags & INSTALLED:   u64 snapshot_index]
 *	u32 count, then count entries in strictly ascending slot order:
 *	    u64 slot (>= 1), ballot, u8 adopted (0 or 1), u32 len (<= MSG_MAX_BLOB), len bytes
 *
 * with ballot = u64 round, u16 replica, u64 reg.epoch, u64 reg.slot and regidx = u64 epoch,
 * u64 slot. Version 1 is the same layout without the RESTART flag; it is still restored.
 * The record must be consumed exactly. Records reach the core through the sealed WAL
 * (authenticated), so a malformed one is a bug or a foreign file: it is refused, never trusted,
 * and never crashes the core. */
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

#define BALLOT_SIZE 26u
#define HEADER_SIZE (1u + 1u + 8u + BALLOT_SIZE + 8u + 4u)
#define REG_SIZE (16u + MSG_PUBLIC_KEY_SIZE)
#define ENTRY_HEADER (8u + BALLOT_SIZE + 1u + 4u)
#define KNOWN_FLAGS \
	(PAXOS_REC_REGISTERED | PAXOS_REC_RECOVERED | PAXOS_REC_RESTART | PAXOS_REC_INSTALLED)
#define RESTART_SIZE (8u + 8u + BALLOT_SIZE + 1u + BALLOT_SIZE + 2u)
#define MEMBER_SIZE (2u + 16u)
/* Slots above this are refused on restore: a log that long is not a log this core wrote. */
#define RESTORE_MAX_SLOT (1ull << 40)

static uint8_t *put_ballot(uint8_t *o, const struct msg_ballot *b)
{
	put_le64(o, b->round);
	put_le16(o + 8, b->replica);
	put_le64(o + 10, b->reg.epoch);
	put_le64(o + 18, b->reg.slot);
	return o + BALLOT_SIZE;
}

static const uint8_t *get_ballot(const uint8_t *i, struct msg_ballot *b)
{
	b->round = get_le64(i);
	b->replica = get_le16(i + 8);
	b->reg.epoch = get_le64(i + 10);
	b->reg.slot = get_le64(i + 18);
	return i + BALLOT_SIZE;
}

int paxos_persist_encode(const struct paxos_persist *rec, uint8_t *buf, size_t cap, size_t *len)
{
	size_t need = HEADER_SIZE;
	uint8_t *o;

	if (rec->flags & ~KNOWN_FLAGS)
		return TEEMS_EINVAL;
	if (rec->flags & PAXOS_REC_REGISTERED)
		need += REG_SIZE;
	if (rec->flags & PAXOS_REC_RESTART) {
		if (rec->restart.n_members > QUORUM_MAX_REPLICAS)
			return TEEMS_EINVAL;
		need += RESTART_SIZE + MEMBER_SIZE * rec->restart.n_members;
	}
	if (rec->flags & PAXOS_REC_INSTALLED)
		need += 8;
	for (uint32_t i = 0; i < rec->count; i++) {
		if (rec->entries[i].len > MSG_MAX_BLOB || rec->entries[i].slot == 0 ||
		    (i && rec->entries[i].slot <= rec->entries[i - 1].slot))
			return TEEMS_EINVAL;
		need += ENTRY_HEADER + rec->entries[i].len;
	}
	*len = need;
	if (!buf || cap < need)
		return TEEMS_EFULL;
	o = buf;
	*o++ = PAXOS_PERSIST_VERSION;
	*o++ = (uint8_t)rec->flags;
	put_le64(o, rec->seq);
	o = put_ballot(o + 8, &rec->promised);
	put_le64(o, rec->commit_index);
	o += 8;
	if (rec->flags & PAXOS_REC_REGISTERED) {
		put_le64(o, rec->own_reg.epoch);
		put_le64(o + 8, rec->own_reg.slot);
		memcpy(o + 16, rec->own_key, MSG_PUBLIC_KEY_SIZE);
		o += REG_SIZE;
	}
	if (rec->flags & PAXOS_REC_RESTART) {
		const struct paxos_restart_rec *x = &rec->restart;

		put_le64(o, x->epoch);
		put_le64(o + 8, x->rs_epoch);
		o = put_ballot(o + 16, &x->promised);
		*o++ = x->has_accepted ? 1 : 0;
		o = put_ballot(o, &x->accepted);
		put_le16(o, (uint16_t)x->n_members);
		o += 2;
		for (uint32_t k = 0; k < x->n_members; k++) {
			put_le16(o, x->members[k].replica);
			put_le64(o + 2, x->members[k].reg.epoch);
			put_le64(o + 10, x->members[k].reg.slot);
			o += MEMBER_SIZE;
		}
	}
	if (rec->flags & PAXOS_REC_INSTALLED) {
		put_le64(o, rec->snapshot_index);
		o += 8;
	}
	put_le32(o, rec->count);
	o += 4;
	for (uint32_t i = 0; i < rec->count; i++) {
		const struct paxos_entry_ref *e = &rec->entries[i];

		put_le64(o, e->slot);
		o = put_ballot(o + 8, &e->ballot);
		*o++ = e->adopted ? 1 : 0;
		put_le32(o, e->len);
		o += 4;
		if (e->len)
			memcpy(o, e->value, e->len);
		o += e->len;
	}
	return TEEMS_OK;
}

/* A parsed record header; entries stay in the buffer. */
struct parsed {
	uint64_t seq;
	struct msg_ballot promised;
	uint64_t commit_index;
	unsigned flags;
	struct paxos_restart_rec restart;
	uint64_t snapshot_index;
	uint32_t count;
	const uint8_t *entries;
	size_t entries_len;
};

static bool ballot_ok(const struct msg_ballot *b)
{
	return b->replica < QUORUM_MAX_REPLICAS || (b->round == 0 && b->replica == 0);
}

/* Validates the whole record before anything is changed, so a refused record leaves the core
 * as it was. */
static int parse(const uint8_t *rec, size_t len, struct parsed *out)
{
	const uint8_t *i = rec, *end = rec + len;
	uint64_t prev = 0;

	if (len < HEADER_SIZE)
		return TEEMS_ECORRUPT;
	if (rec[0] != PAXOS_PERSIST_VERSION && rec[0] != 1)
		return rec[0] > PAXOS_PERSIST_VERSION ? TEEMS_EVERSION : TEEMS_ECORRUPT;
	out->flags = rec[1];
	if ((out->flags & ~KNOWN_FLAGS) ||
	    (rec[0] == 1 && (out->flags & (PAXOS_REC_RESTART | PAXOS_REC_INSTALLED))))
		return TEEMS_ECORRUPT;
	out->seq = get_le64(rec + 2);
	i = get_ballot(rec + 10, &out->promised);
	out->commit_index = get_le64(i);
	i += 8;
	if (out->seq == 0 || !ballot_ok(&out->promised) || out->commit_index > RESTORE_MAX_SLOT)
		return TEEMS_ECORRUPT;
	if (out->flags & PAXOS_REC_REGISTERED) {
		if ((size_t)(end - i) < REG_SIZE + 4)
			return TEEMS_ECORRUPT;
		i += REG_SIZE;
	}
	if (out->flags & PAXOS_REC_RESTART) {
		struct paxos_restart_rec *x = &out->restart;

		if ((size_t)(end - i) < RESTART_SIZE + 4)
			return TEEMS_ECORRUPT;
		x->epoch = get_le64(i);
		x->rs_epoch = get_le64(i + 8);
		i = get_ballot(i + 16, &x->promised);
		if (*i > 1)
			return TEEMS_ECORRUPT;
		x->has_accepted = *i++ == 1;
		i = get_ballot(i, &x->accepted);
		x->n_members = get_le16(i);
		i += 2;
		if (x->n_members > QUORUM_MAX_REPLICAS || !ballot_ok(&x->promised) ||
		    !ballot_ok(&x->accepted) || x->has_accepted != (x->n_members > 0) ||
		    (size_t)(end - i) < (size_t)MEMBER_SIZE * x->n_members + 4)
			return TEEMS_ECORRUPT;
		for (uint32_t k = 0; k < x->n_members; k++) {
			x->members[k].replica = get_le16(i);
			x->members[k].reg.epoch = get_le64(i + 2);
			x->members[k].reg.slot = get_le64(i + 10);
			if (x->members[k].replica >= QUORUM_MAX_REPLICAS ||
			    (k && x->members[k].replica <= x->members[k - 1].replica))
				return TEEMS_ECORRUPT;
			i += MEMBER_SIZE;
		}
	}
	out->snapshot_index = 0;
	if (out->flags & PAXOS_REC_INSTALLED) {
		if ((size_t)(end - i) < 8 + 4)
			return TEEMS_ECORRUPT;
		out->snapshot_index = get_le64(i);
		i += 8;
		if (out->snapshot_index == 0 || out->snapshot_index > RESTORE_MAX_SLOT)
			return TEEMS_ECORRUPT;
	}
	out->count = get_le32(i);
	i += 4;
	out->entries = i;
	for (uint32_t k = 0; k < out->count; k++) {
		struct msg_ballot b;
		uint64_t slot;
		uint32_t vlen;

		if ((size_t)(end - i) < ENTRY_HEADER)
			return TEEMS_ECORRUPT;
		slot = get_le64(i);
		get_ballot(i + 8, &b);
		vlen = get_le32(i + 8 + BALLOT_SIZE + 1);
		if (slot == 0 || slot <= prev || slot > RESTORE_MAX_SLOT || !ballot_ok(&b) ||
		    i[8 + BALLOT_SIZE] > 1 || vlen > MSG_MAX_BLOB ||
		    (size_t)(end - i) - ENTRY_HEADER < vlen)
			return TEEMS_ECORRUPT;
		prev = slot;
		i += ENTRY_HEADER + vlen;
	}
	if (i != end)
		return TEEMS_ECORRUPT;
	out->entries_len = (size_t)(end - out->entries);
	return TEEMS_OK;
}

static void raise_promise(struct paxos *p, const struct msg_ballot *b)
{
	if (msg_ballot_cmp(b, &p->promised) > 0)
		p->promised = *b;
	if (b->round > p->max_round_seen)
		p->max_round_seen = b->round;
}

int paxos_restore(struct paxos *p, const uint8_t *rec, size_t len)
{
	struct parsed pr;
	const uint8_t *i;
	int rc;

	if (p->have_time || p->halted)
		return TEEMS_EINVAL; /* only between paxos_new and the first step */
	if (!rec)
		return TEEMS_ECORRUPT;
	rc = parse(rec, len, &pr);
	if (rc)
		return rc;
	raise_promise(p, &pr.promised);
	if (pr.flags & PAXOS_REC_RESTART) {
		rc = paxos_restart_restore(p, &pr.restart);
		if (rc)
			return rc;
	}
	/* A snapshot installed from a peer that this restore did not start from: the records
	 * after it name commit indexes over slots that never were in this WAL, so stale entries
	 * below it must not become committed (docs/PROTOCOL.md "RR-Paxos: snapshots"). */
	if ((pr.flags & PAXOS_REC_INSTALLED) && pr.snapshot_index > p->commit_index)
		p->restore_frozen = true;
	i = pr.entries;
	for (uint32_t k = 0; k < pr.count; k++) {
		struct paxos_slot *s;
		struct msg_ballot b;
		uint64_t slot = get_le64(i);
		bool adopted;
		uint32_t vlen;
		uint8_t *copy = NULL;

		get_ballot(i + 8, &b);
		adopted = i[8 + BALLOT_SIZE] == 1;
		vlen = get_le32(i + 8 + BALLOT_SIZE + 1);
		i += ENTRY_HEADER;
		raise_promise(p, &b);
		if (slot <= p->commit_index) {
			i += vlen;
			continue; /* committed slots are final */
		}
		rc = paxos_log_reserve(p, slot);
		if (rc)
			return rc;
		if (vlen) {
			copy = teems_malloc(vlen);
			if (!copy)
				return TEEMS_ENOMEM;
			memcpy(copy, i, vlen);
		}
		i += vlen;
		s = PSLOT(p, slot);
		teems_free(s->value);
		memset(s, 0, sizeof(*s));
		s->accepted = true;
		s->adopted = adopted;
		s->ballot = b;
		s->value = copy;
		s->len = vlen;
		s->seq = pr.seq;
		paxos_slot_classify(s);
		if (slot > p->last_slot)
			p->last_slot = slot;
	}
	/* The commit index of a record covers entries of this record or earlier ones (the WAL is
	 * restored as a prefix), so the slots up to it hold their committed values. */
	while (!p->restore_frozen && p->commit_index < pr.commit_index &&
	       p->commit_index < p->last_slot && PSLOT(p, p->commit_index + 1)->accepted) {
		PSLOT(p, p->commit_index + 1)->committed = true;
		PSLOT(p, p->commit_index + 1)->adopted = false;
		p->commit_index++;
		rc = paxos_config_note(p, p->commit_index);
		if (rc)
			return rc;
	}
	if (pr.seq >= p->next_seq)
		p->next_seq = pr.seq + 1;
	p->synced_seq = p->next_seq - 1; /* what was restored is durable */
	p->promised_seq = p->synced_seq;
	/* Restored entries above the commit index were votes of the previous incarnation: for
	 * this one they are state (section 4, step 5), reported as adopted. */
	for (uint64_t s = p->commit_index + 1; s <= p->last_slot; s++)
		if (PSLOT(p, s)->accepted)
			PSLOT(p, s)->adopted = true;
	if (!p->restarted || p->registered)
		paxos_mark_restarted(p); /* section 4, step 1: the sealed state may be stale */
	/* A restarted incarnation first expects the newest registration of its replica it
	 * knows; the leader corrects it (MISMATCH) if the sealed state was stale. */
	p->reg_expected = paxos_known_reg(p, p->cfg.self);
	return TEEMS_OK;
}
