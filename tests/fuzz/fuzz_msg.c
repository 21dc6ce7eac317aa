/* libFuzzer target for the wire codec (src/core/msg.h).
 *
 * Each input is decoded twice: as is, and with its length field and version byte set right so
 * that most inputs reach a body parser instead of failing on the header. Whenever a decode
 * succeeds, the message must re-encode to exactly the same bytes (the encoding is canonical),
 * the re-encoding must decode to an equal message, and every list must iterate to its count.
 * Decoding works on an exact-size copy so that AddressSanitizer catches any overread. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "core/msg.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

/* Walks every list of m, so that the iterators run on whatever the decoder accepted. */
static void walk_lists(const struct msg *m)
{
	const struct msg_incarnation_list *incs[2] = {NULL, NULL};
	const struct msg_entry_list *entries = NULL;
	const struct msg_range_digest_list *digests = NULL;
	struct msg_iter it;
	uint32_t n;

	switch (m->type) {
	case MSG_PROMISE:
		incs[0] = &m->promise.regvec;
		entries = &m->promise.entries;
		break;
	case MSG_RECOVERY_REPLY:
		incs[0] = &m->recovery_reply.regvec;
		entries = &m->recovery_reply.entries;
		digests = &m->recovery_reply.range_digests;
		break;
	case MSG_RESTART_ANSWER:
		incs[0] = &m->restart_answer.regvec;
		incs[1] = &m->restart_answer.accepted_members;
		digests = &m->restart_answer.range_digests;
		break;
	case MSG_RESTART_ACCEPT:
		incs[0] = &m->restart_accept.members;
		break;
	case MSG_ABD_DIGEST_REPLY:
		digests = &m->abd_digest_reply.digests;
		break;
	case MSG_ACCEPT: {
		struct msg_bytes v;
		msg_values_begin(&it, &m->accept.values);
		for (n = 0; msg_values_next(&it, &v); n++)
			CHECK(v.len <= MSG_MAX_BLOB);
		CHECK(n == m->accept.values.count);
		break;
	}
	case MSG_ABD_RANGE_REPLY: {
		struct msg_item item;
		msg_items_begin(&it, &m->abd_range_reply.items);
		for (n = 0; msg_items_next(&it, &item); n++)
			CHECK(item.key.len <= MSG_MAX_KEY && item.value.len <= MSG_MAX_VALUE);
		CHECK(n == m->abd_range_reply.items.count);
		break;
	}
	default:
		break;
	}
	for (int i = 0; i < 2; i++) {
		struct msg_incarnation inc;
		struct msg_regidx reg;
		if (incs[i] == NULL)
			continue;
		msg_incarnations_begin(&it, incs[i]);
		for (n = 0; msg_incarnations_next(&it, &inc); n++) {
			CHECK(inc.replica < MSG_MAX_REPLICAS);
			CHECK(msg_regvec_find(incs[i], inc.replica, &reg));
			CHECK(msg_regidx_cmp(&reg, &inc.reg) == 0);
		}
		CHECK(n == incs[i]->count);
	}
	if (entries != NULL) {
		struct msg_entry e;
		msg_entries_begin(&it, entries);
		for (n = 0; msg_entries_next(&it, &e); n++)
			CHECK(e.value.len <= MSG_MAX_BLOB);
		CHECK(n == entries->count);
	}
	if (digests != NULL) {
		struct msg_range_digest d;
		msg_range_digests_begin(&it, digests);
		for (n = 0; msg_range_digests_next(&it, &d); n++)
			CHECK(d.range < MSG_MAX_RANGES);
		CHECK(n == digests->count);
	}
}

static void round_trip(const uint8_t *data, size_t size)
{
	uint8_t *in = malloc(size > 0 ? size : 1);
	uint8_t *out;
	struct msg m, again;
	size_t len = 0, need = 0;
	int rv;

	CHECK(in != NULL);
	if (size > 0)
		memcpy(in, data, size);
	rv = msg_decode(in, size, &m);
	if (rv != 0) {
		CHECK(rv == TEEMS_ECORRUPT || rv == TEEMS_EVERSION);
		free(in);
		return;
	}
	CHECK(msg_frame_length(in, size, &need) == 0 && need == size);
	walk_lists(&m);
	CHECK(msg_encode(&m, NULL, 0, &len) == TEEMS_EFULL && len == size);
	out = malloc(size);
	CHECK(out != NULL);
	CHECK(msg_encode(&m, out, size, &len) == 0 && len == size);
	CHECK(memcmp(in, out, size) == 0);
	CHECK(msg_decode(out, len, &again) == 0);
	CHECK(msg_equal(&m, &again) && msg_equal(&again, &m));
	CHECK(strcmp(msg_type_name(m.type), "UNKNOWN") != 0);
	free(out);
	free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t need;
	int rv;

	if (size > MSG_MAX_FRAME)
		return 0;
	rv = msg_frame_length(data, size, &need);
	CHECK(rv == 0 || rv == TEEMS_ECORRUPT || rv == TEEMS_EVERSION);
	round_trip(data, size);
	if (size >= MSG_HEADER_SIZE) {
		uint8_t *fixed = malloc(size);
		CHECK(fixed != NULL);
		memcpy(fixed, data, size);
		put_le32(fixed, (uint32_t)size);
		fixed[4] = MSG_VERSION;
		round_trip(fixed, size);
		free(fixed);
	}
	return 0;
}
