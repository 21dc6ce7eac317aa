/* Pure helpers of the s3 store's multipart upload; see blob_s3_multipart.h. No I/O, no
 * allocation. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "client/blob_s3_multipart.h"

#define MIB (1ull << 20)

int blob_s3_mp_part_size_valid(uint64_t part_size)
{
	return part_size >= S3_MP_MIN_PART && part_size <= S3_MP_MAX_PART;
}

/* ceil(a / b) without overflowing near UINT64_MAX. */
static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

int blob_s3_mp_plan(uint64_t len, uint64_t part_size, uint64_t *part_len, uint32_t *nparts)
{
	uint64_t p = part_size, n;

	*part_len = 0;
	*nparts = 0;
	if (!blob_s3_mp_part_size_valid(p))
		return -1;
	if (len <= p)
		return 0;
	n = div_up(len, p);
	if (n > S3_MP_MAX_PARTS) {
		/* Whole MiB keep the parts' offsets readable in traces; the raise stays within one
		 * MiB of the smallest part size that fits. */
		p = div_up(div_up(len, S3_MP_MAX_PARTS), MIB) * MIB;
		if (p > S3_MP_MAX_PART)
			return -1;
		n = div_up(len, p);
	}
	*part_len = p;
	*nparts = (uint32_t)n;
	return 0;
}

uint64_t blob_s3_mp_part_bytes(uint64_t len, uint64_t part_len, uint32_t nparts, uint32_t part)
{
	if (part == 0 || part > nparts)
		return 0;
	if (part < nparts)
		return part_len;
	return len - (uint64_t)(nparts - 1) * part_len;
}

/* The printable ASCII S3 uses in UploadIds and ETags; space excluded so that trimming is
 * unambiguous. */
static int token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f;
}

const char *blob_s3_xml_find(const char *p, const char *end, const char *needle)
{
	size_t n = strlen(needle);

	for (; p + n <= end; p++)
		if (memcmp(p, needle, n) == 0)
			return p;
	return NULL;
}

int blob_s3_xml_unescape(const char *in, size_t len, char *out, size_t cap)
{
	static const struct {
		const char *ent;
		char c;
	} ents[] = {
		{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
	size_t o = 0;

	for (size_t i = 0; i < len;) {
		char c = in[i];
		size_t adv = 1;

		if (c == '&') {
			size_t k;

			for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
				size_t el = strlen(ents[k].ent);

				if (len - i >= el && memcmp(in + i, ents[k].ent, el) == 0) {
					c = ents[k].c;
					adv = el;
					break;
				}
			}
			if (k == sizeof(ents) / sizeof(ents[0]))
				return -1; /* numeric references never occur in what we parse */
		}
		if (c == '\0' || o + 1 >= cap)
			return -1;
		out[o++] = c;
		i += adv;
	}
	out[o] = '\0';
	return 0;
}

int blob_s3_mp_parse_upload_id(const char *xml, size_t len, char out[S3_MP_UPLOAD_ID_MAX + 1])
{
	const char *end = xml + len, *a, *b;

	out[0] = '\0';
	if (blob_s3_xml_find(xml, end, "<InitiateMultipartUploadResult") == NULL)
		return -1;
	a = blob_s3_xml_find(xml, end, "<UploadId>");
	if (a == NULL)
		return -1;
	a += strlen("<UploadId>");
	b = blob_s3_xml_find(a, end, "</UploadId>");
	if (b == NULL ||
	    blob_s3_xml_unescape(a, (size_t)(b - a), out, S3_MP_UPLOAD_ID_MAX + 1) != 0)
		goto bad;
	for (const char *p = out; *p != '\0'; p++)
		if (!token_char((unsigned char)*p))
			goto bad;
	if (out[0] != '\0')
		return 0;
bad:
	out[0] = '\0';
	return -1;
}

int blob_s3_mp_etag_header(const char *line, size_t len, char out[S3_MP_ETAG_MAX + 1])
{
	const char *p = line + 5, *end = line + len;

	if (len < 5 || strncasecmp(line, "etag:", 5) != 0)
		return 0; /* out keeps an ETag seen in an earlier line */
	out[0] = '\0';
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == p || (size_t)(end - p) > S3_MP_ETAG_MAX)
		return -1;
	for (const char *q = p; q < end; q++)
		if (!token_char((unsigned char)*q))
			return -1;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return 1;
}

/* Appends s (n bytes) at *o if it fits in cap with room for a NUL; *o always advances, so the
 * final *o is the length the whole body needs. */
static void put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
	if (*o + n < cap)
		memcpy(out + *o, s, n);
	*o += n;
}

static void put_str(char *out, size_t cap, size_t *o, const char *s)
{
	put(out, cap, o, s, strlen(s));
}

size_t blob_s3_mp_complete_xml(const char (*etags)[S3_MP_ETAG_MAX + 1], uint32_t n, char *out,
			       size_t cap)
{
	size_t o = 0;

	put_str(out, cap, &o,
		"<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	for (uint32_t i = 0; i < n; i++) {
		char num[32];

		snprintf(num, sizeof(num), "%u", i + 1);
		put_str(out, cap, &o, "<Part><PartNumber>");
		put_str(out, cap, &o, num);
		put_str(out, cap, &o, "</PartNumber><ETag>");
		/* ETags are quoted ("\"9b2c...\""): the quotes are part of the value and go back
		 * as &quot;, as the AWS SDKs send them. */
		for (const char *e = etags[i]; *e; e++) {
			switch (*e) {
			case '&':
				put_str(out, cap, &o, "&amp;");
				break;
			case '<':
				put_str(out, cap, &o, "&lt;");
				break;
			case '>':
				put_str(out, cap, &o, "&gt;");
				break;
			case '"':
				put_str(out, cap, &o, "&quot;");
				break;
			case '\'':
				put_str(out, cap, &o, "&apos;");
				break;
			default:
				put(out, cap, &o, e, 1);
			}
		}
		put_str(out, cap, &o, "</ETag></Part>");
	}
	put_str(out, cap, &o, "</CompleteMultipartUpload>");
	if (o < cap)
		out[o] = '\0';
	else if (cap > 0)
		out[0] = '\0';
	return o;
}

int blob_s3_mp_complete_ok(const char *xml, size_t len, char *code, size_t code_cap)
{
	const char *end = xml + len, *a, *b;

	if (code_cap > 0)
		code[0] = '\0';
	if (blob_s3_xml_find(xml, end, "<Error>") == NULL &&
	    blob_s3_xml_find(xml, end, "<CompleteMultipartUploadResult") != NULL)
		return 0;
	a = blob_s3_xml_find(xml, end, "<Code>");
	if (a != NULL && code_cap > 0) {
		a += strlen("<Code>");
		b = blob_s3_xml_find(a, end, "</Code>");
		if (b != NULL) {
			size_t n = (size_t)(b - a);

			if (n >= code_cap)
				n = code_cap - 1;
			for (size_t i = 0; i < n; i++)
				code[i] = token_char((unsigned char)a[i]) ? a[i] : '?';
			code[n] = '\0';
		}
	}
	return -1;
}
