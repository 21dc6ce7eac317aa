/* The pure half of the s3 store's multipart upload (blob_s3.c does the I/O): how a blob is cut
 * into parts, the UploadId out of a CreateMultipartUpload answer, the ETag of an UploadPart
 * answer, and the <CompleteMultipartUpload> body; and the two XML helpers every answer of the
 * s3 store is read with (listings too). Separate so that unit tests and fuzzers can reach them
 * without a server.
 *
 * Everything parsed here comes from the store, which is untrusted (DESIGN.md section 2): lengths
 * are bounded, characters are checked, and whatever goes back into a URL or an XML body is
 * escaped by the caller (UploadId: aws_encode) or here (ETag: XML entities). */
#ifndef TEEMS_CLIENT_BLOB_S3_MULTIPART_H
#define TEEMS_CLIENT_BLOB_S3_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

/* S3's limits (AWS "Amazon S3 multipart upload limits"): every part but the last is at least
 * 5 MiB, no part exceeds 5 GiB, at most 10,000 parts. */
#define S3_MP_MIN_PART (5ull << 20)
#define S3_MP_MAX_PART (5ull << 30)
#define S3_MP_MAX_PARTS 10000u
#define S3_MP_DEFAULT_PART (64ull << 20)

/* Bounds on what the server may hand us. AWS UploadIds are about 150 characters and ETags of
 * parts 34 ("\"" + 32 hex + "\""); the bounds leave room for other implementations. */
#define S3_MP_UPLOAD_ID_MAX 1024
#define S3_MP_ETAG_MAX 128

/* 1 if part_size may be configured (S3_MP_MIN_PART..S3_MP_MAX_PART), else 0. */
int blob_s3_mp_part_size_valid(uint64_t part_size);

/* Plans the upload of len bytes with the configured part size (valid per the function above).
 * Returns 0 with *nparts = 0 when len fits one part (the caller does a single PUT); otherwise
 * sets *nparts (2..S3_MP_MAX_PARTS) and *part_len, the length of every part but the last:
 * part_size, raised to a multiple of 1 MiB when len would otherwise need more than
 * S3_MP_MAX_PARTS parts. Returns -1 when even S3_MP_MAX_PART-byte parts cannot hold len. */
int blob_s3_mp_plan(uint64_t len, uint64_t part_size, uint64_t *part_len, uint32_t *nparts);

/* The length of part number `part` (1-based, 1..nparts) of a plan. */
uint64_t blob_s3_mp_part_bytes(uint64_t len, uint64_t part_len, uint32_t nparts, uint32_t part);

/* The first needle in [p, end), or NULL. S3's answers are searched, not parsed: only the few
 * tags we need are looked for, and everything between them is bounded by end. */
const char *blob_s3_xml_find(const char *p, const char *end, const char *needle);

/* Copies in (len bytes) into out (cap bytes, NUL-terminated) with the five predefined XML
 * entities replaced. Returns -1, out undefined, if it does not fit, holds a NUL or another
 * entity (numeric references never occur in the names and tokens we parse). */
int blob_s3_xml_unescape(const char *in, size_t len, char *out, size_t cap);

/* Copies the <UploadId> of an InitiateMultipartUploadResult (xml, len bytes, not necessarily
 * NUL-terminated), XML-unescaped, into out (S3_MP_UPLOAD_ID_MAX + 1 bytes). Accepts only 1 to
 * S3_MP_UPLOAD_ID_MAX printable ASCII characters other than space. Returns 0 or -1. */
int blob_s3_mp_parse_upload_id(const char *xml, size_t len, char out[S3_MP_UPLOAD_ID_MAX + 1]);

/* If line (len bytes, as curl hands a response header line, CRLF included) is an ETag header,
 * copies its value (quotes kept, surrounding blanks dropped) into out (S3_MP_ETAG_MAX + 1 bytes)
 * and returns 1; 0 if it is another header (out untouched); -1 (out emptied) if it is an ETag
 * header with an empty, too long or non-printable value. */
int blob_s3_mp_etag_header(const char *line, size_t len, char out[S3_MP_ETAG_MAX + 1]);

/* Writes the <CompleteMultipartUpload> body for parts 1..n, whose ETags are etags[0..n-1]
 * (each at most S3_MP_ETAG_MAX printable characters; XML-escaped here), into out (cap bytes,
 * NUL-terminated) if it fits. Returns the body's length without the NUL, whether it fitted or
 * not, so a call with cap 0 sizes the buffer. */
size_t blob_s3_mp_complete_xml(const char (*etags)[S3_MP_ETAG_MAX + 1], uint32_t n, char *out,
			       size_t cap);

/* Classifies the body of a 200 answer to CompleteMultipartUpload: 0 if it is a
 * <CompleteMultipartUploadResult>; otherwise -1, with S3's <Code> (if any) copied into code
 * (code_cap bytes). S3 may answer 200 and still fail, with an <Error> body sent after the
 * whitespace that kept the connection alive. */
int blob_s3_mp_complete_ok(const char *xml, size_t len, char *code, size_t code_cap);

/* An S3 timestamp, "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (ISO 8601 in UTC, as ListMultipartUploads
 * and ListObjectsV2 write it), in seconds since the epoch; -1 if s (len bytes) is anything else,
 * a date before 1970 or one that does not exist (Feb 30, a leap second). The fraction is
 * dropped. */
int64_t blob_s3_time(const char *s, size_t len);

/* One <Upload> of a ListMultipartUploadsResult: an incomplete multipart upload. */
#define S3_MP_KEY_MAX 1024 /* S3's limit on key length, in bytes */
struct s3_mp_upload {
	char key[S3_MP_KEY_MAX + 1];		 /* XML-unescaped */
	char upload_id[S3_MP_UPLOAD_ID_MAX + 1]; /* as blob_s3_mp_parse_upload_id accepts */
	int64_t initiated; /* <Initiated> in seconds since the epoch; -1: absent or unreadable */
};

/* Calls fn with each <Upload> of a ListMultipartUploadsResult (xml, len bytes), sets *truncated
 * and copies <NextKeyMarker> and <NextUploadIdMarker> into next_key and next_id ("" when
 * absent). Returns 0; -1 if it is not such a result, an <Upload> lacks its key or id or holds a
 * bad one, or it is truncated without a key marker (asking again would loop); or fn's non-zero
 * return, which stops it. */
int blob_s3_mp_parse_uploads(const char *xml, size_t len,
			     int (*fn)(void *arg, const struct s3_mp_upload *u), void *arg,
			     int *truncated, char next_key[S3_MP_KEY_MAX + 1],
			     char next_id[S3_MP_UPLOAD_ID_MAX + 1]);

#endif
