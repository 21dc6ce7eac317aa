/* Pure helpers of the s3 store's multipart upload; see blob_s3_multipart.h. No I/O, no
 * allocation. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

/* 1 to S3_MP_UPLOAD_ID_MAX printable ASCII characters other than space. */
static int upload_id_ok(const char *id)
{
	if (id[0] == '\0')
		return 0;
	for (const char *p = id; *p != '\0'; p++)
		if (!token_char((unsigned char)*p))
			return 0;
	return 1;
}

/* The text of the first <tag>...</tag> in [p, end), XML-unescaped into out (cap bytes).
 * Returns 0, 1 if there is none, -1 if it is unterminated or does not fit. */
static int element(const char *p, const char *end, const char *tag, char *out, size_t cap)
{
	char open[40], close[41];
	const char *a, *b;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	a = blob_s3_xml_find(p, end, open);
	if (a == NULL)
		return 1;
	a += strlen(open);
	b = blob_s3_xml_find(a, end, close);
	if (b == NULL || blob_s3_xml_unescape(a, (size_t)(b - a), out, cap) != 0)
		return -1;
	return 0;
}

int blob_s3_mp_parse_upload_id(const char *xml, size_t len, char out[S3_MP_UPLOAD_ID_MAX + 1])
{
	const char *end = xml + len;

	if (blob_s3_xml_find(xml, end, "<InitiateMultipartUploadResult") != NULL &&
	    element(xml, end, "UploadId", out, S3_MP_UPLOAD_ID_MAX + 1) == 0 && upload_id_ok(out))
		return 0;
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

/* n decimal digits at p, or -1. */
static int digits(const char *p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = 10 * v + (p[i] - '0');
	}
	return v;
}

int64_t blob_s3_time(const char *s, size_t len)
{
	struct tm tm = {0}, want;
	size_t i = 19;
	time_t t;

	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -1;
	tm.tm_year = digits(s, 4) - 1900;
	tm.tm_mon = digits(s + 5, 2) - 1;
	tm.tm_mday = digits(s + 8, 2);
	tm.tm_hour = digits(s + 11, 2);
	tm.tm_min = digits(s + 14, 2);
	tm.tm_sec = digits(s + 17, 2);
	if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_mday > 31 || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 ||
	    tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 59)
		return -1;
	if (s[i] == '.') {
		while (++i < len && s[i] >= '0' && s[i] <= '9')
			;
		if (i == 20) /* a '.' without digits */
			return -1;
	}
	if (i + 1 != len || s[i] != 'Z')
		return -1;
	want = tm;
	t = timegm(&tm);
	/* timegm normalises (Feb 31 is Mar 3, second 60 the next minute): not a date S3 writes */
	if (t < 0 || gmtime_r(&t, &tm) == NULL || tm.tm_year != want.tm_year ||
	    tm.tm_mon != want.tm_mon || tm.tm_mday != want.tm_mday || tm.tm_hour != want.tm_hour ||
	    tm.tm_min != want.tm_min || tm.tm_sec != want.tm_sec)
		return -1;
	return (int64_t)t;
}

int blob_s3_mp_parse_uploads(const char *xml, size_t len,
			     int (*fn)(void *arg, const struct s3_mp_upload *u), void *arg,
			     int *truncated, char next_key[S3_MP_KEY_MAX + 1],
			     char next_id[S3_MP_UPLOAD_ID_MAX + 1])
{
	const char *p, *end = xml + len, *a, *b;
	struct s3_mp_upload u;
	char when[64];
	int rc;

	*truncated = 0;
	next_key[0] = next_id[0] = '\0';
	p = blob_s3_xml_find(xml, end, "<ListMultipartUploadsResult");
	if (p == NULL)
		return -1;
	while ((a = blob_s3_xml_find(p, end, "<Upload>")) != NULL) {
		b = blob_s3_xml_find(a, end, "</Upload>");
		if (b == NULL || element(a, b, "Key", u.key, sizeof(u.key)) != 0 ||
		    element(a, b, "UploadId", u.upload_id, sizeof(u.upload_id)) != 0 ||
		    !upload_id_ok(u.upload_id))
			return -1;
		u.initiated = element(a, b, "Initiated", when, sizeof(when)) == 0
				      ? blob_s3_time(when, strlen(when))
				      : -1;
		if ((rc = fn(arg, &u)) != 0)
			return rc;
		p = b + strlen("</Upload>");
	}
	/* The markers come after the uploads in S3's answers but are looked for anywhere. */
	a = blob_s3_xml_find(xml, end, "<IsTruncated>");
	if (a != NULL) {
		a += strlen("<IsTruncated>");
		*truncated = (size_t)(end - a) >= 4 && memcmp(a, "true", 4) == 0;
	}
	if (element(xml, end, "NextKeyMarker", next_key, S3_MP_KEY_MAX + 1) < 0 ||
	    element(xml, end, "NextUploadIdMarker", next_id, S3_MP_UPLOAD_ID_MAX + 1) < 0 ||
	    (next_id[0] != '\0' && !upload_id_ok(next_id)))
		goto bad;
	if (*truncated && next_key[0] == '\0')
		goto bad;
	return 0;
bad:
	next_key[0] = next_id[0] = '\0';
	return -1;
}
