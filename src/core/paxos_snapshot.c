/* RR-Paxos: snapshots, log compaction, snapshot transfer and install (DESIGN.md sections 4, 5
 * and 7; docs/PROTOCOL.md "RR-Paxos: snapshots"; the shell's side is in paxos.h, "Snapshots
 * and compaction").
 *
 * Snapshot format (version 1, little-endian), what paxos_snapshot_taken returns, what
 * SNAPSHOT_CHUNK carries and what the shell seals:
 *
 *	u8[4] "TPXS"  u8 version (1)
 *	u64 slot                       last slot the state machine applied
 *	u64 epoch                      the epoch the configuration below belongs to
 *	u16 n, then n x (u8 set, u64 reg.epoch, u64 reg.slot, u8[32] key)
 *	                               the applied registration of each replica
 *	u32 k, then k x u8[32]         every key ever registered (at most once per key)
 *	u32 len, len bytes             checkpoint: a WAL record (paxos_persist_encode) holding
 *	                               the taker's promised ballot, commit index, restart promises
 *	                               and every accepted entry above `slot`
 *	u64 len, len bytes             the state machine (the shell's serialization)
 *	u8[32]                         SHA-256 of every byte before it
 *
 * Everything up to `slot` is committed, so the first part is the same at every replica that
 * snapshots the same slot (the state machine is deterministic); the checkpoint is the taker's
 * own and is used only by paxos_restore_snapshot on the taker's disk: a replica that installs
 * a peer's snapshot ignores it and wraps the state machine in a checkpoint of its own.
 *
 * Transfer: the receiver pulls chunk after chunk (SNAPSHOT_REQUEST names the snapshot's slot
 * and the offset it needs); every chunk must continue the transfer it belongs to (same sender,
 * slot and total, offset equal to what it holds), otherwise it is refused (a mixed or torn
 * transfer); the complete blob must parse and match its digest before anything is installed.
 * A leader pushes the first chunk, unasked, to a follower that needs a slot it compacted. */
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/paxos_internal.h"
#include "teems/err.h"

#define SNAP_MAGIC "TPXS"
#define SNAP_VERSION 1
#define SNAP_REG_SIZE (1u + 16u + MSG_PUBLIC_KEY_SIZE)
/* A transfer longer than this is not one of ours: the state machine's bound plus room for the
 * configuration and the checkpoint (keys and the entries above the snapshot). */
#define SNAP_MAX_TRANSFER (PAXOS_SNAPSHOT_MAX + (64ull << 20))

/* A parsed snapshot; pointers into the blob. */
struct snap_view {
	uint64_t slot;
	uint64_t epoch;
	uint16_t n_regs;
	const uint8_t *regs; /* n_regs x SNAP_REG_SIZE */
	uint32_t n_keys;
	const uint8_t *keys;
	const uint8_t *core;
	uint32_t core_len;
	const uint8_t *state;
	size_t state_len;
};

static int sha256(struct paxos *p, const uint8_t *b, size_t len, uint8_t out[MSG_DIGEST_SIZE])
{
	unsigned int n = 0;

	if (EVP_DigestInit_ex(p->md, EVP_sha256(), NULL) != 1 ||
	    (len && EVP_DigestUpdate(p->md, b, len) != 1) ||
	    EVP_DigestFinal_ex(p->md, out, &n) != 1 || n != MSG_DIGEST_SIZE)
		return TEEMS_ECRYPTO;
	return TEEMS_OK;
}

/* Validates the whole blob, digest included. TEEMS_ECORRUPT, TEEMS_EVERSION, TEEMS_ECRYPTO. */
static int snap_parse(struct paxos *p, const uint8_t *b, size_t len, struct snap_view *v)
{
	const uint8_t *i = b, *end;
	uint8_t d[MSG_DIGEST_SIZE];
	uint64_t state_len;

	if (!b || len < 4 + 1 + 16 + 2 + 4 + 4 + 8 + MSG_DIGEST_SIZE || memcmp(b, SNAP_MAGIC, 4))
		return TEEMS_ECORRUPT;
	if (b[4] != SNAP_VERSION)
		return b[4] > SNAP_VERSION ? TEEMS_EVERSION : TEEMS_ECORRUPT;
	end = b + len - MSG_DIGEST_SIZE;
	TRY(sha256(p, b, len - MSG_DIGEST_SIZE, d));
	if (memcmp(d, end, MSG_DIGEST_SIZE) != 0)
		return TEEMS_ECORRUPT; /* torn, mixed or tampered with */
	i = b + 5;
	v->slot = get_le64(i);
	v->epoch = get_le64(i + 8);
	v->n_regs = get_le16(i + 16);
	i += 18;
	if (v->slot == 0 || v->n_regs > QUORUM_MAX_REPLICAS ||
	    (size_t)(end - i) < (size_t)v->n_regs * SNAP_REG_SIZE + 4)
		return TEEMS_ECORRUPT;
	v->regs = i;
	for (uint16_t k = 0; k < v->n_regs; k++)
		if (i[k * SNAP_REG_SIZE] > 1)
			return TEEMS_ECORRUPT;
	i += (size_t)v->n_regs * SNAP_REG_SIZE;
	v->n_keys = get_le32(i);
	i += 4;
	if ((size_t)(end - i) / MSG_PUBLIC_KEY_SIZE < v->n_keys ||
	    (size_t)(end - i) - (size_t)v->n_keys * MSG_PUBLIC_KEY_SIZE < 4)
		return TEEMS_ECORRUPT;
	v->keys = i;
	i += (size_t)v->n_keys * MSG_PUBLIC_KEY_SIZE;
	v->core_len = get_le32(i);
	i += 4;
	if ((size_t)(end - i) < (size_t)v->core_len + 8)
		return TEEMS_ECORRUPT;
	v->core = i;
	i += v->core_len;
	state_len = get_le64(i);
	i += 8;
	if (state_len > PAXOS_SNAPSHOT_MAX || state_len != (uint64_t)(end - i))
		return TEEMS_ECORRUPT;
	v->state = i;
	v->state_len = (size_t)state_len;
	return TEEMS_OK;
}

/* Builds a snapshot of this core at `slot` around the state machine bytes `state`, with the
 * configuration (regs, keys, epoch) as they are now and a checkpoint of the core's persisted
 * state. *out is teems_malloc'd. */
static int snap_build(struct paxos *p, uint64_t slot, const uint8_t *state, size_t state_len,
		      uint8_t **out, size_t *out_len)
{
	struct paxos_persist rec;
	struct paxos_entry_ref *refs = NULL;
	struct paxos_restart_rec *x = &rec.restart;
	size_t core_len = 0, len, n_refs = 0;
	uint8_t *b = NULL, *o;
	uint64_t from = slot > p->log_base ? slot : p->log_base;
	int rc;

	*out = NULL;
	memset(&rec, 0, sizeof(rec));
	rec.seq = p->next_seq > 1 ? p->next_seq - 1 : 1;
	rec.promised = p->promised;
	rec.commit_index = p->commit_index;
	rec.flags = PAXOS_REC_RESTART;
	x->epoch = p->epoch;
	x->rs_epoch = p->rs_epoch;
	x->promised = p->rs_promised;
	x->has_accepted = p->rs_has_acc && p->rs_n_acc > 0;
	x->accepted = p->rs_acc;
	x->n_members = x->has_accepted ? p->rs_n_acc : 0;
	memcpy(x->members, p->rs_acc_m, x->n_members * sizeof(x->members[0]));
	if (p->last_slot > from) {
		refs = teems_malloc((p->last_slot - from) * sizeof(*refs));
		if (!refs)
			return TEEMS_ENOMEM;
	}
	for (uint64_t s = from + 1; s <= p->last_slot; s++) {
		const struct paxos_slot *sl = PSLOT(p, s);

		if (!sl->accepted)
			continue;
		refs[n_refs].slot = s;
		refs[n_refs].ballot = sl->ballot;
		refs[n_refs].adopted = sl->adopted && !sl->committed;
		refs[n_refs].value = sl->value;
		refs[n_refs].len = sl->len;
		n_refs++;
	}
	rec.count = (uint32_t)n_refs;
	rec.entries = refs;
	rc = paxos_persist_encode(&rec, NULL, 0, &core_len);
	if (rc != TEEMS_EFULL)
		goto out;
	len = 5 + 18 + (size_t)p->n * SNAP_REG_SIZE + 4 + p->n_keys * MSG_PUBLIC_KEY_SIZE + 4 +
	      core_len + 8 + state_len + MSG_DIGEST_SIZE;
	rc = TEEMS_ENOMEM;
	b = teems_malloc(len);
	if (!b)
		goto out;
	o = b;
	memcpy(o, SNAP_MAGIC, 4);
	o[4] = SNAP_VERSION;
	o += 5;
	put_le64(o, slot);
	put_le64(o + 8, p->epoch);
	put_le16(o + 16, (uint16_t)p->n);
	o += 18;
	for (unsigned k = 0; k < p->n; k++) {
		o[0] = p->regs[k].set ? 1 : 0;
		put_le64(o + 1, p->regs[k].idx.epoch);
		put_le64(o + 9, p->regs[k].idx.slot);
		memcpy(o + 17, p->regs[k].key, MSG_PUBLIC_KEY_SIZE);
		o += SNAP_REG_SIZE;
	}
	put_le32(o, (uint32_t)p->n_keys);
	o += 4;
	if (p->n_keys)
		memcpy(o, p->keys, p->n_keys * MSG_PUBLIC_KEY_SIZE);
	o += p->n_keys * MSG_PUBLIC_KEY_SIZE;
	put_le32(o, (uint32_t)core_len);
	o += 4;
	rc = paxos_persist_encode(&rec, o, core_len, &core_len);
	if (rc)
		goto out;
	o += core_len;
	put_le64(o, state_len);
	o += 8;
	if (state_len)
		memcpy(o, state, state_len);
	o += state_len;
	rc = sha256(p, b, (size_t)(o - b), o);
	if (rc)
		goto out;
	*out = b;
	*out_len = len;
	b = NULL;
out:
	teems_free(b);
	teems_free(refs);
	return rc;
}

/* Drops every log entry up to k (k may be above last_slot: an install) and shrinks the array.
 * With a ready the dropped values are freed after the step (outputs may point at them). */
static int compact(struct paxos *p, struct paxos_ready *r, uint64_t k)
{
	uint64_t used = p->last_slot - p->log_base;
	uint64_t drop = (k < p->last_slot ? k : p->last_slot) - p->log_base;
	uint64_t keep = used - drop;

	for (uint64_t i = 0; i < drop; i++) {
		if (r)
			TRY(paxos_defer_free(r, p->log[i].value));
		else
			teems_free(p->log[i].value);
	}
	if (keep)
		memmove(p->log, p->log + drop, keep * sizeof(*p->log));
	if (drop)
		memset(p->log + keep, 0, drop * sizeof(*p->log));
	p->log_base = k;
	if (p->last_slot < k)
		p->last_slot = k;
	/* Give memory back once the log is much smaller than its array. */
	if (p->log_cap > 256 && keep * 4 < p->log_cap) {
		uint64_t ncap = 256;
		struct paxos_slot *n;

		while (ncap < keep * 2)
			ncap *= 2;
		n = teems_realloc(p->log, ncap * sizeof(*n));
		if (n) { /* on failure the larger array simply stays */
			p->log = n;
			p->log_cap = ncap;
		}
	}
	return TEEMS_OK;
}

static void load_config(struct paxos *p, const struct snap_view *v, uint8_t (*keys)[32])
{
	for (uint16_t k = 0; k < v->n_regs && k < QUORUM_MAX_REPLICAS; k++) {
		const uint8_t *e = v->regs + (size_t)k * SNAP_REG_SIZE;

		p->regs[k].set = e[0] == 1;
		p->regs[k].idx.epoch = get_le64(e + 1);
		p->regs[k].idx.slot = get_le64(e + 9);
		memcpy(p->regs[k].key, e + 17, MSG_PUBLIC_KEY_SIZE);
	}
	teems_free(p->keys);
	p->keys = keys;
	p->n_keys = p->cap_keys = v->n_keys;
}

/* A copy of the snapshot's key list (NULL with ENOMEM; NULL and OK when it is empty). */
static int copy_keys(const struct snap_view *v, uint8_t (**out)[32])
{
	*out = NULL;
	if (!v->n_keys)
		return TEEMS_OK;
	*out = teems_malloc((size_t)v->n_keys * MSG_PUBLIC_KEY_SIZE);
	if (!*out)
		return TEEMS_ENOMEM;
	memcpy(*out, v->keys, (size_t)v->n_keys * MSG_PUBLIC_KEY_SIZE);
	return TEEMS_OK;
}

/* A snapshot of an earlier epoch: its registrations are void in ours (every replica was
 * registered anew at (epoch, 0) by the restart, and REGISTERs of earlier epochs no longer
 * apply), so only the keys it adds count (a key is registered at most once, ever). */
static int merge_keys(struct paxos *p, const struct snap_view *v)
{
	for (uint32_t k = 0; k < v->n_keys; k++) {
		const uint8_t *key = v->keys + (size_t)k * MSG_PUBLIC_KEY_SIZE;
		bool known = false;

		for (size_t i = 0; i < p->n_keys && !known; i++)
			known = memcmp(p->keys[i], key, MSG_PUBLIC_KEY_SIZE) == 0;
		if (known)
			continue;
		if (p->n_keys == p->cap_keys) {
			size_t ncap = p->cap_keys ? p->cap_keys * 2 : 8;
			void *n = teems_realloc(p->keys, ncap * sizeof(*p->keys));

			if (!n)
				return TEEMS_ENOMEM;
			p->keys = n;
			p->cap_keys = ncap;
		}
		memcpy(p->keys[p->n_keys++], key, MSG_PUBLIC_KEY_SIZE);
	}
	return TEEMS_OK;
}

/* ---- the shell takes one, or restarts from one ---- */

int paxos_snapshot_taken(struct paxos *p, uint64_t slot, const uint8_t *state, size_t len,
			 const uint8_t **blob, size_t *blob_len)
{
	uint8_t *b;
	size_t n;

	if (slot <= p->log_base || slot <= p->snap_slot || slot > p->applied ||
	    len > PAXOS_SNAPSHOT_MAX || (len && !state))
		return TEEMS_EINVAL;
	TRY(snap_build(p, slot, state, len, &b, &n));
	TRY(compact(p, NULL, slot)); /* cannot fail without a ready */
	teems_free(p->snap_blob);
	p->snap_blob = b;
	p->snap_len = n;
	p->snap_slot = slot;
	p->snap_stats.taken++;
	if (blob)
		*blob = b;
	if (blob_len)
		*blob_len = n;
	return TEEMS_OK;
}

int paxos_restore_snapshot(struct paxos *p, const uint8_t *blob, size_t len, uint64_t *slot,
			   const uint8_t **state, size_t *state_len)
{
	struct snap_view v;
	uint8_t(*keys)[32];
	uint8_t *copy;
	int rc;

	if (p->have_time || p->halted || p->last_slot || p->next_seq != 1 || p->snap_blob)
		return TEEMS_EINVAL;
	TRY(snap_parse(p, blob, len, &v));
	if (v.core_len == 0)
		return TEEMS_ECORRUPT;
	TRY(copy_keys(&v, &keys));
	copy = teems_malloc(len);
	if (!copy) {
		teems_free(keys);
		return TEEMS_ENOMEM;
	}
	memcpy(copy, blob, len);
	p->log_base = p->last_slot = p->commit_index = p->applied = v.slot;
	paxos_enter_epoch(p, v.epoch);
	load_config(p, &v, keys);
	p->snap_blob = copy;
	p->snap_len = len;
	p->snap_slot = v.slot;
	/* The checkpoint is an ordinary record: promised ballot, restart promises, entries above
	 * the snapshot, commit index; it also marks the core restarted. */
	rc = paxos_restore(p, v.core, v.core_len);
	if (rc)
		return rc; /* half restored: the caller discards the core */
	*slot = v.slot;
	*state = v.state;
	*state_len = v.state_len;
	return TEEMS_OK;
}

uint64_t paxos_snapshot_index(const struct paxos *p)
{
	return p->log_base;
}

void paxos_snapshot_stats(const struct paxos *p, struct paxos_snapshot_stats *out)
{
	*out = p->snap_stats;
}

void paxos_snapshot_free(struct paxos *p)
{
	teems_free(p->snap_blob);
	teems_free(p->xfer_buf);
	p->snap_blob = p->xfer_buf = NULL;
}

/* ---- transfer: the sender ---- */

static int send_chunk(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t nonce,
		      uint64_t offset)
{
	uint32_t chunk =
		p->cfg.snapshot_chunk ? p->cfg.snapshot_chunk : PAXOS_SNAPSHOT_CHUNK_DEFAULT;
	struct paxos_send *s;
	uint64_t n;

	if (chunk > MSG_MAX_CHUNK)
		chunk = MSG_MAX_CHUNK;
	if (!p->snap_blob || offset >= p->snap_len)
		return TEEMS_OK;
	n = p->snap_len - offset;
	if (n > chunk)
		n = chunk;
	s = paxos_send_new(p, r, to, MSG_SNAPSHOT_CHUNK, nonce);
	if (!s)
		return TEEMS_ENOMEM;
	s->msg.snapshot_chunk.index = p->snap_slot;
	s->msg.snapshot_chunk.total = p->snap_len;
	s->msg.snapshot_chunk.offset = offset;
	s->msg.snapshot_chunk.last = offset + n == p->snap_len;
	s->msg.snapshot_chunk.data.p = p->snap_blob + offset; /* core-owned until the next step */
	s->msg.snapshot_chunk.data.len = (uint32_t)n;
	p->snap_stats.chunks_sent++;
	return TEEMS_OK;
}

int paxos_on_snapshot_request(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_snapshot_request *q = &m->snapshot_request;

	if (!p->snap_blob || p->snap_slot < q->min_index)
		return TEEMS_OK; /* nothing that covers what it needs: it asks someone else */
	/* The snapshot it is fetching, from where it stopped; anything else (index 0, or one we
	 * replaced since) starts our newest from the beginning. */
	return send_chunk(p, r, m->from.replica, m->nonce,
			  q->index == p->snap_slot ? q->offset : 0);
}

int paxos_snapshot_push(struct paxos *p, struct paxos_ready *r, uint16_t to)
{
	if (!p->snap_blob || to >= QUORUM_MAX_REPLICAS)
		return TEEMS_OK;
	if (p->snap_push_hi[to] && p->now.hi_ns - p->snap_push_hi[to] < p->cfg.t_op_ns)
		return TEEMS_OK; /* one start per T_op; the receiver pulls the rest */
	p->snap_push_hi[to] = p->now.hi_ns;
	return send_chunk(p, r, to, 0, 0);
}

/* ---- transfer: the receiver ---- */

static int send_request(struct paxos *p, struct paxos_ready *r, uint16_t to, uint64_t min_index,
			uint64_t index, uint64_t offset)
{
	struct paxos_send *s = paxos_send_new(p, r, to, MSG_SNAPSHOT_REQUEST, 0);

	if (!s)
		return TEEMS_ENOMEM;
	s->msg.snapshot_request.min_index = min_index;
	s->msg.snapshot_request.index = index;
	s->msg.snapshot_request.offset = index ? offset : 0;
	return TEEMS_OK;
}

static bool xfer_live(const struct paxos *p)
{
	return p->xfer_on && p->now.hi_ns - p->xfer_hi <= p->cfg.t_op_ns;
}

static void xfer_drop(struct paxos *p)
{
	teems_free(p->xfer_buf);
	p->xfer_buf = NULL;
	p->xfer_on = false;
	p->xfer_got = p->xfer_total = p->xfer_index = p->xfer_cap = 0;
}

int paxos_snapshot_want(struct paxos *p, struct paxos_ready *r, uint16_t peer, uint64_t min_index)
{
	if (min_index <= p->commit_index || peer >= p->n || peer == p->cfg.self)
		return TEEMS_OK;
	if (xfer_live(p) && p->xfer_index >= min_index)
		return TEEMS_OK; /* on its way */
	if (p->want_min >= min_index && p->want_peer == peer && p->want_sent_hi &&
	    p->now.hi_ns - p->want_sent_hi < p->cfg.heartbeat_ns)
		return TEEMS_OK; /* asked just now */
	if (min_index > p->want_min || p->want_min <= p->commit_index)
		p->want_min = min_index;
	p->want_peer = peer;
	p->want_sent_hi = p->now.hi_ns;
	return send_request(p, r, peer, p->want_min, 0, 0);
}

int paxos_snapshot_tick(struct paxos *p, struct paxos_ready *r)
{
	if (p->xfer_on && !xfer_live(p))
		xfer_drop(p); /* stalled: a later push or request starts again */
	if (p->want_min && p->want_min <= p->commit_index)
		p->want_min = 0;
	if (p->want_min && !xfer_live(p) && p->now.hi_ns - p->want_sent_hi >= p->cfg.t_op_ns / 2) {
		p->want_sent_hi = p->now.hi_ns;
		return send_request(p, r, p->want_peer, p->want_min, 0, 0);
	}
	return TEEMS_OK;
}

/* The complete transfer in xfer_buf checked out: install it (paxos.h, "Installing one"). */
static int install(struct paxos *p, struct paxos_ready *r, const struct snap_view *v)
{
	uint8_t(*keys)[32] = NULL;

	if (v->epoch < p->epoch)
		TRY(merge_keys(p, v));
	else
		TRY(copy_keys(v, &keys));
	if (p->role == PAXOS_CANDIDATE)
		TRY(paxos_elect_abandon(p));
	if (paxos_defer_free(r, p->snap_blob)) { /* chunks of this step may point into it */
		teems_free(keys);
		return TEEMS_ENOMEM;
	}
	p->snap_blob = p->xfer_buf; /* replaced by our own checkpoint at the end of the step */
	p->snap_len = p->xfer_total;
	p->snap_slot = v->slot;
	p->xfer_buf = NULL;
	xfer_drop(p);
	TRY(compact(p, r, v->slot));
	p->commit_index = v->slot;
	p->applied = v->slot;
	if (v->epoch == p->epoch) {
		load_config(p, v, keys);
		paxos_config_installed(p);
	}
	p->snap_out = true;
	p->snap_stats.installed++;
	if (p->want_min <= p->commit_index)
		p->want_min = 0;
	/* The record that tells a restore without this snapshot not to trust what follows. */
	p->install_rec = v->slot;
	TRY(paxos_persist(p, r, 0, 0, false, NULL));
	if (p->halted)
		return TEEMS_OK;
	return paxos_recover_snapshot_installed(p, r);
}

int paxos_on_snapshot_chunk(struct paxos *p, struct paxos_ready *r, const struct msg *m)
{
	const struct msg_snapshot_chunk *c = &m->snapshot_chunk;
	uint16_t from = m->from.replica;
	struct snap_view v;

	if (p->role == PAXOS_LEADER || c->index <= p->commit_index || c->total == 0 ||
	    c->total > SNAP_MAX_TRANSFER)
		return TEEMS_OK; /* not needed (a leader's log covers every committed slot) */
	if (c->offset == 0) {
		if (xfer_live(p) && p->xfer_from == from && p->xfer_index == c->index &&
		    p->xfer_total == c->total && p->xfer_got > 0)
			return TEEMS_OK; /* a second push of the transfer under way */
		xfer_drop(p);
		p->xfer_on = true;
		p->xfer_from = from;
		p->xfer_index = c->index;
		p->xfer_total = c->total;
		p->xfer_hi = p->now.hi_ns;
	} else if (!p->xfer_on || p->xfer_from != from || p->xfer_index != c->index ||
		   p->xfer_total != c->total) {
		p->snap_stats.chunks_refused++; /* a piece of another transfer: never mixed in */
		return TEEMS_OK;
	}
	if (c->offset != p->xfer_got) {
		p->snap_stats.chunks_refused++; /* a gap or a repeat: ask for what comes next */
		if (c->offset < p->xfer_got)
			return TEEMS_OK;
		return send_request(p, r, from, p->xfer_index, p->xfer_index, p->xfer_got);
	}
	if (c->data.len) {
		if (p->xfer_got + c->data.len > p->xfer_cap) {
			/* grows with what arrives (never trusting `total` for one allocation) */
			uint64_t ncap = p->xfer_cap ? p->xfer_cap * 2 : 4096;
			uint8_t *n;

			while (ncap < p->xfer_got + c->data.len)
				ncap *= 2;
			if (ncap > p->xfer_total)
				ncap = p->xfer_total;
			n = teems_realloc(p->xfer_buf, ncap);
			if (!n)
				return TEEMS_ENOMEM;
			p->xfer_buf = n;
			p->xfer_cap = ncap;
		}
		memcpy(p->xfer_buf + p->xfer_got, c->data.p, c->data.len);
		p->xfer_got += c->data.len;
	}
	p->xfer_hi = p->now.hi_ns;
	if (p->xfer_got < p->xfer_total)
		return send_request(p, r, from, p->xfer_index, p->xfer_index, p->xfer_got);
	if (snap_parse(p, p->xfer_buf, p->xfer_total, &v) != TEEMS_OK || v.slot != p->xfer_index ||
	    v.epoch > p->epoch || v.n_regs != p->n) {
		/* Torn or mixed after all, or from an epoch we have not entered yet (the restart
		 * messages bring us there first): nothing of it is used. */
		p->snap_stats.transfers_refused++;
		xfer_drop(p);
		return TEEMS_OK;
	}
	return install(p, r, &v);
}

int paxos_snapshot_finish_step(struct paxos *p, struct paxos_ready *r)
{
	struct snap_view v;
	uint8_t *b;
	size_t n;

	if (!p->snap_out)
		return TEEMS_OK;
	p->snap_out = false;
	/* Our own checkpoint around the peer's state machine: what our disk must hold. The
	 * peer's snapshot was checked when it arrived. */
	TRY(snap_parse(p, p->snap_blob, p->snap_len, &v));
	TRY(snap_build(p, v.slot, v.state, v.state_len, &b, &n));
	if (paxos_defer_free(r, p->snap_blob)) {
		teems_free(b);
		return TEEMS_ENOMEM;
	}
	p->snap_blob = b;
	p->snap_len = n;
	TRY(snap_parse(p, b, n, &v));
	r->snapshot.blob = b;
	r->snapshot.blob_len = n;
	r->snapshot.slot = v.slot;
	r->snapshot.install = true;
	r->snapshot.state = v.state;
	r->snapshot.state_len = v.state_len;
	return TEEMS_OK;
}
