/* The wire codec (src/core/msg.h). Every message type is built with non-trivial values (and
 * again with empty lists), encoded, decoded and compared; then every truncation, every single
 * bit flip and many random corruptions of every encoding are fed back to the decoder, in
 * exact-size heap copies so that AddressSanitizer sees any read past the end. A mutated frame
 * that decodes must re-encode to exactly its own bytes (the encoding is canonical) and must differ
 * from the original under msg_equal (so msg_equal cannot ignore a field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "core/msg.h"
#include "teems/err.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LIST(arr)                                       \
	{                                               \
		.count = ARRAY_LEN(arr), .items = (arr) \
	}
#define BYTES(s) ((struct msg_bytes){(const uint8_t *)(s), sizeof(s) - 1})

/* Offsets in the documented layout (docs/PROTOCOL.md). */
#define BALLOT_SIZE 26
#define INCARNATION_SIZE 18

enum variant {
	TYPICAL, /* non-trivial values, lists of a few elements */
	EMPTY,	 /* every list that may be empty is empty, bytes empty */
};

/* ---- sample messages ---- */

static const struct msg_ballot ballot_a = {0x0102030405060708ull, 3, {0x1112131415161718ull, 42}};
static const struct msg_ballot ballot_b = {0x0102030405060709ull, 4, {2, 0x2122232425262728ull}};
static const struct msg_timestamp ts_a = {0x3132333435363738ull, 5, {7, 8}, 0x4142434445464748ull};

static struct msg_incarnation regvec_items[] = {
	{0, {1, 7}},
	{2, {1, 0x0a0b0c0d0e0f1011ull}},
	{63, {0xfffffffffffffffeull, 3}},
};

static struct msg_entry entry_items[] = {
	{10, {9, 1, {1, 2}}, false, {(const uint8_t *)"SET x 1", 7}},
	{11, {9, 1, {1, 2}}, true, {(const uint8_t *)"\0\1\2\3", 4}},
	{0xfffffffffffffff0ull, {12, 2, {3, 4}}, false, {NULL, 0}},
};

static struct msg_bytes value_items[] = {
	{(const uint8_t *)"batch one", 9},
	{NULL, 0},
	{(const uint8_t *)"batch three", 11},
};

static struct msg_range_digest digest_items[] = {
	{0, 5, {1, 2, 3}},
	{3, 0, {0xff}},
	{7, 0x0102030405060708ull, {[31] = 0x99}},
};

static struct msg_item item_items[] = {
	{{(const uint8_t *)"a", 1}, {1, 0, {1, 1}, 1}, true, false, {(const uint8_t *)"va", 2}},
	{{(const uint8_t *)"ab", 2}, {2, 1, {1, 1}, 9}, false, true, {NULL, 0}},
	{{(const uint8_t *)"b", 1}, {3, 2, {1, 5}, 2}, false, false, {NULL, 0}},
};

static const uint8_t digest_x[MSG_DIGEST_SIZE] = {0xde, 0xad, 0xbe, 0xef, [20] = 7, [31] = 1};

/* Fills m with a message of type t. Lists point at the static arrays above. */
static void sample(enum msg_type t, enum variant v, struct msg *m)
{
	bool e = v == EMPTY;
	struct msg_incarnation_list regvec = LIST(regvec_items);
	struct msg_entry_list entries = LIST(entry_items);
	struct msg_range_digest_list digests = LIST(digest_items);
	struct msg_item_list items = LIST(item_items);

	if (e) {
		memset(&regvec, 0, sizeof(regvec));
		memset(&entries, 0, sizeof(entries));
		memset(&digests, 0, sizeof(digests));
		memset(&items, 0, sizeof(items));
	}
	memset(m, 0, sizeof(*m));
	m->type = t;
	m->from.replica = e ? 0 : 6;
	m->from.reg.epoch = e ? 0 : 0x5152535455565758ull;
	m->from.reg.slot = e ? 0 : 0x6162636465666768ull;
	m->suspicious = !e;
	m->nonce = e ? 0 : 0x7172737475767778ull;

	switch (t) {
	case MSG_CLIENT_REQUEST:
		m->client_request.client_id = 0xc1;
		m->client_request.request_id = 0xffffffffffffffffull;
		m->client_request.command = e ? (struct msg_bytes){0} : BYTES("SET k v");
		break;
	case MSG_CLIENT_REPLY:
		m->client_reply.client_id = 0xc1;
		m->client_reply.request_id = 77;
		m->client_reply.status = e ? MSG_CLIENT_OK : MSG_CLIENT_NOT_LEADER;
		m->client_reply.leader = e ? MSG_NO_REPLICA : 2;
		m->client_reply.result = e ? (struct msg_bytes){0} : BYTES("+OK");
		break;
	case MSG_PREPARE:
		m->prepare.ballot = ballot_a;
		m->prepare.from_slot = 1234;
		break;
	case MSG_PROMISE:
		m->promise.ballot = ballot_a;
		m->promise.ok = true;
		m->promise.promised = ballot_a;
		m->promise.commit_index = 9;
		m->promise.more = !e;
		m->promise.entries = entries;
		m->promise.regvec = regvec;
		break;
	case MSG_ACCEPT:
		m->accept.ballot = ballot_b;
		m->accept.commit_index = 99;
		m->accept.first_slot = 100;
		m->accept.values = (struct msg_value_list)LIST(value_items);
		if (e)
			m->accept.values.count = 1;
		break;
	case MSG_ACCEPTED:
		m->accepted.ballot = ballot_b;
		m->accepted.first_slot = 100;
		m->accepted.last_slot = e ? 100 : 102;
		memcpy(m->accepted.digest, digest_x, MSG_DIGEST_SIZE);
		m->accepted.sync = e ? MSG_VOLATILE : MSG_SYNCED;
		m->accepted.regvec = regvec;
		break;
	case MSG_COMMIT:
		m->commit.ballot = ballot_b;
		m->commit.commit_index = 0x8000000000000001ull;
		break;
	case MSG_HEARTBEAT_ACK:
		m->heartbeat_ack.ballot = ballot_b;
		m->heartbeat_ack.lease_ns = e ? 0 : 2000000000ull;
		m->heartbeat_ack.accepted_through = 101;
		m->heartbeat_ack.regvec = regvec;
		break;
	case MSG_READ_INDEX:
		m->read_index.ballot = ballot_a;
		break;
	case MSG_READ_INDEX_ACK:
		m->read_index_ack.ballot = ballot_a;
		m->read_index_ack.regvec = regvec;
		break;
	case MSG_READ:
		m->read.command = e ? (struct msg_bytes){0} : BYTES("GET k");
		break;
	case MSG_READ_REPLY:
		m->read_reply.last_executed = 50;
		m->read_reply.highest_accepted = 52;
		m->read_reply.result = e ? (struct msg_bytes){0} : BYTES("$1\r\nv\r\n");
		m->read_reply.regvec = regvec;
		break;
	case MSG_REGISTER:
		m->register_.replica = 6;
		for (int i = 0; i < MSG_PUBLIC_KEY_SIZE; i++)
			m->register_.public_key[i] = (uint8_t)(0xa0 + i);
		m->register_.quote =
			e ? (struct msg_bytes){0} : BYTES("quote: measurement, id, key");
		m->register_.expected_previous = (struct msg_regidx){3, 17};
		break;
	case MSG_REGISTER_RESULT:
		m->register_result.status = e ? MSG_REGISTER_COMMITTED : MSG_REGISTER_MISMATCH;
		m->register_result.replica = 6;
		m->register_result.index = (struct msg_regidx){3, 40};
		m->register_result.current = (struct msg_regidx){3, 21};
		m->register_result.leader = e ? MSG_NO_REPLICA : 0;
		break;
	case MSG_RECOVERY_REQUEST:
		m->recovery_request.from_slot = e ? 0 : 8;
		break;
	case MSG_RECOVERY_REPLY:
		m->recovery_reply.promised = ballot_b;
		m->recovery_reply.commit_index = 9;
		m->recovery_reply.snapshot_index = 8;
		m->recovery_reply.more = !e;
		m->recovery_reply.entries = entries;
		m->recovery_reply.regvec = regvec;
		m->recovery_reply.ranges = e ? 0 : 8;
		m->recovery_reply.range_digests = digests;
		break;
	case MSG_SNAPSHOT_REQUEST:
		m->snapshot_request.min_index = 9;
		m->snapshot_request.index = e ? 0 : 12;
		m->snapshot_request.offset = e ? 0 : 4096;
		break;
	case MSG_SNAPSHOT_CHUNK:
		m->snapshot_chunk.index = 12;
		m->snapshot_chunk.total = e ? 0 : 4100;
		m->snapshot_chunk.offset = e ? 0 : 4096;
		m->snapshot_chunk.last = true;
		m->snapshot_chunk.data = e ? (struct msg_bytes){0} : BYTES("tail");
		break;
	case MSG_NACK:
		m->nack.refused = MSG_ACCEPT;
		m->nack.reason = e ? MSG_NACK_BALLOT : MSG_NACK_NOT_LEADER;
		m->nack.promised = ballot_b;
		m->nack.leader = e ? MSG_NO_REPLICA : 4;
		break;
	case MSG_ABD_QUERY:
		m->abd_query.mode = e ? MSG_QUERY_TIMESTAMP : MSG_QUERY_VALUE;
		m->abd_query.key = e ? (struct msg_bytes){0} : BYTES("user:42");
		break;
	case MSG_ABD_QUERY_REPLY:
		m->abd_query_reply.ts = ts_a;
		m->abd_query_reply.stable = !e;
		m->abd_query_reply.tombstone = e;
		m->abd_query_reply.value = e ? (struct msg_bytes){0} : BYTES("v42");
		m->abd_query_reply.regvec = regvec;
		break;
	case MSG_ABD_WRITE:
		m->abd_write.key = e ? (struct msg_bytes){0} : BYTES("user:42");
		m->abd_write.ts = ts_a;
		m->abd_write.tombstone = e;
		m->abd_write.value = e ? (struct msg_bytes){0} : BYTES("v43");
		break;
	case MSG_ABD_WRITE_ACK:
		m->abd_write_ack.key = e ? (struct msg_bytes){0} : BYTES("user:42");
		m->abd_write_ack.ts = ts_a;
		m->abd_write_ack.sync = e ? MSG_VOLATILE : MSG_SYNCED;
		m->abd_write_ack.regvec = regvec;
		break;
	case MSG_ABD_STABILIZE:
		m->abd_stabilize.key = e ? (struct msg_bytes){0} : BYTES("user:42");
		m->abd_stabilize.ts = ts_a;
		memcpy(m->abd_stabilize.digest, digest_x, MSG_DIGEST_SIZE);
		break;
	case MSG_ABD_DIGEST_REQUEST:
		m->abd_digest_request.ranges = e ? 1 : 1024;
		m->abd_digest_request.first = e ? 0 : 1000;
		m->abd_digest_request.count = e ? 1 : 24;
		break;
	case MSG_ABD_DIGEST_REPLY:
		m->abd_digest_reply.ranges = 8;
		m->abd_digest_reply.digests = digests;
		break;
	case MSG_ABD_RANGE_REQUEST:
		m->abd_range_request.ranges = 8;
		m->abd_range_request.range = 7;
		m->abd_range_request.has_after = !e;
		m->abd_range_request.after = e ? (struct msg_bytes){0} : BYTES("ab");
		break;
	case MSG_ABD_RANGE_REPLY:
		m->abd_range_reply.ranges = 8;
		m->abd_range_reply.range = 3;
		m->abd_range_reply.complete = e;
		m->abd_range_reply.items = items;
		break;
	case MSG_LEASE_RENEW:
		m->lease_renew.config_index = 88;
		m->lease_renew.duration_ns = 3000000000ull;
		break;
	case MSG_LEASE_REPLY:
		m->lease_reply.granted = !e;
		m->lease_reply.config_index = 88;
		m->lease_reply.duration_ns = 3000000000ull;
		m->lease_reply.regvec = regvec;
		break;
	case MSG_RESTART_PREPARE:
		m->restart_prepare.epoch = 5;
		m->restart_prepare.proposal = ballot_a;
		break;
	case MSG_RESTART_ANSWER:
		m->restart_answer.epoch = 5;
		m->restart_answer.proposal = ballot_a;
		m->restart_answer.promised = ballot_b;
		m->restart_answer.commit_index = 70;
		m->restart_answer.snapshot_index = 64;
		m->restart_answer.last_accepted = 72;
		memcpy(m->restart_answer.log_digest, digest_x, MSG_DIGEST_SIZE);
		m->restart_answer.ranges = e ? 0 : 8;
		m->restart_answer.range_digests = digests;
		m->restart_answer.regvec = regvec;
		m->restart_answer.has_accepted = !e;
		if (!e) {
			m->restart_answer.accepted_proposal = ballot_b;
			m->restart_answer.accepted_members =
				(struct msg_incarnation_list)LIST(regvec_items);
			m->restart_answer.accepted_digest[0] = 0x5a;
		}
		m->restart_answer.tag = e ? 1 : 0x1234567890abcdefull;
		break;
	case MSG_RESTART_ACCEPT:
		m->restart_accept.epoch = 5;
		m->restart_accept.proposal = ballot_a;
		m->restart_accept.members = (struct msg_incarnation_list)LIST(regvec_items);
		if (e)
			m->restart_accept.members.count = 1;
		memcpy(m->restart_accept.state_digest, digest_x, MSG_DIGEST_SIZE);
		m->restart_accept.authorization = e ? (struct msg_bytes){0} : BYTES("signature");
		m->restart_accept.decided = !e;
		break;
	case MSG_RESTART_ACCEPTED:
		m->restart_accepted.epoch = 5;
		m->restart_accepted.proposal = ballot_a;
		m->restart_accepted.regvec = regvec;
		break;
	}
}

/* ---- helpers ---- */

/* Encodes m into a heap buffer of exactly the right size (checked against the size query). */
static uint8_t *encode(const struct msg *m, size_t *len)
{
	size_t need = 0, got = 0;
	uint8_t *buf;

	assert_int_equal(msg_encode(m, NULL, 0, &need), TEEMS_EFULL);
	assert_true(need >= MSG_HEADER_SIZE && need <= MSG_MAX_FRAME);
	buf = malloc(need);
	assert_non_null(buf);
	assert_int_equal(msg_encode(m, buf, need, &got), 0);
	assert_int_equal(got, need);
	assert_int_equal(get_le32(buf), need);
	*len = need;
	return buf;
}

/* Decodes a private, exact-size copy of buf[0 .. len) (so ASan catches any overread), and if it
 * decodes, checks that it re-encodes to the same bytes and to an equal message. Returns the
 * decoder's result; *out (if not NULL) gets the decoded message, whose bytes point into the
 * copy returned through *copy (the caller frees it). */
static int decode_copy(const uint8_t *buf, size_t len, struct msg *out, uint8_t **copy)
{
	uint8_t *c = malloc(len > 0 ? len : 1);
	struct msg m, again;
	size_t len2 = 0;
	uint8_t *buf2;
	int rv;

	assert_non_null(c);
	if (len > 0)
		memcpy(c, buf, len);
	rv = msg_decode(c, len, &m);
	if (rv == 0) {
		buf2 = malloc(len);
		assert_non_null(buf2);
		assert_int_equal(msg_encode(&m, buf2, len, &len2), 0);
		assert_int_equal(len2, len);
		assert_memory_equal(buf2, c, len);
		assert_int_equal(msg_decode(buf2, len2, &again), 0);
		assert_true(msg_equal(&m, &again));
		free(buf2);
	} else {
		assert_true(rv == TEEMS_ECORRUPT || rv == TEEMS_EVERSION);
	}
	if (out != NULL)
		*out = m;
	if (copy != NULL)
		*copy = c;
	else
		free(c);
	return rv;
}

/* Encodes m and expects TEEMS_EINVAL. */
static void assert_encode_invalid(const struct msg *m)
{
	size_t len = 1;
	uint8_t buf[64];

	assert_int_equal(msg_encode(m, buf, sizeof(buf), &len), TEEMS_EINVAL);
	assert_int_equal(msg_encode(m, NULL, 0, &len), TEEMS_EINVAL);
}

/* Applies patch(buf) to a copy of m's encoding and expects the decoder to return want. */
static void assert_patched(const struct msg *m, size_t at, const uint8_t *bytes, size_t n, int want)
{
	size_t len;
	uint8_t *buf = encode(m, &len);

	assert_true(at + n <= len);
	memcpy(buf + at, bytes, n);
	assert_int_equal(decode_copy(buf, len, NULL, NULL), want);
	free(buf);
}

static void patch32(const struct msg *m, size_t at, uint32_t v, int want)
{
	uint8_t b[4];

	put_le32(b, v);
	assert_patched(m, at, b, 4, want);
}

static void patch16(const struct msg *m, size_t at, uint16_t v, int want)
{
	uint8_t b[2];

	put_le16(b, v);
	assert_patched(m, at, b, 2, want);
}

static void patch8(const struct msg *m, size_t at, uint8_t v, int want)
{
	assert_patched(m, at, &v, 1, want);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* With TEEMS_MSG_CORPUS=dir set, every sample is also written there: a seed corpus for
 * tests/fuzz/fuzz_msg.c. */
static void save_seed(const uint8_t *buf, size_t len, int t, int v)
{
	const char *dir = getenv("TEEMS_MSG_CORPUS");
	char path[4096];
	FILE *f;

	if (dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/%s-%d", dir, msg_type_name(t), v);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* ---- round trips ---- */

static void test_round_trip_every_type(void **state)
{
	(void)state;
	for (int t = MSG_TYPE_MIN_; t <= MSG_TYPE_MAX_; t++) {
		for (int v = TYPICAL; v <= EMPTY; v++) {
			struct msg m, d;
			size_t len;
			uint8_t *buf, *copy;

			sample((enum msg_type)t, (enum variant)v, &m);
			buf = encode(&m, &len);
			save_seed(buf, len, t, v);
			assert_int_equal(buf[4], MSG_VERSION);
			assert_int_equal(buf[5], t);
			assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
			assert_int_equal(d.type, t);
			assert_true(msg_equal(&m, &d));
			assert_true(msg_equal(&d, &m));
			assert_int_equal(d.suspicious, v == TYPICAL);
			assert_int_equal(d.nonce, v == TYPICAL ? 0x7172737475767778ull : 0);
			assert_int_equal(d.from.reg.slot, v == TYPICAL ? 0x6162636465666768ull : 0);
			free(copy);
			free(buf);
		}
	}
}

/* msg_equal is what the other tests rely on: check decoded fields by hand for the list-heavy
 * messages too, through the iterators. */
static void test_decoded_fields(void **state)
{
	struct msg m, d;
	struct msg_iter it;
	struct msg_entry e;
	struct msg_incarnation inc;
	struct msg_item item;
	struct msg_bytes b;
	struct msg_regidx reg;
	size_t len, i;
	uint8_t *buf, *copy;

	(void)state;
	sample(MSG_PROMISE, TYPICAL, &m);
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	assert_null(d.promise.entries.items);
	assert_non_null(d.promise.entries.wire);
	assert_int_equal(d.promise.ballot.round, ballot_a.round);
	assert_int_equal(d.promise.ballot.reg.epoch, ballot_a.reg.epoch);
	assert_int_equal(d.promise.commit_index, 9);
	assert_true(d.promise.more);
	msg_entries_begin(&it, &d.promise.entries);
	for (i = 0; msg_entries_next(&it, &e); i++) {
		assert_true(i < ARRAY_LEN(entry_items));
		assert_int_equal(e.slot, entry_items[i].slot);
		assert_int_equal(e.ballot.round, entry_items[i].ballot.round);
		assert_int_equal(e.adopted, entry_items[i].adopted);
		assert_int_equal(e.value.len, entry_items[i].value.len);
		if (e.value.len > 0) {
			assert_memory_equal(e.value.p, entry_items[i].value.p, e.value.len);
			/* zero-copy: the bytes are inside the decoded buffer */
			assert_true(e.value.p > copy && e.value.p + e.value.len <= copy + len);
		}
	}
	assert_int_equal(i, ARRAY_LEN(entry_items));
	assert_false(msg_entries_next(&it, &e)); /* stays exhausted */
	msg_incarnations_begin(&it, &d.promise.regvec);
	for (i = 0; msg_incarnations_next(&it, &inc); i++) {
		assert_int_equal(inc.replica, regvec_items[i].replica);
		assert_int_equal(inc.reg.epoch, regvec_items[i].reg.epoch);
		assert_int_equal(inc.reg.slot, regvec_items[i].reg.slot);
	}
	assert_int_equal(i, ARRAY_LEN(regvec_items));
	assert_true(msg_regvec_find(&d.promise.regvec, 63, &reg));
	assert_int_equal(reg.epoch, 0xfffffffffffffffeull);
	assert_true(msg_regvec_find(&d.promise.regvec, 2, &reg));
	assert_int_equal(reg.slot, 0x0a0b0c0d0e0f1011ull);
	assert_false(msg_regvec_find(&d.promise.regvec, 1, &reg));
	assert_false(msg_regvec_find(&d.promise.regvec, 62, &reg));
	/* the same lookups on the caller's representation */
	assert_true(msg_regvec_find(&m.promise.regvec, 0, &reg));
	assert_false(msg_regvec_find(&m.promise.regvec, 3, &reg));
	free(copy);
	free(buf);

	sample(MSG_ABD_RANGE_REPLY, TYPICAL, &m);
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	msg_items_begin(&it, &d.abd_range_reply.items);
	for (i = 0; msg_items_next(&it, &item); i++) {
		assert_int_equal(item.key.len, item_items[i].key.len);
		assert_memory_equal(item.key.p, item_items[i].key.p, item.key.len);
		assert_int_equal(item.ts.op, item_items[i].ts.op);
		assert_int_equal(item.stable, item_items[i].stable);
		assert_int_equal(item.tombstone, item_items[i].tombstone);
	}
	assert_int_equal(i, ARRAY_LEN(item_items));
	free(copy);
	free(buf);

	sample(MSG_ACCEPT, TYPICAL, &m);
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	msg_values_begin(&it, &d.accept.values);
	for (i = 0; msg_values_next(&it, &b); i++) {
		assert_int_equal(b.len, value_items[i].len);
		if (b.len > 0)
			assert_memory_equal(b.p, value_items[i].p, b.len);
	}
	assert_int_equal(i, ARRAY_LEN(value_items));
	free(copy);
	free(buf);
}

/* The header layout and one whole frame, byte for byte, as docs/PROTOCOL.md shows them. */
static void test_golden_prepare(void **state)
{
	static const uint8_t want[] = {
		/* header */
		0x44, 0x00, 0x00, 0x00,				/* length 68 */
		0x01,						/* version */
		0x03,						/* type PREPARE */
		0x01, 0x00,					/* flags: suspicious */
		0x02, 0x00,					/* sender replica 2 */
		0x01, 0, 0, 0, 0, 0, 0, 0,			/* sender epoch 1 */
		0x09, 0, 0, 0, 0, 0, 0, 0,			/* sender slot 9 */
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* nonce */
		/* body: ballot (round 5, replica 2, (1, 9)), from_slot 300 */
		0x05, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x09, 0, 0, 0, 0,
		0, 0, 0, 0x2c, 0x01, 0, 0, 0, 0, 0, 0};
	struct msg m = {0};
	uint8_t buf[128];
	size_t len;

	(void)state;
	m.type = MSG_PREPARE;
	m.from = (struct msg_incarnation){2, {1, 9}};
	m.suspicious = true;
	m.nonce = 0x1122334455667788ull;
	m.prepare.ballot = (struct msg_ballot){5, 2, {1, 9}};
	m.prepare.from_slot = 300;
	assert_int_equal(msg_encode(&m, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(MSG_HEADER_SIZE + BALLOT_SIZE + 8, sizeof(want));
}

static void test_encode_buffer_too_small(void **state)
{
	struct msg m;
	size_t need, len;
	uint8_t *buf;

	(void)state;
	sample(MSG_RECOVERY_REPLY, TYPICAL, &m);
	assert_int_equal(msg_encode(&m, NULL, 0, &need), TEEMS_EFULL);
	buf = malloc(need);
	assert_non_null(buf);
	for (size_t cap = 0; cap < need; cap++) {
		len = 0;
		assert_int_equal(msg_encode(&m, buf, cap, &len), TEEMS_EFULL);
		assert_int_equal(len, need);
	}
	assert_int_equal(msg_encode(&m, buf, need, &len), 0);
	assert_int_equal(len, need);
	free(buf);
}

/* ---- malformed input ---- */

/* Every proper prefix is refused, both as is (the length field disagrees) and with the length
 * field rewritten to the prefix's size (so the body parser itself meets the end). */
static void test_every_truncation_rejected(void **state)
{
	(void)state;
	for (int t = MSG_TYPE_MIN_; t <= MSG_TYPE_MAX_; t++) {
		for (int v = TYPICAL; v <= EMPTY; v++) {
			struct msg m;
			size_t len;
			uint8_t *buf;

			sample((enum msg_type)t, (enum variant)v, &m);
			buf = encode(&m, &len);
			for (size_t k = 0; k < len; k++) {
				assert_int_equal(decode_copy(buf, k, NULL, NULL), TEEMS_ECORRUPT);
				if (k >= 4) {
					uint8_t *p = malloc(k);
					assert_non_null(p);
					memcpy(p, buf, k);
					put_le32(p, (uint32_t)k);
					assert_int_equal(decode_copy(p, k, NULL, NULL),
							 TEEMS_ECORRUPT);
					free(p);
				}
			}
			free(buf);
		}
	}
}

static void test_trailing_bytes_rejected(void **state)
{
	(void)state;
	for (int t = MSG_TYPE_MIN_; t <= MSG_TYPE_MAX_; t++) {
		struct msg m;
		size_t len;
		uint8_t *buf, *p;

		sample((enum msg_type)t, TYPICAL, &m);
		buf = encode(&m, &len);
		p = malloc(len + 3);
		assert_non_null(p);
		memcpy(p, buf, len);
		memset(p + len, 0, 3);
		assert_int_equal(decode_copy(p, len + 1, NULL, NULL), TEEMS_ECORRUPT);
		put_le32(p, (uint32_t)len + 1);
		assert_int_equal(decode_copy(p, len + 1, NULL, NULL), TEEMS_ECORRUPT);
		put_le32(p, (uint32_t)len + 3);
		assert_int_equal(decode_copy(p, len + 3, NULL, NULL), TEEMS_ECORRUPT);
		free(p);
		free(buf);
	}
}

/* Every single-bit flip of every encoding, then random multi-byte corruptions: never a crash;
 * what decodes re-encodes to its own bytes (checked in decode_copy) and differs from the
 * original. */
static void test_byte_flips(void **state)
{
	unsigned long decoded = 0, refused = 0;

	(void)state;
	for (int t = MSG_TYPE_MIN_; t <= MSG_TYPE_MAX_; t++) {
		for (int v = TYPICAL; v <= EMPTY; v++) {
			struct msg m, d;
			size_t len;
			uint8_t *buf, *copy;

			sample((enum msg_type)t, (enum variant)v, &m);
			buf = encode(&m, &len);
			for (size_t i = 0; i < len; i++) {
				for (int bit = 0; bit < 8; bit++) {
					buf[i] ^= (uint8_t)(1u << bit);
					if (decode_copy(buf, len, &d, &copy) == 0) {
						assert_false(msg_equal(&m, &d));
						decoded++;
					} else {
						refused++;
					}
					free(copy);
					buf[i] ^= (uint8_t)(1u << bit);
				}
			}
			for (int round = 0; round < 2000; round++) {
				uint8_t *p = malloc(len);
				int flips = 1 + (int)(rng() % 6);
				assert_non_null(p);
				memcpy(p, buf, len);
				for (int f = 0; f < flips; f++)
					p[rng() % len] = (uint8_t)rng();
				if (rng() % 2)
					put_le32(p, (uint32_t)len); /* keep the length right */
				if (decode_copy(p, len, NULL, NULL) == 0)
					decoded++;
				else
					refused++;
				free(p);
			}
			free(buf);
		}
	}
	/* both outcomes must occur, or the test is not testing what it says */
	print_message("byte flips: %lu decoded, %lu refused\n", decoded, refused);
	assert_true(decoded > 1000);
	assert_true(refused > 1000);
}

static void test_unknown_version(void **state)
{
	static const uint8_t versions[] = {0, 2, 0x81, 0xff};
	struct msg m;
	size_t len, need;
	uint8_t *buf;

	(void)state;
	sample(MSG_COMMIT, TYPICAL, &m);
	buf = encode(&m, &len);
	for (size_t i = 0; i < ARRAY_LEN(versions); i++) {
		buf[4] = versions[i];
		assert_int_equal(decode_copy(buf, len, NULL, NULL), TEEMS_EVERSION);
		assert_int_equal(msg_frame_length(buf, 5, &need), TEEMS_EVERSION);
		assert_int_equal(msg_frame_length(buf, len, &need), TEEMS_EVERSION);
		/* even when the rest does not parse, the version is what is reported */
		assert_int_equal(decode_copy(buf, 5, NULL, NULL), TEEMS_EVERSION);
	}
	buf[4] = MSG_VERSION;
	assert_int_equal(decode_copy(buf, len, NULL, NULL), 0);
	free(buf);
}

static void test_unknown_type_and_flags(void **state)
{
	static const uint8_t bad_types[] = {0, MSG_TYPE_MAX_ + 1, 0x80, 0xff};
	struct msg m;
	size_t len;
	uint8_t *buf;

	(void)state;
	sample(MSG_COMMIT, TYPICAL, &m);
	buf = encode(&m, &len);
	for (size_t i = 0; i < ARRAY_LEN(bad_types); i++) {
		buf[5] = bad_types[i];
		assert_int_equal(decode_copy(buf, len, NULL, NULL), TEEMS_ECORRUPT);
	}
	buf[5] = MSG_COMMIT;
	for (int bit = 1; bit < 16; bit++) {
		put_le16(buf + 6, (uint16_t)(MSG_FLAG_SUSPICIOUS | (1u << bit)));
		assert_int_equal(decode_copy(buf, len, NULL, NULL), TEEMS_ECORRUPT);
	}
	put_le16(buf + 6, 0);
	assert_int_equal(decode_copy(buf, len, NULL, NULL), 0);
	free(buf);

	m.type = (enum msg_type)0;
	assert_encode_invalid(&m);
	m.type = (enum msg_type)(MSG_TYPE_MAX_ + 1);
	assert_encode_invalid(&m);
}

static void test_invalid_enums_bools_replicas(void **state)
{
	struct msg m;

	(void)state;
	/* sender replica id: the header's u16 at byte 8 */
	sample(MSG_COMMIT, TYPICAL, &m);
	patch16(&m, 8, MSG_MAX_REPLICAS - 1, 0);
	patch16(&m, 8, MSG_MAX_REPLICAS, TEEMS_ECORRUPT);
	patch16(&m, 8, MSG_NO_REPLICA, TEEMS_ECORRUPT);
	m.from.replica = MSG_MAX_REPLICAS;
	assert_encode_invalid(&m);

	/* ACCEPTED: sync byte after ballot, first, last, digest */
	sample(MSG_ACCEPTED, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE + 16 + 32, MSG_VOLATILE, 0);
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE + 16 + 32, 2, TEEMS_ECORRUPT);
	m.accepted.sync = (enum msg_sync)2;
	assert_encode_invalid(&m);

	/* PROMISE: the ok bool after the ballot */
	sample(MSG_PROMISE, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE, 2, TEEMS_ECORRUPT);
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE, 0xff, TEEMS_ECORRUPT);
	/* the promised ballot's replica */
	patch16(&m, MSG_HEADER_SIZE + BALLOT_SIZE + 1 + 8, 64, TEEMS_ECORRUPT);

	/* CLIENT_REPLY: status, then the leader hint */
	sample(MSG_CLIENT_REPLY, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE + 16, MSG_CLIENT_UNKNOWN, 0);
	patch8(&m, MSG_HEADER_SIZE + 16, MSG_CLIENT_UNKNOWN + 1, TEEMS_ECORRUPT);
	patch16(&m, MSG_HEADER_SIZE + 17, MSG_NO_REPLICA, 0);
	patch16(&m, MSG_HEADER_SIZE + 17, 63, 0);
	patch16(&m, MSG_HEADER_SIZE + 17, 64, TEEMS_ECORRUPT);
	patch16(&m, MSG_HEADER_SIZE + 17, 0xfffe, TEEMS_ECORRUPT);
	m.client_reply.leader = 64;
	assert_encode_invalid(&m);
	sample(MSG_CLIENT_REPLY, TYPICAL, &m);
	m.client_reply.status = (enum msg_client_status)9;
	assert_encode_invalid(&m);

	/* NACK: refused type, reason */
	sample(MSG_NACK, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE, 0, TEEMS_ECORRUPT);
	patch8(&m, MSG_HEADER_SIZE, MSG_TYPE_MAX_ + 1, TEEMS_ECORRUPT);
	patch8(&m, MSG_HEADER_SIZE + 1, MSG_NACK_BUSY + 1, TEEMS_ECORRUPT);
	m.nack.reason = (enum msg_nack_reason)(MSG_NACK_BUSY + 1);
	assert_encode_invalid(&m);

	/* ABD_QUERY: mode; REGISTER_RESULT: status */
	sample(MSG_ABD_QUERY, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE, 2, TEEMS_ECORRUPT);
	sample(MSG_REGISTER_RESULT, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE, MSG_REGISTER_REJECTED + 1, TEEMS_ECORRUPT);
	m.register_result.status = (enum msg_register_status)(MSG_REGISTER_REJECTED + 1);
	assert_encode_invalid(&m);
}

/* Counts and lengths past their cap, or past the bytes that are there. */
static void test_oversized_counts_and_lengths(void **state)
{
	/* PROMISE: entries count after ballot, ok, promised, commit index, more */
	const size_t entries_at = MSG_HEADER_SIZE + BALLOT_SIZE + 1 + BALLOT_SIZE + 8 + 1;
	/* HEARTBEAT_ACK: regvec count after ballot, lease, accepted_through */
	const size_t regvec_at = MSG_HEADER_SIZE + BALLOT_SIZE + 16;
	struct msg m;
	size_t len;
	uint8_t *buf;

	(void)state;
	sample(MSG_PROMISE, TYPICAL, &m);
	patch32(&m, entries_at, ARRAY_LEN(entry_items), 0);
	patch32(&m, entries_at, MSG_MAX_ENTRIES + 1, TEEMS_ECORRUPT);
	patch32(&m, entries_at, UINT32_MAX, TEEMS_ECORRUPT);
	patch32(&m, entries_at, ARRAY_LEN(entry_items) + 1, TEEMS_ECORRUPT);
	patch32(&m, entries_at, ARRAY_LEN(entry_items) - 1, TEEMS_ECORRUPT);
	/* the first entry's value length: slot, ballot, adopted come first */
	patch32(&m, entries_at + 4 + 8 + BALLOT_SIZE + 1, UINT32_MAX, TEEMS_ECORRUPT);
	patch32(&m, entries_at + 4 + 8 + BALLOT_SIZE + 1, MSG_MAX_BLOB + 1, TEEMS_ECORRUPT);
	patch32(&m, entries_at + 4 + 8 + BALLOT_SIZE + 1, 1000, TEEMS_ECORRUPT);

	sample(MSG_HEARTBEAT_ACK, TYPICAL, &m);
	patch32(&m, regvec_at, 3, 0);
	patch32(&m, regvec_at, MSG_MAX_REPLICAS + 1, TEEMS_ECORRUPT);
	patch32(&m, regvec_at, 60, TEEMS_ECORRUPT); /* under the cap, past the end */
	{
		char err[TEEMS_ERRBUF_LEN];
		struct msg d;

		buf = encode(&m, &len);
		put_le32(buf + regvec_at, 60); /* refused before decoding any element */
		assert_int_equal(msg_decode_explain(buf, len, &d, err), TEEMS_ECORRUPT);
		assert_non_null(strstr(err, "exceeds the remaining bytes"));
		free(buf);
	}
	patch32(&m, regvec_at, 0x80000000u, TEEMS_ECORRUPT);
	/* a regvec entry with a replica id out of range */
	patch16(&m, regvec_at + 4 + INCARNATION_SIZE, MSG_MAX_REPLICAS, TEEMS_ECORRUPT);

	/* ABD_QUERY: key length after the mode byte */
	sample(MSG_ABD_QUERY, TYPICAL, &m);
	patch32(&m, MSG_HEADER_SIZE + 1, MSG_MAX_KEY + 1, TEEMS_ECORRUPT);
	patch32(&m, MSG_HEADER_SIZE + 1, 8, TEEMS_ECORRUPT);
	patch32(&m, MSG_HEADER_SIZE + 1, 6, TEEMS_ECORRUPT); /* leaves a trailing byte */

	/* the encoder refuses the same things */
	sample(MSG_ABD_QUERY, TYPICAL, &m);
	m.abd_query.key.len = MSG_MAX_KEY + 1;
	assert_encode_invalid(&m);
	m.abd_query.key.p = NULL;
	m.abd_query.key.len = 3; /* bytes without data */
	assert_encode_invalid(&m);
	sample(MSG_REGISTER, TYPICAL, &m);
	m.register_.quote.len = MSG_MAX_QUOTE + 1;
	assert_encode_invalid(&m);
	sample(MSG_PROMISE, TYPICAL, &m);
	m.promise.regvec.count = MSG_MAX_REPLICAS + 1;
	assert_encode_invalid(&m);
	m.promise.regvec.count = 2;
	m.promise.regvec.items = NULL; /* a count without elements */
	assert_encode_invalid(&m);

	/* a frame over MSG_MAX_FRAME */
	{
		static uint8_t big[MSG_MAX_BLOB];
		struct msg_bytes vals[3] = {{big, MSG_MAX_BLOB}, {big, MSG_MAX_BLOB}, {big, 1}};

		sample(MSG_ACCEPT, TYPICAL, &m);
		m.accept.values = (struct msg_value_list)LIST(vals);
		assert_encode_invalid(&m);
		m.accept.values.count = 1; /* a maximal slot value alone fits */
		buf = encode(&m, &len);
		assert_int_equal(decode_copy(buf, len, NULL, NULL), 0);
		free(buf);
		/* a frame over MSG_MAX_FRAME whose length field agrees is still refused */
		buf = calloc(1, MSG_MAX_FRAME + 1);
		assert_non_null(buf);
		sample(MSG_READ, TYPICAL, &m);
		m.read.command = (struct msg_bytes){big, MSG_MAX_FRAME + 1 - MSG_HEADER_SIZE - 4};
		assert_int_equal(msg_encode(&m, buf, MSG_MAX_FRAME + 1, &len), TEEMS_EINVAL);
		m.read.command.len = 0;
		assert_int_equal(msg_encode(&m, buf, MSG_MAX_FRAME + 1, &len), 0);
		put_le32(buf, MSG_MAX_FRAME + 1);
		put_le32(buf + MSG_HEADER_SIZE, MSG_MAX_FRAME + 1 - MSG_HEADER_SIZE - 4);
		assert_int_equal(msg_decode(buf, MSG_MAX_FRAME + 1, &m), TEEMS_ECORRUPT);
		free(buf);
	}
}

/* Appends one empty entry at `slot` to a PROMISE whose regvec is empty (its last 4 bytes) and
 * sets the entry count to `count`. Returns the new frame (len + 39 bytes). */
static uint8_t *append_entry(const uint8_t *buf, size_t len, size_t entries_at, uint64_t slot,
			     uint32_t count)
{
	const size_t entry_size = 8 + BALLOT_SIZE + 1 + 4;
	uint8_t *big = calloc(1, len + entry_size);

	assert_non_null(big);
	memcpy(big, buf, len - 4);
	put_le64(big + len - 4, slot);
	put_le32(big, (uint32_t)(len + entry_size));
	put_le32(big + entries_at, count);
	return big;
}

/* A count or length over its cap is refused for the cap itself, not only because the bytes run
 * out: here every byte the field claims is present. */
static void test_over_cap_with_bytes_present(void **state)
{
	static uint8_t key[MSG_MAX_KEY + 1];
	static struct msg_entry entries[MSG_MAX_ENTRIES];
	const size_t entries_at = MSG_HEADER_SIZE + BALLOT_SIZE + 1 + BALLOT_SIZE + 8 + 1;
	char err[TEEMS_ERRBUF_LEN];
	struct msg m, d;
	size_t len;
	uint8_t *buf, *big;

	(void)state;
	/* a key of MSG_MAX_KEY + 1 bytes, all there */
	sample(MSG_ABD_QUERY, TYPICAL, &m);
	m.abd_query.key = (struct msg_bytes){key, MSG_MAX_KEY};
	buf = encode(&m, &len);
	big = calloc(1, len + 1);
	assert_non_null(big);
	memcpy(big, buf, len);
	put_le32(big, (uint32_t)len + 1);
	put_le32(big + MSG_HEADER_SIZE + 1, MSG_MAX_KEY + 1);
	assert_int_equal(msg_decode_explain(big, len + 1, &d, err), TEEMS_ECORRUPT);
	assert_non_null(strstr(err, "longer than their limit"));
	free(big);
	free(buf);

	/* MSG_MAX_ENTRIES + 1 entries, all there; the same construction one shorter decodes */
	for (uint32_t i = 0; i < MSG_MAX_ENTRIES; i++)
		entries[i].slot = i + 1;
	sample(MSG_PROMISE, EMPTY, &m);
	m.promise.entries = (struct msg_entry_list){MSG_MAX_ENTRIES - 1, entries, NULL, 0};
	buf = encode(&m, &len);
	big = append_entry(buf, len, entries_at, MSG_MAX_ENTRIES, MSG_MAX_ENTRIES);
	assert_int_equal(decode_copy(big, len + 39, &d, NULL), 0);
	assert_int_equal(d.promise.entries.count, MSG_MAX_ENTRIES);
	free(big);
	free(buf);
	m.promise.entries.count = MSG_MAX_ENTRIES;
	buf = encode(&m, &len);
	big = append_entry(buf, len, entries_at, MSG_MAX_ENTRIES + 1, MSG_MAX_ENTRIES + 1);
	assert_int_equal(msg_decode_explain(big, len + 39, &d, err), TEEMS_ECORRUPT);
	assert_non_null(strstr(err, "list longer than its limit"));
	free(big);
	free(buf);
}

/* Each list at its cap round-trips; one more is refused. */
static void test_maximal_lists(void **state)
{
	static struct msg_entry entries[MSG_MAX_ENTRIES];
	static struct msg_incarnation regvec[MSG_MAX_REPLICAS];
	static struct msg_bytes values[MSG_MAX_BATCH];
	static struct msg_range_digest digests[MSG_MAX_RANGES];
	static struct msg_item items[MSG_MAX_ITEMS];
	static char keys[MSG_MAX_ITEMS][8];
	static uint8_t key[MSG_MAX_KEY];
	static uint8_t value[MSG_MAX_VALUE];
	struct msg m, d;
	size_t len;
	uint8_t *buf, *copy;

	(void)state;
	for (uint32_t i = 0; i < MSG_MAX_ENTRIES; i++) {
		entries[i].slot = 1000 + i;
		entries[i].ballot = ballot_a;
		entries[i].adopted = i % 3 == 0;
		entries[i].value = (struct msg_bytes){(const uint8_t *)"v", i % 2};
	}
	for (uint16_t i = 0; i < MSG_MAX_REPLICAS; i++)
		regvec[i] = (struct msg_incarnation){i, {i, 1000u - i}};
	for (uint32_t i = 0; i < MSG_MAX_BATCH; i++)
		values[i] = (struct msg_bytes){(const uint8_t *)"cmd", i % 4};
	for (uint32_t i = 0; i < MSG_MAX_RANGES; i++)
		digests[i] = (struct msg_range_digest){i, i * 3u, {(uint8_t)i}};
	for (uint32_t i = 0; i < MSG_MAX_ITEMS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%05u", i);
		items[i].key = (struct msg_bytes){(const uint8_t *)keys[i], 6};
		items[i].ts = ts_a;
		items[i].stable = i % 2;
	}

	sample(MSG_PROMISE, TYPICAL, &m);
	m.promise.entries = (struct msg_entry_list)LIST(entries);
	m.promise.regvec = (struct msg_incarnation_list)LIST(regvec);
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	assert_true(msg_equal(&m, &d));
	assert_int_equal(d.promise.entries.count, MSG_MAX_ENTRIES);
	assert_int_equal(d.promise.regvec.count, MSG_MAX_REPLICAS);
	free(copy);
	free(buf);
	/* a count over the cap is refused before any element is read (the array has only
	 * MSG_MAX_ENTRIES: AddressSanitizer would see a read of the next) */
	m.promise.entries.count = MSG_MAX_ENTRIES + 1;
	assert_encode_invalid(&m);

	sample(MSG_ACCEPT, TYPICAL, &m);
	m.accept.values = (struct msg_value_list)LIST(values);
	m.accept.first_slot = UINT64_MAX - (MSG_MAX_BATCH - 1); /* the last slot is UINT64_MAX */
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	assert_true(msg_equal(&m, &d));
	free(copy);
	free(buf);
	m.accept.values.count = MSG_MAX_BATCH + 1;
	assert_encode_invalid(&m);

	sample(MSG_ABD_DIGEST_REPLY, TYPICAL, &m);
	m.abd_digest_reply.ranges = MSG_MAX_RANGES;
	m.abd_digest_reply.digests = (struct msg_range_digest_list)LIST(digests);
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	assert_true(msg_equal(&m, &d));
	free(copy);
	free(buf);
	m.abd_digest_reply.digests.count = MSG_MAX_RANGES + 1;
	assert_encode_invalid(&m);

	sample(MSG_ABD_RANGE_REPLY, TYPICAL, &m);
	m.abd_range_reply.items = (struct msg_item_list)LIST(items);
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	assert_true(msg_equal(&m, &d));
	free(copy);
	free(buf);
	m.abd_range_reply.items.count = MSG_MAX_ITEMS + 1;
	assert_encode_invalid(&m);

	sample(MSG_RESTART_ANSWER, TYPICAL, &m);
	m.restart_answer.ranges = MSG_MAX_RANGES;
	m.restart_answer.range_digests = (struct msg_range_digest_list)LIST(digests);
	m.restart_answer.regvec = (struct msg_incarnation_list)LIST(regvec);
	m.restart_answer.accepted_members = (struct msg_incarnation_list)LIST(regvec);
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	assert_true(msg_equal(&m, &d));
	free(copy);
	free(buf);

	/* maximal bytes fields */
	sample(MSG_ABD_WRITE, TYPICAL, &m);
	m.abd_write.key = (struct msg_bytes){key, MSG_MAX_KEY};
	m.abd_write.value = (struct msg_bytes){value, MSG_MAX_VALUE};
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, &d, &copy), 0);
	assert_true(msg_equal(&m, &d));
	free(copy);
	free(buf);
	m.abd_write.value.len = MSG_MAX_VALUE + 1;
	assert_encode_invalid(&m);

	sample(MSG_SNAPSHOT_CHUNK, TYPICAL, &m);
	m.snapshot_chunk.data = (struct msg_bytes){value, MSG_MAX_CHUNK};
	m.snapshot_chunk.offset = 0;
	m.snapshot_chunk.total = MSG_MAX_CHUNK;
	buf = encode(&m, &len);
	assert_int_equal(decode_copy(buf, len, NULL, NULL), 0);
	free(buf);
	m.snapshot_chunk.data.len = MSG_MAX_CHUNK + 1;
	m.snapshot_chunk.total = MSG_MAX_CHUNK + 1;
	assert_encode_invalid(&m);
}

/* Lists keep their order: ascending replica ids, slots, ranges, keys. */
static void test_list_order(void **state)
{
	struct msg_incarnation dup[] = {{1, {1, 1}}, {1, {1, 2}}};
	struct msg_incarnation desc[] = {{3, {1, 1}}, {2, {1, 2}}};
	struct msg_entry same_slot[] = {{5, {1, 1, {1, 1}}, false, {0}},
					{5, {2, 1, {1, 1}}, false, {0}}};
	struct msg_range_digest rd[] = {{4, 0, {0}}, {2, 0, {0}}};
	struct msg_item keys[] = {{{(const uint8_t *)"ab", 2}, {0}, false, false, {0}},
				  {{(const uint8_t *)"a", 1}, {0}, false, false, {0}}};
	const size_t regvec_at = MSG_HEADER_SIZE + BALLOT_SIZE; /* READ_INDEX_ACK */
	struct msg m;
	size_t len;
	uint8_t *buf, tmp[INCARNATION_SIZE];

	(void)state;
	sample(MSG_READ_INDEX_ACK, TYPICAL, &m);
	m.read_index_ack.regvec = (struct msg_incarnation_list)LIST(dup);
	assert_encode_invalid(&m);
	m.read_index_ack.regvec = (struct msg_incarnation_list)LIST(desc);
	assert_encode_invalid(&m);

	/* swap two encoded elements: refused by the decoder */
	sample(MSG_READ_INDEX_ACK, TYPICAL, &m);
	buf = encode(&m, &len);
	memcpy(tmp, buf + regvec_at + 4, INCARNATION_SIZE);
	memcpy(buf + regvec_at + 4, buf + regvec_at + 4 + INCARNATION_SIZE, INCARNATION_SIZE);
	memcpy(buf + regvec_at + 4 + INCARNATION_SIZE, tmp, INCARNATION_SIZE);
	assert_int_equal(decode_copy(buf, len, NULL, NULL), TEEMS_ECORRUPT);
	/* and a duplicate */
	memcpy(buf + regvec_at + 4, buf + regvec_at + 4 + INCARNATION_SIZE, INCARNATION_SIZE);
	assert_int_equal(decode_copy(buf, len, NULL, NULL), TEEMS_ECORRUPT);
	free(buf);

	sample(MSG_PROMISE, TYPICAL, &m);
	m.promise.entries = (struct msg_entry_list)LIST(same_slot);
	assert_encode_invalid(&m);
	sample(MSG_ABD_DIGEST_REPLY, TYPICAL, &m);
	m.abd_digest_reply.digests = (struct msg_range_digest_list)LIST(rd);
	assert_encode_invalid(&m);
	sample(MSG_ABD_RANGE_REPLY, TYPICAL, &m);
	m.abd_range_reply.items = (struct msg_item_list)LIST(keys);
	assert_encode_invalid(&m);
}

/* The rules that tie fields together, on both sides. */
static void test_cross_field_rules(void **state)
{
	struct msg_range_digest outside[] = {{8, 0, {0}}};
	struct msg_item tomb[] = {
		{{(const uint8_t *)"k", 1}, {0}, false, true, {(const uint8_t *)"v", 1}}};
	struct msg m;

	(void)state;
	sample(MSG_PROMISE, TYPICAL, &m);
	m.promise.ok = false;
	assert_encode_invalid(&m); /* a refusal with entries */
	m.promise.entries.count = 0;
	assert_encode_invalid(&m); /* ... or with more */
	m.promise.more = false;
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE, 0, 0);
	sample(MSG_PROMISE, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE, 0, TEEMS_ECORRUPT);

	sample(MSG_ACCEPT, TYPICAL, &m);
	m.accept.values.count = 0;
	assert_encode_invalid(&m);
	sample(MSG_ACCEPT, TYPICAL, &m);
	m.accept.first_slot = UINT64_MAX - 1; /* three slots would pass UINT64_MAX */
	assert_encode_invalid(&m);
	m.accept.first_slot = UINT64_MAX - 2; /* the last slot is UINT64_MAX */
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE + 8, 0xfd, 0);
	patch8(&m, MSG_HEADER_SIZE + BALLOT_SIZE + 8, 0xfe, TEEMS_ECORRUPT);

	sample(MSG_ACCEPTED, TYPICAL, &m);
	m.accepted.last_slot = m.accepted.first_slot - 1;
	assert_encode_invalid(&m);

	sample(MSG_RECOVERY_REPLY, TYPICAL, &m);
	m.recovery_reply.snapshot_index = 10; /* the first entry is slot 10 */
	assert_encode_invalid(&m);
	sample(MSG_RECOVERY_REPLY, TYPICAL, &m);
	m.recovery_reply.ranges = 0; /* digests without a partition */
	assert_encode_invalid(&m);
	m.recovery_reply.ranges = 12; /* not a power of two */
	assert_encode_invalid(&m);
	m.recovery_reply.ranges = 4; /* digest for range 7 falls outside */
	assert_encode_invalid(&m);
	m.recovery_reply.ranges = MSG_MAX_RANGES * 2;
	assert_encode_invalid(&m);

	sample(MSG_SNAPSHOT_REQUEST, TYPICAL, &m);
	m.snapshot_request.index = 0;
	assert_encode_invalid(&m);

	sample(MSG_SNAPSHOT_CHUNK, TYPICAL, &m);
	m.snapshot_chunk.last = false;
	assert_encode_invalid(&m);
	sample(MSG_SNAPSHOT_CHUNK, TYPICAL, &m);
	m.snapshot_chunk.total = 4099;
	assert_encode_invalid(&m);
	m.snapshot_chunk.total = 5000;
	assert_encode_invalid(&m); /* last, but does not reach the end */
	m.snapshot_chunk.last = false;
	{
		struct msg ok = m;
		size_t len;
		uint8_t *buf = encode(&ok, &len);
		assert_int_equal(decode_copy(buf, len, NULL, NULL), 0);
		free(buf);
	}
	m.snapshot_chunk.offset = UINT64_MAX; /* offset + len overflows */
	assert_encode_invalid(&m);
	sample(MSG_SNAPSHOT_CHUNK, TYPICAL, &m);
	patch8(&m, MSG_HEADER_SIZE + 24, 0, TEEMS_ECORRUPT); /* the last flag */

	sample(MSG_ABD_QUERY_REPLY, TYPICAL, &m);
	m.abd_query_reply.tombstone = true;
	assert_encode_invalid(&m);
	sample(MSG_ABD_WRITE, TYPICAL, &m);
	m.abd_write.tombstone = true;
	assert_encode_invalid(&m);
	sample(MSG_ABD_RANGE_REPLY, TYPICAL, &m);
	m.abd_range_reply.items = (struct msg_item_list)LIST(tomb);
	assert_encode_invalid(&m);
	m.abd_range_reply.items.count = 0;
	m.abd_range_reply.range = 8;
	assert_encode_invalid(&m);

	sample(MSG_ABD_DIGEST_REQUEST, TYPICAL, &m);
	m.abd_digest_request.count = 25; /* 1000 + 25 > 1024 */
	assert_encode_invalid(&m);
	m.abd_digest_request.count = 0;
	assert_encode_invalid(&m);
	m.abd_digest_request.count = 1;
	m.abd_digest_request.ranges = 0;
	assert_encode_invalid(&m);
	sample(MSG_ABD_DIGEST_REQUEST, TYPICAL, &m);
	m.abd_digest_request.first = UINT32_MAX; /* first + count must not wrap */
	assert_encode_invalid(&m);

	sample(MSG_ABD_DIGEST_REPLY, TYPICAL, &m);
	m.abd_digest_reply.digests = (struct msg_range_digest_list)LIST(outside);
	assert_encode_invalid(&m);
	m.abd_digest_reply.digests.count = 0;
	m.abd_digest_reply.ranges = 0; /* a reply always names its partition */
	assert_encode_invalid(&m);

	sample(MSG_ABD_RANGE_REQUEST, TYPICAL, &m);
	m.abd_range_request.has_after = false;
	assert_encode_invalid(&m);
	sample(MSG_ABD_RANGE_REQUEST, TYPICAL, &m);
	m.abd_range_request.range = 8;
	assert_encode_invalid(&m);

	sample(MSG_RESTART_ANSWER, TYPICAL, &m);
	m.restart_answer.has_accepted = false;
	assert_encode_invalid(&m);
	sample(MSG_RESTART_ANSWER, EMPTY, &m);
	m.restart_answer.has_accepted = true;
	assert_encode_invalid(&m);

	sample(MSG_RESTART_ACCEPT, TYPICAL, &m);
	m.restart_accept.members.count = 0;
	assert_encode_invalid(&m);
	sample(MSG_RESTART_ACCEPT, TYPICAL, &m);
	m.restart_accept.authorization.len = MSG_MAX_AUTH + 1;
	assert_encode_invalid(&m);
}

/* ---- framing ---- */

static void test_frame_length(void **state)
{
	struct msg a, b, c;
	size_t la, lb, lc, need, pos, have;
	uint8_t *fa, *fb, *fc, *stream;
	uint8_t hdr[5] = {0, 0, 0, 0, MSG_VERSION};
	int seen = 0;

	(void)state;
	/* too little to tell: ask for a header */
	for (size_t n = 0; n < 4; n++) {
		need = 0;
		assert_int_equal(msg_frame_length(hdr, n, &need), 0);
		assert_int_equal(need, MSG_HEADER_SIZE);
	}
	/* lengths are refused before anything is buffered */
	put_le32(hdr, MSG_HEADER_SIZE - 1);
	assert_int_equal(msg_frame_length(hdr, 4, &need), TEEMS_ECORRUPT);
	put_le32(hdr, 0);
	assert_int_equal(msg_frame_length(hdr, 5, &need), TEEMS_ECORRUPT);
	put_le32(hdr, MSG_MAX_FRAME + 1);
	assert_int_equal(msg_frame_length(hdr, 4, &need), TEEMS_ECORRUPT);
	put_le32(hdr, UINT32_MAX);
	assert_int_equal(msg_frame_length(hdr, 5, &need), TEEMS_ECORRUPT);
	put_le32(hdr, MSG_MAX_FRAME);
	assert_int_equal(msg_frame_length(hdr, 5, &need), 0);
	assert_int_equal(need, MSG_MAX_FRAME);
	put_le32(hdr, MSG_HEADER_SIZE);
	assert_int_equal(msg_frame_length(hdr, 4, &need), 0);
	assert_int_equal(need, MSG_HEADER_SIZE);

	/* three frames back to back, fed one byte at a time */
	sample(MSG_ACCEPT, TYPICAL, &a);
	sample(MSG_COMMIT, EMPTY, &b);
	sample(MSG_RESTART_ANSWER, TYPICAL, &c);
	fa = encode(&a, &la);
	fb = encode(&b, &lb);
	fc = encode(&c, &lc);
	stream = malloc(la + lb + lc);
	assert_non_null(stream);
	memcpy(stream, fa, la);
	memcpy(stream + la, fb, lb);
	memcpy(stream + la + lb, fc, lc);
	pos = 0;
	have = 0;
	while (pos < la + lb + lc) {
		struct msg d;
		have++;
		assert_int_equal(msg_frame_length(stream + pos, have, &need), 0);
		if (have < need)
			continue;
		assert_int_equal(have, need);
		assert_int_equal(msg_decode(stream + pos, need, &d), 0);
		assert_true(msg_equal(&d, seen == 0 ? &a : seen == 1 ? &b : &c));
		seen++;
		pos += need;
		have = 0;
	}
	assert_int_equal(seen, 3);
	/* the whole stream is not one frame */
	assert_int_equal(msg_decode(stream, la + lb, &a), TEEMS_ECORRUPT);
	free(stream);
	free(fa);
	free(fb);
	free(fc);
}

/* ---- the rest of the API ---- */

static void test_type_names(void **state)
{
	(void)state;
	for (int t = MSG_TYPE_MIN_; t <= MSG_TYPE_MAX_; t++) {
		assert_string_not_equal(msg_type_name(t), "UNKNOWN");
		for (int u = MSG_TYPE_MIN_; u < t; u++)
			assert_string_not_equal(msg_type_name(t), msg_type_name(u));
	}
	assert_string_equal(msg_type_name(MSG_PREPARE), "PREPARE");
	assert_string_equal(msg_type_name(MSG_RESTART_ACCEPTED), "RESTART_ACCEPTED");
	assert_string_equal(msg_type_name(0), "UNKNOWN");
	assert_string_equal(msg_type_name(MSG_TYPE_MAX_ + 1), "UNKNOWN");
	assert_string_equal(msg_type_name(-1), "UNKNOWN");
}

static void test_decode_explain(void **state)
{
	char err[TEEMS_ERRBUF_LEN];
	struct msg m, d;
	size_t len;
	uint8_t *buf;

	(void)state;
	sample(MSG_PROMISE, TYPICAL, &m);
	buf = encode(&m, &len);
	buf[MSG_HEADER_SIZE + BALLOT_SIZE] = 7;
	assert_int_equal(msg_decode_explain(buf, len, &d, err), TEEMS_ECORRUPT);
	assert_non_null(strstr(err, "PROMISE"));
	assert_non_null(strstr(err, "bool"));
	buf[4] = 9;
	assert_int_equal(msg_decode_explain(buf, len, &d, err), TEEMS_EVERSION);
	assert_non_null(strstr(err, "version"));
	assert_int_equal(msg_decode_explain(buf, 2, &d, NULL), TEEMS_ECORRUPT);
	free(buf);
}

static void test_comparisons(void **state)
{
	struct msg_ballot b1 = {1, 5, {9, 9}}, b2 = {2, 0, {0, 0}}, b3 = {2, 1, {0, 0}},
			  b4 = {2, 1, {0, 1}}, b5 = {2, 1, {1, 0}};
	struct msg_timestamp t1 = {4, 1, {0, 0}, 9}, t2 = {4, 2, {0, 0}, 0}, t3 = {4, 2, {0, 0}, 1},
			     t4 = {5, 0, {0, 0}, 0};

	(void)state;
	assert_true(msg_ballot_cmp(&b1, &b2) < 0);
	assert_true(msg_ballot_cmp(&b2, &b3) < 0);
	assert_true(msg_ballot_cmp(&b3, &b4) < 0);
	assert_true(msg_ballot_cmp(&b4, &b5) < 0);
	assert_true(msg_ballot_cmp(&b5, &b1) > 0);
	assert_int_equal(msg_ballot_cmp(&b4, &b4), 0);
	/* two writes through one coordinator never share a timestamp (SCENARIOS S18) */
	assert_true(msg_timestamp_cmp(&t1, &t2) < 0);
	assert_true(msg_timestamp_cmp(&t2, &t3) < 0);
	assert_true(msg_timestamp_cmp(&t3, &t4) < 0);
	assert_int_equal(msg_timestamp_cmp(&t3, &t3), 0);
	assert_true(msg_regidx_cmp(&b4.reg, &b5.reg) < 0);
	assert_true(msg_regidx_cmp(&(struct msg_regidx){UINT64_MAX, 0}, &b5.reg) > 0);
}

/* msg_equal looks at the header and at every body field, and across representations. */
static void test_equal(void **state)
{
	struct msg a, b;

	(void)state;
	sample(MSG_ABD_WRITE_ACK, TYPICAL, &a);
	sample(MSG_ABD_WRITE_ACK, TYPICAL, &b);
	assert_true(msg_equal(&a, &b));
	b.nonce++;
	assert_false(msg_equal(&a, &b));
	b = a;
	b.suspicious = false;
	assert_false(msg_equal(&a, &b));
	b = a;
	b.from.reg.epoch++;
	assert_false(msg_equal(&a, &b));
	b = a;
	b.abd_write_ack.regvec.count = 2;
	assert_false(msg_equal(&a, &b));
	b = a;
	b.abd_write_ack.key = BYTES("user:43");
	assert_false(msg_equal(&a, &b));
	b = a;
	b.type = MSG_ABD_QUERY_REPLY;
	assert_false(msg_equal(&a, &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_decoded_fields),
		cmocka_unit_test(test_golden_prepare),
		cmocka_unit_test(test_encode_buffer_too_small),
		cmocka_unit_test(test_every_truncation_rejected),
		cmocka_unit_test(test_trailing_bytes_rejected),
		cmocka_unit_test(test_byte_flips),
		cmocka_unit_test(test_unknown_version),
		cmocka_unit_test(test_unknown_type_and_flags),
		cmocka_unit_test(test_invalid_enums_bools_replicas),
		cmocka_unit_test(test_oversized_counts_and_lengths),
		cmocka_unit_test(test_over_cap_with_bytes_present),
		cmocka_unit_test(test_maximal_lists),
		cmocka_unit_test(test_list_order),
		cmocka_unit_test(test_cross_field_rules),
		cmocka_unit_test(test_frame_length),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_decode_explain),
		cmocka_unit_test(test_comparisons),
		cmocka_unit_test(test_equal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
