/* The wire codec (msg.h; the format is documented in docs/PROTOCOL.md, "Wire format").
 *
 * Every struct on the wire is described once, as a field list (an X-macro in the style of
 * dqlite's serialize.h): X(kind, field, cap). From that one list GEN_STRUCT generates the
 * encoder, the decoder and the equality test, so the three cannot disagree about the order or
 * the kind of a field. Each kind has enc_<kind>, dec_<kind> and eq_<kind>, typed on the C type of
 * the field, so a field list that names the wrong kind does not compile. Rules that span several
 * fields are check_<message> functions, run by both the encoder (TEEMS_EINVAL) and the decoder
 * (TEEMS_ECORRUPT).
 *
 * The writer keeps counting when the buffer is full, so one pass both encodes and measures. */
#include <assert.h>
#include <string.h>

#include "common/bytes.h"
#include "core/msg.h"
#include "teems/err.h"

_Static_assert(MSG_MAX_REPLICAS <= 64, "replica ids index 64-bit masks in the cores");
_Static_assert(MSG_MAX_REPLICAS < MSG_NO_REPLICA, "MSG_NO_REPLICA must not be a replica id");
_Static_assert(MSG_MAX_FRAME <= UINT32_MAX, "the length prefix is a u32");
_Static_assert(MSG_MAX_BLOB + 1024 <= MSG_MAX_FRAME, "a maximal blob must fit a frame");
_Static_assert(MSG_MAX_VALUE + MSG_MAX_KEY + 1024 <= MSG_MAX_FRAME,
	       "a maximal ABD write must fit a frame");
_Static_assert((MSG_MAX_RANGES & (MSG_MAX_RANGES - 1)) == 0, "MSG_MAX_RANGES: a power of two");

/* ---- writer and reader ---- */

struct wr {
	uint8_t *buf;
	size_t cap;
	size_t pos; /* bytes the frame needs so far, even past cap */
	int err;
	const char *why;
};

struct rd {
	const uint8_t *start;
	const uint8_t *p;
	const uint8_t *end;
	const char *why;
};

static void wr_fail(struct wr *w, const char *why)
{
	if (w->err == 0) {
		w->err = TEEMS_EINVAL;
		w->why = why;
	}
}

/* Reserves n bytes; returns where to write them, or NULL when they fall outside the buffer (or
 * the frame would exceed MSG_MAX_FRAME, which fails the encoding). */
static uint8_t *wr_room(struct wr *w, size_t n)
{
	size_t at = w->pos;

	if (w->err != 0)
		return NULL;
	if (n > MSG_MAX_FRAME || w->pos > MSG_MAX_FRAME - n) {
		wr_fail(w, "frame larger than MSG_MAX_FRAME");
		return NULL;
	}
	w->pos += n;
	if (w->buf == NULL || w->pos > w->cap)
		return NULL;
	return w->buf + at;
}

static int corrupt(struct rd *r, const char *why)
{
	r->why = why;
	return TEEMS_ECORRUPT;
}

static const uint8_t *rd_take(struct rd *r, size_t n)
{
	const uint8_t *at = r->p;

	if ((size_t)(r->end - r->p) < n) {
		r->why = "truncated";
		return NULL;
	}
	r->p += n;
	return at;
}

#define TRY(expr)                   \
	do {                        \
		int rv_ = (expr);   \
		if (rv_ != 0)       \
			return rv_; \
	} while (0)

/* ---- primitive kinds: enc_K(w, const T *, cap), dec_K(r, T *, cap), eq_K(a, b) ---- */

static void put8(struct wr *w, uint8_t v)
{
	uint8_t *p = wr_room(w, 1);
	if (p != NULL)
		p[0] = v;
}

static int get8(struct rd *r, uint8_t *v)
{
	const uint8_t *p = rd_take(r, 1);
	if (p == NULL)
		return TEEMS_ECORRUPT;
	*v = p[0];
	return 0;
}

static void enc_u16(struct wr *w, const uint16_t *v, uint32_t cap)
{
	uint8_t *p = wr_room(w, 2);
	if (p != NULL)
		put_le16(p, *v);
}

static int dec_u16(struct rd *r, uint16_t *v, uint32_t cap)
{
	const uint8_t *p = rd_take(r, 2);
	if (p == NULL)
		return TEEMS_ECORRUPT;
	*v = get_le16(p);
	return 0;
}

static void enc_u32(struct wr *w, const uint32_t *v, uint32_t cap)
{
	uint8_t *p = wr_room(w, 4);
	if (p != NULL)
		put_le32(p, *v);
}

static int dec_u32(struct rd *r, uint32_t *v, uint32_t cap)
{
	const uint8_t *p = rd_take(r, 4);
	if (p == NULL)
		return TEEMS_ECORRUPT;
	*v = get_le32(p);
	return 0;
}

static void enc_u64(struct wr *w, const uint64_t *v, uint32_t cap)
{
	uint8_t *p = wr_room(w, 8);
	if (p != NULL)
		put_le64(p, *v);
}

static int dec_u64(struct rd *r, uint64_t *v, uint32_t cap)
{
	const uint8_t *p = rd_take(r, 8);
	if (p == NULL)
		return TEEMS_ECORRUPT;
	*v = get_le64(p);
	return 0;
}

#define EQ_SCALAR(kind, type)                               \
	static bool eq_##kind(const type *a, const type *b) \
	{                                                   \
		return *a == *b;                            \
	}
EQ_SCALAR(u16, uint16_t)
EQ_SCALAR(u32, uint32_t)
EQ_SCALAR(u64, uint64_t)
EQ_SCALAR(bool, bool)

/* Bools are one byte, 0 or 1: anything else is refused, so the encoding stays canonical. */
static void enc_bool(struct wr *w, const bool *v, uint32_t cap)
{
	put8(w, *v ? 1 : 0);
}

static int dec_bool(struct rd *r, bool *v, uint32_t cap)
{
	uint8_t b;

	TRY(get8(r, &b));
	if (b > 1)
		return corrupt(r, "bool not 0 or 1");
	*v = b == 1;
	return 0;
}

/* A replica id: u16 below MSG_MAX_REPLICAS (it indexes 64-bit masks). */
static void enc_replica(struct wr *w, const uint16_t *v, uint32_t cap)
{
	if (*v >= MSG_MAX_REPLICAS)
		wr_fail(w, "replica id out of range");
	enc_u16(w, v, 0);
}

static int dec_replica(struct rd *r, uint16_t *v, uint32_t cap)
{
	TRY(dec_u16(r, v, 0));
	if (*v >= MSG_MAX_REPLICAS)
		return corrupt(r, "replica id out of range");
	return 0;
}

#define eq_replica eq_u16

/* A replica id or MSG_NO_REPLICA (leader hints). */
static void enc_opt_replica(struct wr *w, const uint16_t *v, uint32_t cap)
{
	if (*v >= MSG_MAX_REPLICAS && *v != MSG_NO_REPLICA)
		wr_fail(w, "leader hint out of range");
	enc_u16(w, v, 0);
}

static int dec_opt_replica(struct rd *r, uint16_t *v, uint32_t cap)
{
	TRY(dec_u16(r, v, 0));
	if (*v >= MSG_MAX_REPLICAS && *v != MSG_NO_REPLICA)
		return corrupt(r, "leader hint out of range");
	return 0;
}

#define eq_opt_replica eq_u16

/* Enums are one byte holding a value in [lo, hi]. (A function, not an inline comparison, so
 * that a range starting at 0 does not trip -Wtype-limits.) */
static bool in_range(int v, int lo, int hi)
{
	return v >= lo && v <= hi;
}

#define ENUM_KIND(kind, ctype, lo, hi)                                     \
	static void enc_##kind(struct wr *w, const ctype *v, uint32_t cap) \
	{                                                                  \
		if (!in_range((int)*v, lo, hi))                            \
			wr_fail(w, "invalid " #kind);                      \
		put8(w, (uint8_t)*v);                                      \
	}                                                                  \
	static int dec_##kind(struct rd *r, ctype *v, uint32_t cap)        \
	{                                                                  \
		uint8_t b;                                                 \
		TRY(get8(r, &b));                                          \
		if (!in_range(b, lo, hi))                                  \
			return corrupt(r, "invalid " #kind);               \
		*v = (ctype)b;                                             \
		return 0;                                                  \
	}                                                                  \
	static bool eq_##kind(const ctype *a, const ctype *b)              \
	{                                                                  \
		return *a == *b;                                           \
	}

ENUM_KIND(type, enum msg_type, MSG_TYPE_MIN_, MSG_TYPE_MAX_)
ENUM_KIND(sync, enum msg_sync, MSG_VOLATILE, MSG_SYNCED)
ENUM_KIND(client_status, enum msg_client_status, MSG_CLIENT_OK, MSG_CLIENT_UNKNOWN)
ENUM_KIND(register_status, enum msg_register_status, MSG_REGISTER_COMMITTED, MSG_REGISTER_REJECTED)
ENUM_KIND(nack_reason, enum msg_nack_reason, MSG_NACK_BALLOT, MSG_NACK_BUSY)
ENUM_KIND(query_mode, enum msg_query_mode, MSG_QUERY_TIMESTAMP, MSG_QUERY_VALUE)

/* 32 raw bytes (digests, public keys). */
static void enc_b32(struct wr *w, const uint8_t (*v)[32], uint32_t cap)
{
	uint8_t *p = wr_room(w, 32);
	if (p != NULL)
		memcpy(p, *v, 32);
}

static int dec_b32(struct rd *r, uint8_t (*v)[32], uint32_t cap)
{
	const uint8_t *p = rd_take(r, 32);
	if (p == NULL)
		return TEEMS_ECORRUPT;
	memcpy(*v, p, 32);
	return 0;
}

static bool eq_b32(const uint8_t (*a)[32], const uint8_t (*b)[32])
{
	return memcmp(*a, *b, 32) == 0;
}

_Static_assert(MSG_DIGEST_SIZE == 32 && MSG_PUBLIC_KEY_SIZE == 32, "b32 kinds");

/* Variable-length bytes: u32 length (<= cap), then the bytes. Decoded bytes point into the
 * frame (zero-copy). */
static void enc_bytes(struct wr *w, const struct msg_bytes *v, uint32_t cap)
{
	uint8_t *p;

	if (v->len > cap) {
		wr_fail(w, "bytes longer than their limit");
		return;
	}
	if (v->len > 0 && v->p == NULL) {
		wr_fail(w, "bytes without data");
		return;
	}
	enc_u32(w, &v->len, 0);
	p = wr_room(w, v->len);
	if (p != NULL && v->len > 0)
		memcpy(p, v->p, v->len);
}

static int dec_bytes(struct rd *r, struct msg_bytes *v, uint32_t cap)
{
	uint32_t len;
	const uint8_t *p;

	TRY(dec_u32(r, &len, 0));
	if (len > cap)
		return corrupt(r, "bytes longer than their limit");
	p = rd_take(r, len);
	if (p == NULL)
		return corrupt(r, "bytes run past the end");
	v->p = p;
	v->len = len;
	return 0;
}

static bool eq_bytes(const struct msg_bytes *a, const struct msg_bytes *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* Bytewise order, a prefix before its extensions. */
static int bytes_cmp(const struct msg_bytes *a, const struct msg_bytes *b)
{
	uint32_t n = a->len < b->len ? a->len : b->len;
	int c = n > 0 ? memcmp(a->p, b->p, n) : 0;

	if (c != 0)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

/* ---- structs: one field list each, expanded into enc/dec/eq ---- */

#define ENC_FIELD(kind, field, cap) enc_##kind(w, &v->field, cap);
#define DEC_FIELD(kind, field, cap) TRY(dec_##kind(r, &v->field, cap));
#define EQ_FIELD(kind, field, cap) &&eq_##kind(&a->field, &b->field)

#define GEN_STRUCT(kind, type, FIELDS)                                    \
	static void enc_##kind(struct wr *w, const type *v, uint32_t cap) \
	{                                                                 \
		FIELDS(ENC_FIELD)                                         \
	}                                                                 \
	static int dec_##kind(struct rd *r, type *v, uint32_t cap)        \
	{                                                                 \
		FIELDS(DEC_FIELD)                                         \
		return 0;                                                 \
	}                                                                 \
	static bool eq_##kind(const type *a, const type *b)               \
	{                                                                 \
		return true FIELDS(EQ_FIELD);                             \
	}

#define REGIDX_FIELDS(X) X(u64, epoch, 0) X(u64, slot, 0)
GEN_STRUCT(regidx, struct msg_regidx, REGIDX_FIELDS)

#define INCARNATION_FIELDS(X) X(replica, replica, 0) X(regidx, reg, 0)
GEN_STRUCT(incarnation, struct msg_incarnation, INCARNATION_FIELDS)

#define BALLOT_FIELDS(X) X(u64, round, 0) X(replica, replica, 0) X(regidx, reg, 0)
GEN_STRUCT(ballot, struct msg_ballot, BALLOT_FIELDS)

#define TIMESTAMP_FIELDS(X) X(u64, seq, 0) X(replica, replica, 0) X(regidx, reg, 0) X(u64, op, 0)
GEN_STRUCT(timestamp, struct msg_timestamp, TIMESTAMP_FIELDS)

#define ENTRY_FIELDS(X) \
	X(u64, slot, 0) X(ballot, ballot, 0) X(bool, adopted, 0) X(bytes, value, MSG_MAX_BLOB)
GEN_STRUCT(entry, struct msg_entry, ENTRY_FIELDS)

#define RANGE_DIGEST_FIELDS(X) X(u32, range, 0) X(u64, keys, 0) X(b32, digest, 0)
GEN_STRUCT(range_digest, struct msg_range_digest, RANGE_DIGEST_FIELDS)

#define ITEM_FIELDS(X)             \
	X(bytes, key, MSG_MAX_KEY) \
	X(timestamp, ts, 0)        \
	X(bool, stable, 0) X(bool, tombstone, 0) X(bytes, value, MSG_MAX_VALUE)
GEN_STRUCT(item, struct msg_item, ITEM_FIELDS)

/* ---- lists: u32 count (<= cap), then the elements in order ---- */

static bool incarnation_before(const struct msg_incarnation *a, const struct msg_incarnation *b)
{
	return a->replica < b->replica;
}

static bool entry_before(const struct msg_entry *a, const struct msg_entry *b)
{
	return a->slot < b->slot;
}

static bool value_before(const struct msg_bytes *a, const struct msg_bytes *b)
{
	return true;
}

static bool range_digest_before(const struct msg_range_digest *a, const struct msg_range_digest *b)
{
	return a->range < b->range;
}

static bool item_before(const struct msg_item *a, const struct msg_item *b)
{
	return bytes_cmp(&a->key, &b->key) < 0;
}

/* GEN_LIST(list, ltype, ekind, etype, ecap, before): the public iterators msg_<list>_begin and
 * msg_<list>_next, and the list kind enc/dec/eq_<list>. `before(prev, cur)` is the order every
 * list must keep; ecap is the cap passed to each element. */
#define GEN_LIST(list, ltype, ekind, etype, ecap, before)                                        \
	void msg_##list##_begin(struct msg_iter *it, const ltype *l)                             \
	{                                                                                        \
		it->p = l->wire;                                                                 \
		it->end = l->wire == NULL ? NULL : l->wire + l->wire_len;                        \
		it->items = l->items;                                                            \
		it->next = 0;                                                                    \
		it->count = l->count;                                                            \
	}                                                                                        \
	bool msg_##list##_next(struct msg_iter *it, etype *out)                                  \
	{                                                                                        \
		struct rd r = {it->p, it->p, it->end, NULL};                                     \
		if (it->next >= it->count)                                                       \
			return false;                                                            \
		if (it->items != NULL) {                                                         \
			*out = ((const etype *)it->items)[it->next++];                           \
			return true;                                                             \
		}                                                                                \
		/* validated at decode; a failure means the list was not built by msg_decode */  \
		if (it->p == NULL || dec_##ekind(&r, out, ecap) != 0) {                          \
			assert(!"msg: iterating an invalid wire list");                          \
			it->next = it->count;                                                    \
			return false;                                                            \
		}                                                                                \
		it->p = r.p;                                                                     \
		it->next++;                                                                      \
		return true;                                                                     \
	}                                                                                        \
	static void enc_##list(struct wr *w, const ltype *l, uint32_t cap)                       \
	{                                                                                        \
		struct msg_iter it;                                                              \
		etype prev = {0}, cur;                                                           \
		uint32_t i;                                                                      \
		if (l->count > cap) {                                                            \
			wr_fail(w, "list longer than its limit");                                \
			return;                                                                  \
		}                                                                                \
		if (l->count > 0 && l->items == NULL && l->wire == NULL) {                       \
			wr_fail(w, "list without elements");                                     \
			return;                                                                  \
		}                                                                                \
		enc_u32(w, &l->count, 0);                                                        \
		msg_##list##_begin(&it, l);                                                      \
		for (i = 0; msg_##list##_next(&it, &cur); i++) {                                 \
			if (i > 0 && !before(&prev, &cur)) {                                     \
				wr_fail(w, "list out of order");                                 \
				return;                                                          \
			}                                                                        \
			enc_##ekind(w, &cur, ecap);                                              \
			prev = cur;                                                              \
		}                                                                                \
	}                                                                                        \
	static int dec_##list(struct rd *r, ltype *l, uint32_t cap)                              \
	{                                                                                        \
		struct wr sizer = {0};                                                           \
		etype prev = {0}, cur;                                                           \
		uint32_t n, i;                                                                   \
		TRY(dec_u32(r, &n, 0));                                                          \
		if (n > cap)                                                                     \
			return corrupt(r, "list longer than its limit");                         \
		/* the smallest element is a zeroed one: refuse a count the bytes cannot hold */ \
		memset(&cur, 0, sizeof(cur));                                                    \
		enc_##ekind(&sizer, &cur, ecap);                                                 \
		if (n > (size_t)(r->end - r->p) / sizer.pos)                                     \
			return corrupt(r, "list count exceeds the remaining bytes");             \
		l->count = n;                                                                    \
		l->items = NULL;                                                                 \
		l->wire = r->p;                                                                  \
		for (i = 0; i < n; i++) {                                                        \
			TRY(dec_##ekind(r, &cur, ecap));                                         \
			if (i > 0 && !before(&prev, &cur))                                       \
				return corrupt(r, "list out of order");                          \
			prev = cur;                                                              \
		}                                                                                \
		l->wire_len = (size_t)(r->p - l->wire);                                          \
		return 0;                                                                        \
	}                                                                                        \
	static bool eq_##list(const ltype *a, const ltype *b)                                    \
	{                                                                                        \
		struct msg_iter ia, ib;                                                          \
		etype ea, eb;                                                                    \
		if (a->count != b->count)                                                        \
			return false;                                                            \
		msg_##list##_begin(&ia, a);                                                      \
		msg_##list##_begin(&ib, b);                                                      \
		while (msg_##list##_next(&ia, &ea)) {                                            \
			if (!msg_##list##_next(&ib, &eb) || !eq_##ekind(&ea, &eb))               \
				return false;                                                    \
		}                                                                                \
		return true;                                                                     \
	}

GEN_LIST(incarnations, struct msg_incarnation_list, incarnation, struct msg_incarnation, 0,
	 incarnation_before)
GEN_LIST(entries, struct msg_entry_list, entry, struct msg_entry, 0, entry_before)
GEN_LIST(values, struct msg_value_list, bytes, struct msg_bytes, MSG_MAX_BLOB, value_before)
GEN_LIST(range_digests, struct msg_range_digest_list, range_digest, struct msg_range_digest, 0,
	 range_digest_before)
GEN_LIST(items, struct msg_item_list, item, struct msg_item, 0, item_before)

bool msg_regvec_find(const struct msg_incarnation_list *regvec, uint16_t replica,
		     struct msg_regidx *out)
{
	struct msg_iter it;
	struct msg_incarnation inc;

	msg_incarnations_begin(&it, regvec);
	while (msg_incarnations_next(&it, &inc)) {
		if (inc.replica == replica) {
			*out = inc.reg;
			return true;
		}
		if (inc.replica > replica)
			break;
	}
	return false;
}

/* ---- message bodies ---- */

#define CLIENT_REQUEST_FIELDS(X) \
	X(u64, client_id, 0) X(u64, request_id, 0) X(bytes, command, MSG_MAX_BLOB)
GEN_STRUCT(client_request, struct msg_client_request, CLIENT_REQUEST_FIELDS)

#define CLIENT_REPLY_FIELDS(X) \
	X(u64, client_id, 0)   \
	X(u64, request_id, 0)  \
	X(client_status, status, 0) X(opt_replica, leader, 0) X(bytes, result, MSG_MAX_BLOB)
GEN_STRUCT(client_reply, struct msg_client_reply, CLIENT_REPLY_FIELDS)

#define PREPARE_FIELDS(X) X(ballot, ballot, 0) X(u64, from_slot, 0)
GEN_STRUCT(prepare, struct msg_prepare, PREPARE_FIELDS)

#define PROMISE_FIELDS(X)       \
	X(ballot, ballot, 0)    \
	X(bool, ok, 0)          \
	X(ballot, promised, 0)  \
	X(u64, commit_index, 0) \
	X(bool, more, 0)        \
	X(entries, entries, MSG_MAX_ENTRIES) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(promise, struct msg_promise, PROMISE_FIELDS)

#define ACCEPT_FIELDS(X)     \
	X(ballot, ballot, 0) \
	X(u64, commit_index, 0) X(u64, first_slot, 0) X(values, values, MSG_MAX_BATCH)
GEN_STRUCT(accept, struct msg_accept, ACCEPT_FIELDS)

#define ACCEPTED_FIELDS(X)    \
	X(ballot, ballot, 0)  \
	X(u64, first_slot, 0) \
	X(u64, last_slot, 0)  \
	X(b32, digest, 0) X(sync, sync, 0) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(accepted, struct msg_accepted, ACCEPTED_FIELDS)

#define COMMIT_FIELDS(X) X(ballot, ballot, 0) X(u64, commit_index, 0)
GEN_STRUCT(commit, struct msg_commit, COMMIT_FIELDS)

#define HEARTBEAT_ACK_FIELDS(X) \
	X(ballot, ballot, 0)    \
	X(u64, lease_ns, 0) X(u64, accepted_through, 0) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(heartbeat_ack, struct msg_heartbeat_ack, HEARTBEAT_ACK_FIELDS)

#define READ_INDEX_FIELDS(X) X(ballot, ballot, 0)
GEN_STRUCT(read_index, struct msg_read_index, READ_INDEX_FIELDS)

#define READ_INDEX_ACK_FIELDS(X) X(ballot, ballot, 0) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(read_index_ack, struct msg_read_index_ack, READ_INDEX_ACK_FIELDS)

#define READ_FIELDS(X) X(bytes, command, MSG_MAX_BLOB)
GEN_STRUCT(read, struct msg_read, READ_FIELDS)

#define READ_REPLY_FIELDS(X)        \
	X(u64, last_executed, 0)    \
	X(u64, highest_accepted, 0) \
	X(bytes, result, MSG_MAX_BLOB) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(read_reply, struct msg_read_reply, READ_REPLY_FIELDS)

#define REGISTER_FIELDS(X)     \
	X(replica, replica, 0) \
	X(b32, public_key, 0) X(bytes, quote, MSG_MAX_QUOTE) X(regidx, expected_previous, 0)
GEN_STRUCT(register, struct msg_register, REGISTER_FIELDS)

#define REGISTER_RESULT_FIELDS(X)     \
	X(register_status, status, 0) \
	X(replica, replica, 0) X(regidx, index, 0) X(regidx, current, 0) X(opt_replica, leader, 0)
GEN_STRUCT(register_result, struct msg_register_result, REGISTER_RESULT_FIELDS)

#define RECOVERY_REQUEST_FIELDS(X) X(u64, from_slot, 0)
GEN_STRUCT(recovery_request, struct msg_recovery_request, RECOVERY_REQUEST_FIELDS)

#define RECOVERY_REPLY_FIELDS(X)                  \
	X(ballot, promised, 0)                    \
	X(u64, commit_index, 0)                   \
	X(u64, snapshot_index, 0)                 \
	X(bool, more, 0)                          \
	X(entries, entries, MSG_MAX_ENTRIES)      \
	X(incarnations, regvec, MSG_MAX_REPLICAS) \
	X(u32, ranges, 0) X(range_digests, range_digests, MSG_MAX_RANGES)
GEN_STRUCT(recovery_reply, struct msg_recovery_reply, RECOVERY_REPLY_FIELDS)

#define SNAPSHOT_REQUEST_FIELDS(X) X(u64, min_index, 0) X(u64, index, 0) X(u64, offset, 0)
GEN_STRUCT(snapshot_request, struct msg_snapshot_request, SNAPSHOT_REQUEST_FIELDS)

#define SNAPSHOT_CHUNK_FIELDS(X) \
	X(u64, index, 0)         \
	X(u64, total, 0) X(u64, offset, 0) X(bool, last, 0) X(bytes, data, MSG_MAX_CHUNK)
GEN_STRUCT(snapshot_chunk, struct msg_snapshot_chunk, SNAPSHOT_CHUNK_FIELDS)

#define NACK_FIELDS(X)      \
	X(type, refused, 0) \
	X(nack_reason, reason, 0) X(ballot, promised, 0) X(opt_replica, leader, 0)
GEN_STRUCT(nack, struct msg_nack, NACK_FIELDS)

#define ABD_QUERY_FIELDS(X) X(query_mode, mode, 0) X(bytes, key, MSG_MAX_KEY)
GEN_STRUCT(abd_query, struct msg_abd_query, ABD_QUERY_FIELDS)

#define ABD_QUERY_REPLY_FIELDS(X) \
	X(timestamp, ts, 0)       \
	X(bool, stable, 0)        \
	X(bool, tombstone, 0)     \
	X(bytes, value, MSG_MAX_VALUE) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(abd_query_reply, struct msg_abd_query_reply, ABD_QUERY_REPLY_FIELDS)

#define ABD_WRITE_FIELDS(X)        \
	X(bytes, key, MSG_MAX_KEY) \
	X(timestamp, ts, 0) X(bool, tombstone, 0) X(bytes, value, MSG_MAX_VALUE)
GEN_STRUCT(abd_write, struct msg_abd_write, ABD_WRITE_FIELDS)

#define ABD_WRITE_ACK_FIELDS(X)    \
	X(bytes, key, MSG_MAX_KEY) \
	X(timestamp, ts, 0) X(sync, sync, 0) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(abd_write_ack, struct msg_abd_write_ack, ABD_WRITE_ACK_FIELDS)

#define ABD_STABILIZE_FIELDS(X) X(bytes, key, MSG_MAX_KEY) X(timestamp, ts, 0) X(b32, digest, 0)
GEN_STRUCT(abd_stabilize, struct msg_abd_stabilize, ABD_STABILIZE_FIELDS)

#define ABD_DIGEST_REQUEST_FIELDS(X) X(u32, ranges, 0) X(u32, first, 0) X(u32, count, 0)
GEN_STRUCT(abd_digest_request, struct msg_abd_digest_request, ABD_DIGEST_REQUEST_FIELDS)

#define ABD_DIGEST_REPLY_FIELDS(X) X(u32, ranges, 0) X(range_digests, digests, MSG_MAX_RANGES)
GEN_STRUCT(abd_digest_reply, struct msg_abd_digest_reply, ABD_DIGEST_REPLY_FIELDS)

#define ABD_RANGE_REQUEST_FIELDS(X) \
	X(u32, ranges, 0) X(u32, range, 0) X(bool, has_after, 0) X(bytes, after, MSG_MAX_KEY)
GEN_STRUCT(abd_range_request, struct msg_abd_range_request, ABD_RANGE_REQUEST_FIELDS)

#define ABD_RANGE_REPLY_FIELDS(X) \
	X(u32, ranges, 0) X(u32, range, 0) X(bool, complete, 0) X(items, items, MSG_MAX_ITEMS)
GEN_STRUCT(abd_range_reply, struct msg_abd_range_reply, ABD_RANGE_REPLY_FIELDS)

#define LEASE_RENEW_FIELDS(X) X(u64, config_index, 0) X(u64, duration_ns, 0)
GEN_STRUCT(lease_renew, struct msg_lease_renew, LEASE_RENEW_FIELDS)

#define LEASE_REPLY_FIELDS(X) \
	X(bool, granted, 0)   \
	X(u64, config_index, 0) X(u64, duration_ns, 0) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(lease_reply, struct msg_lease_reply, LEASE_REPLY_FIELDS)

#define RESTART_PREPARE_FIELDS(X) X(u64, epoch, 0) X(ballot, proposal, 0)
GEN_STRUCT(restart_prepare, struct msg_restart_prepare, RESTART_PREPARE_FIELDS)

#define RESTART_ANSWER_FIELDS(X)                            \
	X(u64, epoch, 0)                                    \
	X(ballot, proposal, 0)                              \
	X(ballot, promised, 0)                              \
	X(u64, commit_index, 0)                             \
	X(u64, snapshot_index, 0)                           \
	X(u64, last_accepted, 0)                            \
	X(b32, log_digest, 0)                               \
	X(u32, ranges, 0)                                   \
	X(range_digests, range_digests, MSG_MAX_RANGES)     \
	X(incarnations, regvec, MSG_MAX_REPLICAS)           \
	X(bool, has_accepted, 0)                            \
	X(ballot, accepted_proposal, 0)                     \
	X(incarnations, accepted_members, MSG_MAX_REPLICAS) \
	X(b32, accepted_digest, 0) X(u64, tag, 0)
GEN_STRUCT(restart_answer, struct msg_restart_answer, RESTART_ANSWER_FIELDS)

#define RESTART_ACCEPT_FIELDS(X)                   \
	X(u64, epoch, 0)                           \
	X(ballot, proposal, 0)                     \
	X(incarnations, members, MSG_MAX_REPLICAS) \
	X(b32, state_digest, 0)                    \
	X(bytes, authorization, MSG_MAX_AUTH) X(bool, decided, 0)
GEN_STRUCT(restart_accept, struct msg_restart_accept, RESTART_ACCEPT_FIELDS)

#define RESTART_ACCEPTED_FIELDS(X) \
	X(u64, epoch, 0) X(ballot, proposal, 0) X(incarnations, regvec, MSG_MAX_REPLICAS)
GEN_STRUCT(restart_accepted, struct msg_restart_accepted, RESTART_ACCEPTED_FIELDS)

/* ---- cross-field rules: return a reason, or NULL when m keeps them ---- */

static bool is_partition(uint32_t ranges)
{
	return ranges >= 1 && ranges <= MSG_MAX_RANGES && (ranges & (ranges - 1)) == 0;
}

/* ranges is a partition size, or 0 with no digests (no ABD state); every digest's range fits. */
static const char *check_range_digests(uint32_t ranges, const struct msg_range_digest_list *l,
				       bool allow_none)
{
	struct msg_iter it;
	struct msg_range_digest d;

	if (ranges == 0 && allow_none)
		return l->count == 0 ? NULL : "range digests without a partition";
	if (!is_partition(ranges))
		return "ranges is not a power of two in 1..MSG_MAX_RANGES";
	msg_range_digests_begin(&it, l);
	while (msg_range_digests_next(&it, &d)) {
		if (d.range >= ranges)
			return "range digest outside the partition";
	}
	return NULL;
}

static const char *check_promise(const struct msg *m)
{
	const struct msg_promise *p = &m->promise;

	if (!p->ok && (p->entries.count != 0 || p->more))
		return "a refused promise carries entries";
	return NULL;
}

static const char *check_accept(const struct msg *m)
{
	const struct msg_accept *a = &m->accept;

	if (a->values.count == 0)
		return "ACCEPT without slots";
	if (a->first_slot > UINT64_MAX - (a->values.count - 1))
		return "ACCEPT slot range overflows";
	return NULL;
}

static const char *check_accepted(const struct msg *m)
{
	return m->accepted.first_slot <= m->accepted.last_slot ? NULL : "slot range reversed";
}

static const char *check_recovery_reply(const struct msg *m)
{
	const struct msg_recovery_reply *p = &m->recovery_reply;
	struct msg_iter it;
	struct msg_entry e;

	msg_entries_begin(&it, &p->entries);
	if (msg_entries_next(&it, &e) && e.slot <= p->snapshot_index)
		return "entry at or below the snapshot";
	return check_range_digests(p->ranges, &p->range_digests, true);
}

static const char *check_snapshot_request(const struct msg *m)
{
	const struct msg_snapshot_request *s = &m->snapshot_request;

	return s->index == 0 && s->offset != 0 ? "offset into an unnamed snapshot" : NULL;
}

static const char *check_snapshot_chunk(const struct msg *m)
{
	const struct msg_snapshot_chunk *c = &m->snapshot_chunk;

	if (c->offset > c->total || c->data.len > c->total - c->offset)
		return "chunk beyond the snapshot's length";
	if (c->last != (c->offset + c->data.len == c->total))
		return "last flag disagrees with the chunk's end";
	return NULL;
}

static bool tombstone_ok(bool tombstone, const struct msg_bytes *value)
{
	return !tombstone || value->len == 0;
}

static const char *check_abd_query_reply(const struct msg *m)
{
	const struct msg_abd_query_reply *q = &m->abd_query_reply;

	return tombstone_ok(q->tombstone, &q->value) ? NULL : "tombstone with a value";
}

static const char *check_abd_write(const struct msg *m)
{
	const struct msg_abd_write *q = &m->abd_write;

	return tombstone_ok(q->tombstone, &q->value) ? NULL : "tombstone with a value";
}

static const char *check_abd_digest_request(const struct msg *m)
{
	const struct msg_abd_digest_request *q = &m->abd_digest_request;

	if (!is_partition(q->ranges))
		return "ranges is not a power of two in 1..MSG_MAX_RANGES";
	if (q->count == 0 || (uint64_t)q->first + q->count > q->ranges)
		return "range span outside the partition";
	return NULL;
}

static const char *check_abd_digest_reply(const struct msg *m)
{
	return check_range_digests(m->abd_digest_reply.ranges, &m->abd_digest_reply.digests, false);
}

static const char *check_abd_range_request(const struct msg *m)
{
	const struct msg_abd_range_request *q = &m->abd_range_request;

	if (!is_partition(q->ranges) || q->range >= q->ranges)
		return "range outside the partition";
	if (!q->has_after && q->after.len != 0)
		return "cursor key without has_after";
	return NULL;
}

static const char *check_abd_range_reply(const struct msg *m)
{
	const struct msg_abd_range_reply *q = &m->abd_range_reply;
	struct msg_iter it;
	struct msg_item item;

	if (!is_partition(q->ranges) || q->range >= q->ranges)
		return "range outside the partition";
	msg_items_begin(&it, &q->items);
	while (msg_items_next(&it, &item)) {
		if (!tombstone_ok(item.tombstone, &item.value))
			return "tombstone with a value";
	}
	return NULL;
}

static const char *check_restart_answer(const struct msg *m)
{
	const struct msg_restart_answer *a = &m->restart_answer;

	if (a->has_accepted != (a->accepted_members.count > 0))
		return "accepted members disagree with has_accepted";
	return check_range_digests(a->ranges, &a->range_digests, true);
}

static const char *check_restart_accept(const struct msg *m)
{
	return m->restart_accept.members.count > 0 ? NULL : "configuration without members";
}

/* ---- the type table ---- */

#define MSG_TYPES(X)                                                        \
	X(CLIENT_REQUEST, client_request, NULL)                             \
	X(CLIENT_REPLY, client_reply, NULL)                                 \
	X(PREPARE, prepare, NULL)                                           \
	X(PROMISE, promise, check_promise)                                  \
	X(ACCEPT, accept, check_accept)                                     \
	X(ACCEPTED, accepted, check_accepted)                               \
	X(COMMIT, commit, NULL)                                             \
	X(HEARTBEAT_ACK, heartbeat_ack, NULL)                               \
	X(READ_INDEX, read_index, NULL)                                     \
	X(READ_INDEX_ACK, read_index_ack, NULL)                             \
	X(READ, read, NULL)                                                 \
	X(READ_REPLY, read_reply, NULL)                                     \
	X(REGISTER, register, NULL)                                         \
	X(REGISTER_RESULT, register_result, NULL)                           \
	X(RECOVERY_REQUEST, recovery_request, NULL)                         \
	X(RECOVERY_REPLY, recovery_reply, check_recovery_reply)             \
	X(SNAPSHOT_REQUEST, snapshot_request, check_snapshot_request)       \
	X(SNAPSHOT_CHUNK, snapshot_chunk, check_snapshot_chunk)             \
	X(NACK, nack, NULL)                                                 \
	X(ABD_QUERY, abd_query, NULL)                                       \
	X(ABD_QUERY_REPLY, abd_query_reply, check_abd_query_reply)          \
	X(ABD_WRITE, abd_write, check_abd_write)                            \
	X(ABD_WRITE_ACK, abd_write_ack, NULL)                               \
	X(ABD_STABILIZE, abd_stabilize, NULL)                               \
	X(ABD_DIGEST_REQUEST, abd_digest_request, check_abd_digest_request) \
	X(ABD_DIGEST_REPLY, abd_digest_reply, check_abd_digest_reply)       \
	X(ABD_RANGE_REQUEST, abd_range_request, check_abd_range_request)    \
	X(ABD_RANGE_REPLY, abd_range_reply, check_abd_range_reply)          \
	X(LEASE_RENEW, lease_renew, NULL)                                   \
	X(LEASE_REPLY, lease_reply, NULL)                                   \
	X(RESTART_PREPARE, restart_prepare, NULL)                           \
	X(RESTART_ANSWER, restart_answer, check_restart_answer)             \
	X(RESTART_ACCEPT, restart_accept, check_restart_accept)             \
	X(RESTART_ACCEPTED, restart_accepted, NULL)

/* The union member of struct msg for each body; `register` is spelled register_ there. */
#define BODY_client_request client_request
#define BODY_client_reply client_reply
#define BODY_prepare prepare
#define BODY_promise promise
#define BODY_accept accept
#define BODY_accepted accepted
#define BODY_commit commit
#define BODY_heartbeat_ack heartbeat_ack
#define BODY_read_index read_index
#define BODY_read_index_ack read_index_ack
#define BODY_read read
#define BODY_read_reply read_reply
#define BODY_register register_
#define BODY_register_result register_result
#define BODY_recovery_request recovery_request
#define BODY_recovery_reply recovery_reply
#define BODY_snapshot_request snapshot_request
#define BODY_snapshot_chunk snapshot_chunk
#define BODY_nack nack
#define BODY_abd_query abd_query
#define BODY_abd_query_reply abd_query_reply
#define BODY_abd_write abd_write
#define BODY_abd_write_ack abd_write_ack
#define BODY_abd_stabilize abd_stabilize
#define BODY_abd_digest_request abd_digest_request
#define BODY_abd_digest_reply abd_digest_reply
#define BODY_abd_range_request abd_range_request
#define BODY_abd_range_reply abd_range_reply
#define BODY_lease_renew lease_renew
#define BODY_lease_reply lease_reply
#define BODY_restart_prepare restart_prepare
#define BODY_restart_answer restart_answer
#define BODY_restart_accept restart_accept
#define BODY_restart_accepted restart_accepted

#define GEN_BODY(TYPE, kind, check)                                          \
	static void enc_body_##kind(struct wr *w, const struct msg *m)       \
	{                                                                    \
		enc_##kind(w, &m->BODY_##kind, 0);                           \
	}                                                                    \
	static int dec_body_##kind(struct rd *r, struct msg *m)              \
	{                                                                    \
		return dec_##kind(r, &m->BODY_##kind, 0);                    \
	}                                                                    \
	static bool eq_body_##kind(const struct msg *a, const struct msg *b) \
	{                                                                    \
		return eq_##kind(&a->BODY_##kind, &b->BODY_##kind);          \
	}
MSG_TYPES(GEN_BODY)

struct codec {
	const char *name;
	void (*enc)(struct wr *w, const struct msg *m);
	int (*dec)(struct rd *r, struct msg *m);
	bool (*eq)(const struct msg *a, const struct msg *b);
	const char *(*check)(const struct msg *m);
};

#define CODEC_ENTRY(TYPE, kind, check_fn) \
	[MSG_##TYPE] = {#TYPE, enc_body_##kind, dec_body_##kind, eq_body_##kind, check_fn},

static const struct codec codecs[MSG_TYPE_MAX_ + 1] = {MSG_TYPES(CODEC_ENTRY)};

static const struct codec *codec_for(int type)
{
	if (type < MSG_TYPE_MIN_ || type > MSG_TYPE_MAX_ || codecs[type].name == NULL)
		return NULL;
	return &codecs[type];
}

const char *msg_type_name(int type)
{
	const struct codec *c = codec_for(type);

	return c == NULL ? "UNKNOWN" : c->name;
}

/* ---- frames ----
 *
 * Header: u32 length, u8 version, u8 type, u16 flags, u16 sender replica, u64 sender
 * registration epoch, u64 sender registration slot, u64 nonce. */

int msg_encode(const struct msg *m, uint8_t *buf, size_t cap, size_t *len)
{
	const struct codec *c = codec_for(m->type);
	struct wr w = {buf, cap, 0, 0, NULL};
	uint32_t zero = 0;
	uint16_t flags = m->suspicious ? MSG_FLAG_SUSPICIOUS : 0;

	*len = 0;
	if (c == NULL)
		return TEEMS_EINVAL;
	enc_u32(&w, &zero, 0); /* the length, filled in below */
	put8(&w, MSG_VERSION);
	put8(&w, (uint8_t)m->type);
	enc_u16(&w, &flags, 0);
	enc_incarnation(&w, &m->from, 0);
	enc_u64(&w, &m->nonce, 0);
	assert(w.err != 0 || w.pos == MSG_HEADER_SIZE);
	c->enc(&w, m);
	if (w.err != 0)
		return w.err;
	/* Only now: the list encoders refuse a count over its cap before touching an element, and
	 * the cross-field checks iterate lists. */
	if (c->check != NULL && c->check(m) != NULL)
		return TEEMS_EINVAL;
	*len = w.pos;
	if (buf == NULL || w.pos > cap)
		return TEEMS_EFULL;
	put_le32(buf, (uint32_t)w.pos);
	return 0;
}

int msg_frame_length(const uint8_t *buf, size_t len, size_t *need)
{
	uint32_t total;

	if (len >= 5 && buf[4] != MSG_VERSION)
		return TEEMS_EVERSION;
	if (len < 4) {
		*need = MSG_HEADER_SIZE;
		return 0;
	}
	total = get_le32(buf);
	if (total < MSG_HEADER_SIZE || total > MSG_MAX_FRAME)
		return TEEMS_ECORRUPT;
	*need = total;
	return 0;
}

static int decode(struct rd *r, struct msg *out, const struct codec **cp)
{
	uint32_t total;
	uint8_t version, type;
	uint16_t flags;
	const struct codec *c;

	TRY(dec_u32(r, &total, 0));
	TRY(get8(r, &version));
	if (version != MSG_VERSION) {
		r->why = "unknown version";
		return TEEMS_EVERSION;
	}
	if ((size_t)(r->end - r->start) < MSG_HEADER_SIZE)
		return corrupt(r, "shorter than a header");
	if (total != (size_t)(r->end - r->start))
		return corrupt(r, total < (size_t)(r->end - r->start)
					  ? "trailing bytes after the frame"
					  : "frame shorter than its length field");
	if (total > MSG_MAX_FRAME)
		return corrupt(r, "frame larger than MSG_MAX_FRAME");
	TRY(get8(r, &type));
	c = codec_for(type);
	if (c == NULL)
		return corrupt(r, "unknown message type");
	*cp = c;
	out->type = (enum msg_type)type;
	TRY(dec_u16(r, &flags, 0));
	if ((flags & ~MSG_FLAG_SUSPICIOUS) != 0)
		return corrupt(r, "unknown header flag");
	out->suspicious = (flags & MSG_FLAG_SUSPICIOUS) != 0;
	TRY(dec_incarnation(r, &out->from, 0));
	TRY(dec_u64(r, &out->nonce, 0));
	TRY(c->dec(r, out));
	if (r->p != r->end)
		return corrupt(r, "trailing bytes in the body");
	if (c->check != NULL) {
		const char *why = c->check(out);
		if (why != NULL)
			return corrupt(r, why);
	}
	return 0;
}

int msg_decode_explain(const uint8_t *buf, size_t len, struct msg *out, char *errbuf)
{
	struct rd r = {buf, buf, buf + len, NULL};
	const struct codec *c = NULL;
	int rv;

	memset(out, 0, sizeof(*out));
	rv = decode(&r, out, &c);
	if (rv != 0)
		teems_errf(errbuf, rv, "%s: %s at byte %zu", c == NULL ? "frame" : c->name,
			   r.why == NULL ? "malformed" : r.why, (size_t)(r.p - r.start));
	return rv;
}

int msg_decode(const uint8_t *buf, size_t len, struct msg *out)
{
	return msg_decode_explain(buf, len, out, NULL);
}

bool msg_equal(const struct msg *a, const struct msg *b)
{
	const struct codec *c = codec_for(a->type);

	if (a->type != b->type || c == NULL)
		return false;
	return eq_incarnation(&a->from, &b->from) && a->suspicious == b->suspicious &&
	       a->nonce == b->nonce && c->eq(a, b);
}

/* ---- comparisons ---- */

static int cmp_u64(uint64_t a, uint64_t b)
{
	return (a > b) - (a < b);
}

int msg_regidx_cmp(const struct msg_regidx *a, const struct msg_regidx *b)
{
	int c = cmp_u64(a->epoch, b->epoch);

	return c != 0 ? c : cmp_u64(a->slot, b->slot);
}

int msg_ballot_cmp(const struct msg_ballot *a, const struct msg_ballot *b)
{
	int c = cmp_u64(a->round, b->round);

	if (c == 0)
		c = cmp_u64(a->replica, b->replica);
	return c != 0 ? c : msg_regidx_cmp(&a->reg, &b->reg);
}

int msg_timestamp_cmp(const struct msg_timestamp *a, const struct msg_timestamp *b)
{
	int c = cmp_u64(a->seq, b->seq);

	if (c == 0)
		c = cmp_u64(a->replica, b->replica);
	if (c == 0)
		c = msg_regidx_cmp(&a->reg, &b->reg);
	return c != 0 ? c : cmp_u64(a->op, b->op);
}
