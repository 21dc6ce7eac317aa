/* libFuzzer target for the blob decryptor (src/client/obj_crypto.c). Each input is used twice:
 *   1. as a blob for one genuine object's metadata: it must be refused (nothing can be forged
 *      without the keys) unless it is, byte for byte, the genuine blob;
 *   2. as an XOR mask over the genuine blob (extra input bytes extend it, a first byte
 *      chooses a cut), which takes the fuzzer past the magic and header MAC into the chunk
 *      parser: any change must be refused with a blob error, no change accepted.
 * The bytes are written in pieces whose sizes come from the input, to exercise the
 * decryptor's reassembly, and pulled by the decryptor itself (obj_sink.pull), which must reach
 * the same verdict. ASan checks every access. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/obj_crypto.h"
#include "common/alloc.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ID "fuzz/object"

static struct {
	int ready;
	struct obj_meta meta;
	uint8_t *blob;
	size_t len;
} g;

static void init(void)
{
	uint8_t pt[300];
	struct obj_mem_src ms = {pt, sizeof(pt), 0};
	struct obj_src src = obj_src_mem(&ms);
	struct obj_mem_sink out = {0};
	struct obj_sink sink = obj_sink_mem(&out);

	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)i;
	memset(g.meta.object_key, 0x5a, TEE_KEY_LEN);
	g.meta.version = 9;
	g.meta.size = sizeof(pt);
	g.meta.chunk_size = 64;
	if (obj_encrypt(&g.meta, ID, strlen(ID), &src, &sink, NULL) != TEEMS_OK)
		abort();
	g.blob = out.data;
	g.len = out.len;
	g.ready = 1;
}

static int discard(void *arg, const void *buf, size_t len, char *errbuf)
{
	(void)arg;
	(void)buf;
	(void)len;
	(void)errbuf;
	return TEEMS_OK;
}

static int decrypt(const uint8_t *blob, size_t len, const uint8_t *steps, size_t nsteps)
{
	struct obj_sink out = {.write = discard, .arg = NULL}, in;
	struct obj_dec *dec;
	size_t pos = 0, k = 0;
	int rc;

	if (obj_dec_new(&g.meta, ID, strlen(ID), &out, &dec, NULL) != TEEMS_OK)
		abort();
	in = obj_dec_sink(dec);
	rc = TEEMS_OK;
	while (pos < len && rc == TEEMS_OK) {
		size_t n = nsteps ? (size_t)steps[k++ % nsteps] * 3 + 1 : len;

		if (n > len - pos)
			n = len - pos;
		rc = in.write(in.arg, blob + pos, n, NULL);
		pos += n;
	}
	if (rc == TEEMS_OK)
		rc = obj_dec_finish(dec, NULL);
	obj_dec_free(dec);
	return rc;
}

/* The same bytes through the decryptor's other way in (obj_sink.pull: it reads the blob into
 * its own buffer, as from the dir store): the verdict must be the same. */
static int decrypt_pull(const uint8_t *blob, size_t len)
{
	struct obj_sink out = {.write = discard, .arg = NULL}, in;
	struct obj_mem_src ms = {blob, len, 0};
	struct obj_src src = obj_src_mem(&ms);
	struct obj_dec *dec;
	int rc;

	if (obj_dec_new(&g.meta, ID, strlen(ID), &out, &dec, NULL) != TEEMS_OK)
		abort();
	in = obj_dec_sink(dec);
	rc = in.pull(in.arg, &src, NULL);
	if (rc == TEEMS_OK)
		rc = obj_dec_finish(dec, NULL);
	obj_dec_free(dec);
	return rc;
}

static void expect_refused(int rc)
{
	if (rc != OBJ_ETAMPERED && rc != OBJ_ETRUNCATED && rc != OBJ_ESTALE)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *masked;
	size_t len, cut;
	int changed = 0, rc;

	if (!g.ready)
		init();
	rc = decrypt(data, size, data, size < 8 ? size : 8);
	if (rc != decrypt_pull(data, size))
		abort();
	if (rc == TEEMS_OK && (size != g.len || memcmp(data, g.blob, size) != 0))
		abort();
	if (rc != TEEMS_OK)
		expect_refused(rc);

	len = size > g.len ? size : g.len;
	cut = size > 0 && data[0] == 0xff ? len / 2 : len; /* sometimes cut the blob short */
	masked = malloc(len);
	if (masked == NULL)
		return 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t m = i < size ? data[i] : 0;

		if (i == 0 && m == 0xff)
			m = 0;
		masked[i] = (uint8_t)((i < g.len ? g.blob[i] : 0) ^ m);
		/* only the first `cut` bytes are decrypted */
		changed |= i < cut && (i >= g.len || m != 0);
	}
	changed |= cut != g.len;
	rc = decrypt(masked, cut, data, size < 8 ? size : 8);
	if (rc != decrypt_pull(masked, cut))
		abort();
	if ((rc == TEEMS_OK) == changed)
		abort();
	if (rc != TEEMS_OK)
		expect_refused(rc);
	free(masked);
	return 0;
}
