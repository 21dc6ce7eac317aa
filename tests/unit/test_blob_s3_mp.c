/* src/client/blob_s3_multipart.c: the part-size arithmetic around its boundaries (one part or
 * two, the 10,000-part raise, objects no part size can hold), the UploadId parser and the ETag
 * header parser on hostile input (too long, control characters, entities, missing tags), the
 * <CompleteMultipartUpload> builder (escaping, exact sizing, truncation), the verdict on a
 * 200 answer to Complete that carries an <Error>, S3 timestamps, and ListMultipartUploads pages
 * (what gc's sweep of stale uploads reads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/blob_s3_multipart.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

/* Checks a plan's invariants: part count within S3's limit, every part but the last of
 * part_len bytes and within S3's bounds, the last one non-empty, and the sum equal to len. */
static void check_plan(uint64_t len, uint64_t part_len, uint32_t n)
{
	uint64_t sum = 0;

	assert_true(n >= 2 && n <= S3_MP_MAX_PARTS);
	assert_true(part_len >= S3_MP_MIN_PART && part_len <= S3_MP_MAX_PART);
	for (uint32_t i = 1; i <= n; i++) {
		uint64_t b = blob_s3_mp_part_bytes(len, part_len, n, i);

		if (i < n)
			assert_int_equal(b, part_len);
		assert_true(b > 0 && b <= part_len);
		sum += b;
	}
	assert_int_equal(sum, len);
	assert_int_equal(blob_s3_mp_part_bytes(len, part_len, n, 0), 0);
	assert_int_equal(blob_s3_mp_part_bytes(len, part_len, n, n + 1), 0);
}

static void test_part_size_valid(void **state)
{
	(void)state;
	assert_false(blob_s3_mp_part_size_valid(0));
	assert_false(blob_s3_mp_part_size_valid(5 * MIB - 1));
	assert_true(blob_s3_mp_part_size_valid(5 * MIB));
	assert_true(blob_s3_mp_part_size_valid(S3_MP_DEFAULT_PART));
	assert_true(blob_s3_mp_part_size_valid(5 * GIB));
	assert_false(blob_s3_mp_part_size_valid(5 * GIB + 1));
	assert_false(blob_s3_mp_part_size_valid(UINT64_MAX));
}

static void test_plan_boundaries(void **state)
{
	uint64_t pl;
	uint32_t n;

	(void)state;
	/* At or below one part: a single PUT. */
	for (uint64_t len = 0; len <= 2; len++) {
		assert_int_equal(blob_s3_mp_plan(len, 64 * MIB, &pl, &n), 0);
		assert_int_equal(n, 0);
	}
	assert_int_equal(blob_s3_mp_plan(64 * MIB, 64 * MIB, &pl, &n), 0);
	assert_int_equal(n, 0);
	/* One byte more: a full part and a one-byte part. */
	assert_int_equal(blob_s3_mp_plan(64 * MIB + 1, 64 * MIB, &pl, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(pl, 64 * MIB);
	assert_int_equal(blob_s3_mp_part_bytes(64 * MIB + 1, pl, n, 2), 1);
	check_plan(64 * MIB + 1, pl, n);
	/* 12 MiB in 5 MiB parts: 5, 5, 2. */
	assert_int_equal(blob_s3_mp_plan(12 * MIB, 5 * MIB, &pl, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(blob_s3_mp_part_bytes(12 * MIB, pl, n, 3), 2 * MIB);
	check_plan(12 * MIB, pl, n);
	/* Exact multiples: the last part is whole, not empty. */
	assert_int_equal(blob_s3_mp_plan(15 * MIB, 5 * MIB, &pl, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(blob_s3_mp_part_bytes(15 * MIB, pl, n, 3), 5 * MIB);
	check_plan(15 * MIB, pl, n);
	/* Invalid part sizes are refused, not silently fixed. */
	assert_int_equal(blob_s3_mp_plan(100 * MIB, 5 * MIB - 1, &pl, &n), -1);
	assert_int_equal(blob_s3_mp_plan(100 * MIB, 0, &pl, &n), -1);
}

static void test_plan_ten_thousand_parts(void **state)
{
	uint64_t pl, len;
	uint32_t n;

	(void)state;
	/* Exactly 10,000 parts of 64 MiB: no raise. */
	len = 10000 * 64 * MIB;
	assert_int_equal(blob_s3_mp_plan(len, 64 * MIB, &pl, &n), 0);
	assert_int_equal(n, 10000);
	assert_int_equal(pl, 64 * MIB);
	check_plan(len, pl, n);
	/* One byte more would need 10,001: the part grows by a whole MiB. */
	assert_int_equal(blob_s3_mp_plan(len + 1, 64 * MIB, &pl, &n), 0);
	assert_int_equal(pl, 65 * MIB);
	assert_true(n <= 10000);
	check_plan(len + 1, pl, n);
	/* 1 TiB with 5 MiB parts: raised to ceil(1 TiB / 10,000) rounded up to MiB = 105 MiB. */
	len = 1ull << 40;
	assert_int_equal(blob_s3_mp_plan(len, 5 * MIB, &pl, &n), 0);
	assert_int_equal(pl, 105 * MIB);
	assert_int_equal(n, 9987);
	check_plan(len, pl, n);
	/* S3's largest object, 5 TiB: fits with the raise. */
	len = 5ull << 40;
	assert_int_equal(blob_s3_mp_plan(len, S3_MP_DEFAULT_PART, &pl, &n), 0);
	check_plan(len, pl, n);
	/* 10,000 parts of 5 GiB is the ceiling; beyond it no plan exists. */
	len = 10000 * 5 * GIB;
	assert_int_equal(blob_s3_mp_plan(len, 5 * GIB, &pl, &n), 0);
	assert_int_equal(n, 10000);
	check_plan(len, pl, n);
	assert_int_equal(blob_s3_mp_plan(len + 1, 64 * MIB, &pl, &n), -1);
	assert_int_equal(blob_s3_mp_plan(UINT64_MAX, 64 * MIB, &pl, &n), -1);
}

static int upload_id(const char *xml, char out[S3_MP_UPLOAD_ID_MAX + 1])
{
	return blob_s3_mp_parse_upload_id(xml, strlen(xml), out);
}

static void test_upload_id(void **state)
{
	char id[S3_MP_UPLOAD_ID_MAX + 1];
	char big[S3_MP_UPLOAD_ID_MAX + 200];
	int n;

	(void)state;
	assert_int_equal(upload_id("<?xml version=\"1.0\"?>\n<InitiateMultipartUploadResult "
				   "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b"
				   "</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE.Zm9y-_~ZWx2aW5n"
				   "</UploadId></InitiateMultipartUploadResult>",
				   id),
			 0);
	assert_string_equal(id, "VXBsb2FkIElE.Zm9y-_~ZWx2aW5n");
	/* Entities are decoded (the caller re-encodes for the URL). */
	assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>a&amp;b&lt;c"
				   "</UploadId></InitiateMultipartUploadResult>",
				   id),
			 0);
	assert_string_equal(id, "a&b<c");
	/* Missing pieces, empty, blanks, control bytes, unknown entities. */
	assert_int_equal(upload_id("<UploadId>x</UploadId>", id), -1);
	assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>x", id), -1);
	assert_int_equal(
		upload_id("<InitiateMultipartUploadResult></InitiateMultipartUploadResult>", id),
		-1);
	assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId></UploadId>", id), -1);
	assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>a b</UploadId>", id),
			 -1);
	assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>a\nb</UploadId>", id),
			 -1);
	assert_int_equal(
		upload_id("<InitiateMultipartUploadResult><UploadId>a&#38;b</UploadId>", id), -1);
	assert_int_equal(upload_id("<InitiateMultipartUploadResult><UploadId>a&amp</UploadId>", id),
			 -1);
	/* An embedded NUL within the given length is refused, not cut short. */
	{
		static const char nul[] =
			"<InitiateMultipartUploadResult><UploadId>a\0b</UploadId>";

		assert_int_equal(blob_s3_mp_parse_upload_id(nul, sizeof(nul) - 1, id), -1);
	}
	/* Exactly the bound fits; one more does not. */
	for (int extra = 0; extra <= 1; extra++) {
		n = snprintf(big, sizeof(big), "<InitiateMultipartUploadResult><UploadId>");
		memset(big + n, 'x', S3_MP_UPLOAD_ID_MAX + (size_t)extra);
		n += S3_MP_UPLOAD_ID_MAX + extra;
		snprintf(big + n, sizeof(big) - (size_t)n, "</UploadId>");
		assert_int_equal(upload_id(big, id), extra ? -1 : 0);
		if (!extra)
			assert_int_equal(strlen(id), S3_MP_UPLOAD_ID_MAX);
	}
	/* The length bounds the search: a tag past it is not seen. */
	{
		static const char x[] = "<InitiateMultipartUploadResult><UploadId>abc</UploadId>";

		assert_int_equal(blob_s3_mp_parse_upload_id(x, sizeof(x) - 3, id), -1);
	}
}

static int etag(const char *line, char out[S3_MP_ETAG_MAX + 1])
{
	return blob_s3_mp_etag_header(line, strlen(line), out);
}

static void test_etag_header(void **state)
{
	char e[S3_MP_ETAG_MAX + 1] = "", line[S3_MP_ETAG_MAX + 32];

	(void)state;
	assert_int_equal(etag("ETag: \"511c9beff897f52241976b48e5f02c93\"\r\n", e), 1);
	assert_string_equal(e, "\"511c9beff897f52241976b48e5f02c93\"");
	/* Other headers leave what was found alone. */
	assert_int_equal(etag("Content-Type: text/plain\r\n", e), 0);
	assert_int_equal(etag("\r\n", e), 0);
	assert_int_equal(etag("HTTP/1.1 200 OK\r\n", e), 0);
	assert_string_equal(e, "\"511c9beff897f52241976b48e5f02c93\"");
	assert_int_equal(etag("etag:\t\"a-1\"  \r\n", e), 1);
	assert_string_equal(e, "\"a-1\"");
	assert_int_equal(etag("ETag:\r\n", e), -1);
	assert_int_equal(etag("ETag: \"a\x01\"\r\n", e), -1);
	assert_int_equal(etag("ETag: \"a b\"\r\n", e), -1);
	assert_int_equal(etag("ETagX: y\r\n", e), 0); /* another header */
	snprintf(line, sizeof(line), "ETag: %0*d\r\n", S3_MP_ETAG_MAX, 0);
	assert_int_equal(etag(line, e), 1);
	snprintf(line, sizeof(line), "ETag: %0*d\r\n", S3_MP_ETAG_MAX + 1, 0);
	assert_int_equal(etag(line, e), -1);
}

static void test_complete_xml(void **state)
{
	char etags[3][S3_MP_ETAG_MAX + 1] = {"\"aa\"", "b&<>'", "c"};
	const char *want =
		"<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		"<Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag></Part>"
		"<Part><PartNumber>2</PartNumber><ETag>b&amp;&lt;&gt;&apos;</ETag></Part>"
		"<Part><PartNumber>3</PartNumber><ETag>c</ETag></Part>"
		"</CompleteMultipartUpload>";
	char out[1024];
	size_t n;

	(void)state;
	n = blob_s3_mp_complete_xml((const char(*)[S3_MP_ETAG_MAX + 1]) etags, 3, NULL, 0);
	assert_int_equal(n, strlen(want));
	assert_int_equal(
		blob_s3_mp_complete_xml((const char(*)[S3_MP_ETAG_MAX + 1]) etags, 3, out, n + 1),
		n);
	assert_string_equal(out, want);
	/* One byte short: nothing half-written is left looking complete. */
	memset(out, 'z', sizeof(out));
	assert_int_equal(
		blob_s3_mp_complete_xml((const char(*)[S3_MP_ETAG_MAX + 1]) etags, 3, out, n), n);
	assert_string_equal(out, "");
	assert_int_equal(out[n], 'z');
}

static int complete_ok(const char *xml, char *code, size_t cap)
{
	return blob_s3_mp_complete_ok(xml, strlen(xml), code, cap);
}

static void test_complete_verdict(void **state)
{
	char code[16];

	(void)state;
	assert_int_equal(
		complete_ok("<?xml version=\"1.0\"?>\n<CompleteMultipartUploadResult><ETag>"
			    "x</ETag></CompleteMultipartUploadResult>",
			    code, sizeof(code)),
		0);
	/* 200 with an error after keep-alive blanks. */
	assert_int_equal(complete_ok("<?xml version=\"1.0\"?>\n      \n<Error><Code>InternalError"
				     "</Code><Message>retry</Message></Error>",
				     code, sizeof(code)),
			 -1);
	assert_string_equal(code, "InternalError");
	assert_int_equal(complete_ok("", code, sizeof(code)), -1);
	assert_string_equal(code, "");
	assert_int_equal(complete_ok("<html>proxy</html>", code, sizeof(code)), -1);
	/* A hostile code is cut to the buffer and its control bytes masked. */
	assert_int_equal(complete_ok("<Error><Code>ABCDEFGHIJKLMNOPQRSTUVWXYZ</Code></Error>", code,
				     sizeof(code)),
			 -1);
	assert_string_equal(code, "ABCDEFGHIJKLMNO");
	assert_int_equal(complete_ok("<Error><Code>a\nb</Code></Error>", code, sizeof(code)), -1);
	assert_string_equal(code, "a?b");
}

static int64_t s3_time(const char *s)
{
	return blob_s3_time(s, strlen(s));
}

static void test_time(void **state)
{
	(void)state;
	assert_int_equal(s3_time("1970-01-01T00:00:00Z"), 0);
	assert_int_equal(s3_time("2026-11-22T05:00:00.000Z"), 1795323600);
	assert_int_equal(s3_time("2024-02-29T23:59:59.5Z"), 1709251199);
	assert_int_equal(s3_time("2026-11-22T05:00:00"), -1);	    /* no zone */
	assert_int_equal(s3_time("2026-11-22T05:00:00+01:00"), -1); /* not UTC */
	assert_int_equal(s3_time("2026-11-22T05:00:00.Z"), -1);
	assert_int_equal(s3_time("2026-11-22T05:00:00.000Zx"), -1);
	assert_int_equal(s3_time("2026-02-30T05:00:00Z"), -1); /* no such day */
	assert_int_equal(s3_time("2025-02-29T05:00:00Z"), -1);
	assert_int_equal(s3_time("2026-11-22T24:00:00Z"), -1);
	assert_int_equal(s3_time("2026-11-22T23:59:60Z"), -1);
	assert_int_equal(s3_time("1969-12-31T23:59:59Z"), -1);
	assert_int_equal(s3_time("2026-1-22T05:00:00.000Z"), -1);
	assert_int_equal(s3_time("+026-11-22T05:00:00Z"), -1);
	assert_int_equal(s3_time(""), -1);
	/* Not NUL-terminated: only len bytes count. */
	assert_int_equal(blob_s3_time("1970-01-01T00:00:01Zjunk", 20), 1);
}

struct seen {
	int n;
	char keys[4][S3_MP_KEY_MAX + 1];
	int64_t initiated[4];
	int stop_at; /* return 7 at this upload (1-based), 0: never */
};

static int see(void *arg, const struct s3_mp_upload *u)
{
	struct seen *s = arg;

	if (s->n < 4) {
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", u->key);
		s->initiated[s->n] = u->initiated;
	}
	s->n++;
	return s->n == s->stop_at ? 7 : 0;
}

static int uploads(const char *xml, struct seen *s, int *truncated, char *key, char *id)
{
	memset(s->keys, 0, sizeof(s->keys));
	s->n = 0;
	return blob_s3_mp_parse_uploads(xml, strlen(xml), see, s, truncated, key, id);
}

#define LIST_HEAD "<?xml version=\"1.0\"?>\n<ListMultipartUploadsResult><Bucket>b</Bucket>"

static void test_uploads(void **state)
{
	char key[S3_MP_KEY_MAX + 1], id[S3_MP_UPLOAD_ID_MAX + 1];
	struct seen s = {0};
	int truncated;

	(void)state;
	/* Two uploads, one with an escaped key, the second without <Initiated>; a next page. */
	assert_int_equal(uploads(LIST_HEAD
				 "<Upload><Key>t/a&amp;b</Key><UploadId>id1</UploadId>"
				 "<Initiator><ID>x</ID></Initiator>"
				 "<Initiated>2026-11-22T05:00:00.000Z</Initiated></Upload>"
				 "<Upload><Key>t/c</Key><UploadId>id2</UploadId></Upload>"
				 "<NextKeyMarker>t/c</NextKeyMarker><NextUploadIdMarker>id2"
				 "</NextUploadIdMarker><IsTruncated>true</IsTruncated>"
				 "</ListMultipartUploadsResult>",
				 &s, &truncated, key, id),
			 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.keys[0], "t/a&b");
	assert_int_equal(s.initiated[0], 1795323600);
	assert_string_equal(s.keys[1], "t/c");
	assert_int_equal(s.initiated[1], -1);
	assert_int_equal(truncated, 1);
	assert_string_equal(key, "t/c");
	assert_string_equal(id, "id2");
	/* The last page, and an empty one. */
	assert_int_equal(uploads(LIST_HEAD "<IsTruncated>false</IsTruncated>"
					   "</ListMultipartUploadsResult>",
				 &s, &truncated, key, id),
			 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(truncated, 0);
	assert_string_equal(key, "");
	/* A bad date is no date: never aborted for its age. */
	assert_int_equal(uploads(LIST_HEAD
				 "<Upload><Key>k</Key><UploadId>i</UploadId><Initiated>"
				 "yesterday</Initiated></Upload></ListMultipartUploadsResult>",
				 &s, &truncated, key, id),
			 0);
	assert_int_equal(s.initiated[0], -1);
	/* Truncated without a marker would ask for the same page forever. */
	assert_int_equal(uploads(LIST_HEAD "<IsTruncated>true</IsTruncated>"
					   "</ListMultipartUploadsResult>",
				 &s, &truncated, key, id),
			 -1);
	/* Not a listing; an upload without its id, with a control byte in it, unterminated. */
	assert_int_equal(uploads("<ListBucketResult></ListBucketResult>", &s, &truncated, key, id),
			 -1);
	assert_int_equal(
		uploads(LIST_HEAD "<Upload><Key>k</Key></Upload>", &s, &truncated, key, id), -1);
	assert_int_equal(uploads(LIST_HEAD "<Upload><Key>k</Key><UploadId>a\tb</UploadId>"
					   "</Upload>",
				 &s, &truncated, key, id),
			 -1);
	assert_int_equal(uploads(LIST_HEAD "<Upload><Key>k</Key><UploadId>i</UploadId>", &s,
				 &truncated, key, id),
			 -1);
	assert_int_equal(s.n, 0);
	/* The callback's verdict stops the walk and is returned. */
	s.stop_at = 1;
	assert_int_equal(uploads(LIST_HEAD "<Upload><Key>k</Key><UploadId>i</UploadId></Upload>"
					   "<Upload><Key>l</Key><UploadId>j</UploadId></Upload>"
					   "</ListMultipartUploadsResult>",
				 &s, &truncated, key, id),
			 7);
	assert_int_equal(s.n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_part_size_valid),
		cmocka_unit_test(test_plan_boundaries),
		cmocka_unit_test(test_plan_ten_thousand_parts),
		cmocka_unit_test(test_upload_id),
		cmocka_unit_test(test_etag_header),
		cmocka_unit_test(test_complete_xml),
		cmocka_unit_test(test_complete_verdict),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_uploads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
