/* The metadata record's encoding (obj_crypto.h). */
#include <string.h>

#include "client/blobstore.h"
#include "client/obj_crypto.h"
#include "common/bytes.h"
#include "teems/err.h"

size_t obj_meta_encode(const struct obj_meta *meta, uint8_t out[OBJ_META_MAX_LEN])
{
	size_t name_len = strnlen(meta->store_name, sizeof(meta->store_name));

	if (name_len > OBJ_NAME_MAX)
		return 0;
	out[0] = OBJ_META_FORMAT;
	out[1] = (uint8_t)name_len;
	put_le16(out + 2, 0);
	put_le32(out + 4, meta->chunk_size);
	put_le64(out + 8, meta->version);
	put_le64(out + 16, meta->size);
	put_le64(out + 24, meta->blob_size);
	memcpy(out + 32, meta->data_key, TEE_KEY_LEN);
	memcpy(out + 64, meta->object_key, TEE_KEY_LEN);
	memcpy(out + 96, meta->pt_sha256, TEE_SHA256_LEN);
	memcpy(out + 128, meta->ct_sha256, TEE_SHA256_LEN);
	memcpy(out + OBJ_META_FIXED_LEN, meta->store_name, name_len);
	return OBJ_META_FIXED_LEN + name_len;
}

int obj_meta_decode(const uint8_t *buf, size_t len, struct obj_meta *meta, char *errbuf)
{
	size_t name_len;

	memset(meta, 0, sizeof(*meta));
	if (len < OBJ_META_FIXED_LEN)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: %zu bytes, too short",
				  len);
	if (buf[0] != OBJ_META_FORMAT)
		return teems_errf(errbuf, TEEMS_EVERSION, "object record: format %u", buf[0]);
	name_len = buf[1];
	if (get_le16(buf + 2) != 0)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: unknown flags");
	if (name_len > OBJ_NAME_MAX || len != OBJ_META_FIXED_LEN + name_len)
		return teems_errf(errbuf, TEEMS_ECORRUPT, "object record: bad length %zu", len);
	meta->chunk_size = get_le32(buf + 4);
	meta->version = get_le64(buf + 8);
	meta->size = get_le64(buf + 16);
	meta->blob_size = get_le64(buf + 24);
	memcpy(meta->data_key, buf + 32, TEE_KEY_LEN);
	memcpy(meta->object_key, buf + 64, TEE_KEY_LEN);
	memcpy(meta->pt_sha256, buf + 96, TEE_SHA256_LEN);
	memcpy(meta->ct_sha256, buf + 128, TEE_SHA256_LEN);
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
