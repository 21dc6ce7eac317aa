/* libFuzzer target for the key-value state machine's encodings (src/kv/kv.h).
 *
 * The first byte picks the decoder (command, result, snapshot, or a sequence of commands
 * applied to a map); the rest is the input, copied to an exact-size buffer so that
 * AddressSanitizer catches any overread. Whatever a decoder accepts must re-encode to exactly
 * the same bytes (the encodings are canonical), a restored snapshot must serialize back to
 * the same bytes, and two replicas applying the same commands must agree. Seeds in
 * tests/fuzz/corpus/fuzz_kv: every command kind, results, a snapshot, and command sequences,
 * each written by src/kv's own encoders. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv/kv.h"
#include "kv/lease_table.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

static void fuzz_cmd(const uint8_t *buf, size_t len)
{
	struct kv_cmd c;
	uint8_t *out;
	size_t n;

	if (kv_cmd_decode(buf, len, &c) != TEEMS_OK)
		return;
	CHECK(kv_cmd_size(&c) == len);
	out = malloc(len);
	CHECK(out != NULL);
	CHECK(kv_cmd_encode(&c, out, len, &n) == TEEMS_OK && n == len);
	CHECK(memcmp(out, buf, len) == 0);
	free(out);
}

static void fuzz_result(const uint8_t *buf, size_t len)
{
	struct kv_result r;
	uint8_t *out;
	size_t n;

	if (kv_result_decode(buf, len, &r) != TEEMS_OK)
		return;
	out = malloc(len);
	CHECK(out != NULL);
	CHECK(kv_result_encode(&r, out, len, &n) == TEEMS_OK && n == len);
	CHECK(memcmp(out, buf, len) == 0);
	free(out);
}

static void fuzz_snapshot(const uint8_t *buf, size_t len)
{
	struct kv *kv;
	uint8_t *out;
	size_t n;

	CHECK(kv_new(&kv) == TEEMS_OK);
	if (kv_restore(kv, buf, len) == TEEMS_OK) {
		CHECK(kv_snapshot(kv, &out, &n) == TEEMS_OK);
		CHECK(n == len && memcmp(out, buf, len) == 0);
		teems_free(out);
	}
	kv_free(kv);
}

/* Commands separated by u16 lengths, applied in order to a map and, from the middle on, to a
 * second map restored from the first's snapshot: both must give the same result bytes and end
 * equal (determinism, DESIGN.md section 5); then a snapshot round trip. */
static void fuzz_apply(const uint8_t *buf, size_t len)
{
	struct kv *kv, *copy = NULL, *again;
	uint8_t *snap, *res, *res2;
	size_t off = 0, n, rn, rn2;

	CHECK(kv_new(&kv) == TEEMS_OK);
	while (len - off >= 2) {
		size_t l = (size_t)buf[off] | ((size_t)buf[off + 1] << 8);
		int rc;

		off += 2;
		if (l > len - off)
			l = len - off;
		if (copy == NULL && off >= len / 2) {
			CHECK(kv_snapshot(kv, &snap, &n) == TEEMS_OK);
			CHECK(kv_new(&copy) == TEEMS_OK);
			CHECK(kv_restore(copy, snap, n) == TEEMS_OK);
			teems_free(snap);
		}
		rc = kv_apply_encoded(kv, buf + off, l, &res, &rn);
		if (rc == TEEMS_OK) {
			struct kv_result r;
			struct kv_lease_res lr;

			/* a lease command (0x83) has its own result encoding */
			CHECK(kv_result_decode(res, rn, &r) == TEEMS_OK ||
			      kv_lease_result_decode(res, rn, &lr) == TEEMS_OK);
		}
		if (copy != NULL) {
			CHECK(kv_apply_encoded(copy, buf + off, l, &res2, &rn2) == rc);
			CHECK(rn == rn2 && (rn == 0 || memcmp(res, res2, rn) == 0));
			teems_free(res2);
		}
		teems_free(res);
		off += l;
	}
	if (copy != NULL)
		CHECK(kv_equal(kv, copy) && kv_equal(copy, kv));
	CHECK(kv_snapshot(kv, &snap, &n) == TEEMS_OK);
	CHECK(kv_new(&again) == TEEMS_OK);
	CHECK(kv_restore(again, snap, n) == TEEMS_OK);
	CHECK(kv_equal(kv, again) && kv_equal(again, kv));
	teems_free(snap);
	kv_free(again);
	kv_free(copy);
	kv_free(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf;

	if (size < 1)
		return 0;
	buf = malloc(size - 1 ? size - 1 : 1);
	CHECK(buf != NULL);
	memcpy(buf, data + 1, size - 1);
	switch (data[0] & 3) {
	case 0:
		fuzz_cmd(buf, size - 1);
		break;
	case 1:
		fuzz_result(buf, size - 1);
		break;
	case 2:
		fuzz_snapshot(buf, size - 1);
		break;
	default:
		fuzz_apply(buf, size - 1);
		break;
	}
	free(buf);
	return 0;
}
