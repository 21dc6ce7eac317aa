/* The metadata record's encoding (obj_crypto.h). */
#include <string.h>

#include "client/blobstore.h"
#include "client/obj_crypto.h"
#include "common/bytes.h"
#include "teems/err.h"

static int user_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '@' || c == '-';
}

int obj_user_valid(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++)
		if (!user_char(s[n]) || n >= OBJ_USER_MAX)
			return 0;
	return n > 0;
}

int obj_user_list_valid(const char *s)
{
	size_t n = 0, word = 0;

	if (strcmp(s, "*") == 0)
		return 1;
	for (; s[n] != '\0'; n++) {
		if (n >= OBJ_LIST_MAX)
			return 0;
		if (s[n] == ',') {
			if (word == 0)
				return 0;
			word = 0;
		} else if (!user_char(s[n]) || ++word > OBJ_USER_MAX) {
			return 0;
		}
	}
	return n == 0 || word > 0;
}

int obj_user_list_has(const char *list, const char *user)
{
	size_t ulen = strlen(user);

	if (strcmp(list, "*") == 0)
		return 1;
	if (ulen == 0)
		return 0;
	for (const char *p = list; *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == ulen && memcmp(p, user, n) == 0)
			return 1;
		p += n + (end != NULL);
	}
	return 0;
}

/* Appends a u8 length and the string. */
static size_t put_str8(uint8_t *out, const char *s)
{
	size_t n = strlen(s);

	out[0] = (uint8_t)n;
	memcpy(out + 1, s, n);
	return n + 1;
}

size_t obj_meta_encode(const struct obj_meta *meta, uint8_t out[OBJ_META_MAX_LEN])
{
	size_t name_len = strnlen(meta->store_name, sizeof(meta->store_name)), len;
	int policy = meta->owner[0] != '\0';

	if (name_len > OBJ_NAME_MAX || meta->format > OBJ_META_FORMAT ||
	    (meta->format != 0 && meta->format < OBJ_META_FORMAT_MIN))
		return 0;
	if (!policy && (meta->readers[0] != '\0' || meta->writers[0] != '\0'))
		return 0;
	if (policy && (strnlen(meta->owner, sizeof(meta->owner)) > OBJ_USER_MAX ||
		       strnlen(meta->readers, sizeof(meta->readers)) > OBJ_LIST_MAX ||
		       strnlen(meta->writers, sizeof(meta->writers)) > OBJ_LIST_MAX ||
		       !obj_user_valid(meta->owner) || !obj_user_list_valid(meta->readers) ||
		       !obj_user_list_valid(meta->writers)))
		return 0;
	out[0] = meta->format != 0 ? meta->format : OBJ_META_FORMAT;
	out[1] = (uint8_t)name_len;
	put_le16(out + 2, policy ? OBJ_META_F_POLICY : 0);
	put_le32(out + 4, meta->chunk_size);
	put_le64(out + 8, meta->version);
	put_le64(out + 16, meta->size);
	put_le64(out + 24, meta->blob_size);
	memcpy(out + 32, meta->data_key, TEE_KEY_LEN);
	memcpy(out + 64, meta->object_key, TEE_KEY_LEN);
	memcpy(out + 96, meta->pt_sha256, TEE_SHA256_LEN);
	memcpy(out + 128, meta->blob_digest, TEE_SHA256_LEN);
	memcpy(out + OBJ_META_FIXED_LEN, meta->store_name, name_len);
	len = OBJ_META_FIXED_LEN + name_len;
	if (policy) {
		len += put_str8(out + len, meta->owner);
		len += put_str8(out + len, meta->readers);
		len += put_str8(out + len, meta->writers);
	}
	return len;
}

/* Reads a u8 length and that many bytes into out (cap max characters + NUL); returns the bytes
 * consumed or 0 if they do not fit in buf[0..len). */
static size_t get_str8(const uint8_t *buf, size_t len, char *out, size_t max)
{
	size_t n;

	if (len < 1)
		return 0;
	n = buf[0];
	if (n > max || n + 1 > len)
		return 0;
	memcpy(out, buf + 1, n);
	out[n] = '\0';
	return n + 1;
}

static int decode_policy(const uint8_t *buf, size_t len, struct obj_meta *meta, char *errbuf)
{
	size_t a, b, c;

	a = get_str8(buf, len, meta->owner, OBJ_USER_MAX);
	b = a ? get_str8(buf + a, len - a, meta->readers, OBJ_LIST_MAX) : 0;
	c = b ? get_str8(buf + a + b, len - a - b, meta->writers, OBJ_LIST_MAX) : 0;
	if (c == 0 || a + b + c != len)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: bad policy length");
	/* obj_user_valid and obj_user_list_valid refuse embedded NULs as well (a NUL ends the
	 * string early, so the re-encoding would be shorter): compare lengths too. */
	if (strlen(meta->owner) + 1 != a || strlen(meta->readers) + 1 != b ||
	    strlen(meta->writers) + 1 != c || !obj_user_valid(meta->owner) ||
	    !obj_user_list_valid(meta->readers) || !obj_user_list_valid(meta->writers))
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: invalid policy");
	return TEEMS_OK;
}

int obj_meta_decode(const uint8_t *buf, size_t len, struct obj_meta *meta, char *errbuf)
{
	size_t name_len;
	unsigned flags;

	memset(meta, 0, sizeof(*meta));
	if (len < OBJ_META_FIXED_LEN)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: %zu bytes, too short",
				  len);
	if (buf[0] < OBJ_META_FORMAT_MIN || buf[0] > OBJ_META_FORMAT)
		return teems_errf(errbuf, TEEMS_EVERSION, "object record: format %u", buf[0]);
	meta->format = buf[0] == OBJ_META_FORMAT ? 0 : buf[0];
	name_len = buf[1];
	flags = get_le16(buf + 2);
	if ((flags & ~OBJ_META_F_POLICY) != 0)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: unknown flags");
	if (name_len > OBJ_NAME_MAX || len < OBJ_META_FIXED_LEN + name_len ||
	    (!(flags & OBJ_META_F_POLICY) && len != OBJ_META_FIXED_LEN + name_len))
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: bad length %zu", len);
	if ((flags & OBJ_META_F_POLICY) &&
	    decode_policy(buf + OBJ_META_FIXED_LEN + name_len, len - OBJ_META_FIXED_LEN - name_len,
			  meta, errbuf) != TEEMS_OK)
		return TEEMS_ECORRUPT;
	meta->chunk_size = get_le32(buf + 4);
	meta->version = get_le64(buf + 8);
	meta->size = get_le64(buf + 16);
	meta->blob_size = get_le64(buf + 24);
	memcpy(meta->data_key, buf + 32, TEE_KEY_LEN);
	memcpy(meta->object_key, buf + 64, TEE_KEY_LEN);
	memcpy(meta->pt_sha256, buf + 96, TEE_SHA256_LEN);
	memcpy(meta->blob_digest, buf + 128, TEE_SHA256_LEN);
	memcpy(meta->store_name, buf + OBJ_META_FIXED_LEN, name_len);
	meta->store_name[name_len] = '\0';
	if (obj_blob_size(meta->size, meta->chunk_size) == 0 ||
	    obj_blob_size(meta->size, meta->chunk_size) != meta->blob_size)
		return teems_errf(errbuf, TEEMS_ECORRUPT,
				  "object record: sizes are inconsistent (size %llu, chunk %u, "
				  "blob %llu)",
				  (unsigned long long)meta->size, meta->chunk_size,
				  (unsigned long long)meta->blob_size);
	if (name_len > 0 &&
	    (strlen(meta->store_name) != name_len || !blob_name_valid(meta->store_name)))
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: invalid store name");
	return TEEMS_OK;
}
