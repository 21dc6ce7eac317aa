/* Sealed snapshots: format and guarantees in snapshot.h (DESIGN.md section 7). */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "snapshot.h"
#include "tee/crypto.h"
#include "teems/err.h"

#define SNAP_VERSION 1
#define SNAP_PATH_MAX 4096
#define SNAP_ID_LEN 16

static const uint8_t snap_magic[8] = {'T', 'E', 'E', 'M', 'S', 'S', 'N', 'P'};
static const char snap_label[] = "teems snapshot v1";

static int snap_key(const uint8_t root[STORE_WAL_ROOT_KEY_LEN], const uint8_t id[SNAP_ID_LEN],
		    struct tee_aead *aead)
{
	uint8_t info[sizeof(snap_label) - 1 + SNAP_ID_LEN], key[TEE_KEY_LEN];
	int rv;

	memcpy(info, snap_label, sizeof(snap_label) - 1);
	memcpy(info + sizeof(snap_label) - 1, id, SNAP_ID_LEN);
	rv = tee_hkdf(root, STORE_WAL_ROOT_KEY_LEN, NULL, 0, info, sizeof(info), key, sizeof(key));
	if (rv == TEEMS_OK)
		rv = tee_aead_init(aead, key);
	tee_wipe(key, sizeof(key));
	return rv;
}

static int snap_paths(const char *dir, char *path, char *tmp)
{
	int a = snprintf(path, SNAP_PATH_MAX, "%s/%s", dir, STORE_SNAPSHOT_NAME);
	int b = snprintf(tmp, SNAP_PATH_MAX, "%s/%s", dir, STORE_SNAPSHOT_TMP);

	return a > 0 && a < SNAP_PATH_MAX && b > 0 && b < SNAP_PATH_MAX ? TEEMS_OK : TEEMS_EINVAL;
}

int store_snapshot_write(struct store_vfs *vfs, const char *dir, uint64_t replica_id,
			 const uint8_t root_key[STORE_WAL_ROOT_KEY_LEN],
			 const struct store_wal_pos *covers, const void *payload, size_t len,
			 char *errbuf)
{
	static const uint8_t nonce[TEE_NONCE_LEN] = {0};
	char path[SNAP_PATH_MAX], tmp[SNAP_PATH_MAX];
	struct tee_aead aead = {0};
	struct store_file *f = NULL;
	uint8_t id[SNAP_ID_LEN];
	size_t total;
	uint8_t *buf;
	int rv;

	if (vfs == NULL || dir == NULL || root_key == NULL || covers == NULL ||
	    (payload == NULL && len > 0) || len > STORE_SNAPSHOT_MAX)
		return teems_errf(errbuf, TEEMS_EINVAL, "snapshot: bad arguments");
	if (snap_paths(dir, path, tmp) != TEEMS_OK)
		return teems_errf(errbuf, TEEMS_EINVAL, "snapshot: directory name too long");
	rv = tee_random(id, sizeof(id));
	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "snapshot: no randomness");
	total = STORE_SNAPSHOT_HEADER_LEN + len + TEE_TAG_LEN;
	buf = teems_malloc(total);
	if (buf == NULL)
		return TEEMS_ENOMEM;
	memcpy(buf, snap_magic, 8);
	put_le32(buf + 8, SNAP_VERSION);
	put_le32(buf + 12, STORE_SNAPSHOT_HEADER_LEN);
	put_le64(buf + 16, replica_id);
	memcpy(buf + 24, id, SNAP_ID_LEN);
	put_le64(buf + 40, covers->segment);
	put_le64(buf + 48, covers->offset);
	put_le64(buf + 56, covers->index);
	memcpy(buf + 64, covers->chain, STORE_WAL_CHAIN_LEN);
	put_le64(buf + 80, (uint64_t)len);
	rv = snap_key(root_key, id, &aead);
	if (rv == TEEMS_OK)
		rv = tee_aead_seal(&aead, nonce, buf, STORE_SNAPSHOT_HEADER_LEN, payload, len,
				   buf + STORE_SNAPSHOT_HEADER_LEN,
				   buf + STORE_SNAPSHOT_HEADER_LEN + len);
	if (aead.ctx != NULL)
		tee_aead_free(&aead);
	if (rv != TEEMS_OK) {
		rv = teems_errf(errbuf, rv, "snapshot: sealing failed: %s", teems_strerror(rv));
		goto out;
	}
	/* Temporary file, fsync, rename, fsync the directory: a crash at any point leaves either
	 * the old snapshot or the new one, never a mix. */
	rv = store_vfs_open(vfs, tmp, STORE_OPEN_WRITE | STORE_OPEN_CREATE | STORE_OPEN_TRUNC, &f);
	if (rv == TEEMS_OK)
		rv = store_file_write(f, buf, total, 0);
	if (rv == TEEMS_OK)
		rv = store_file_sync(f);
	store_file_close(f);
	if (rv == TEEMS_OK)
		rv = store_vfs_rename(vfs, tmp, path);
	else
		store_vfs_unlink(vfs, tmp); /* best effort: a leftover is overwritten next time */
	if (rv == TEEMS_OK)
		rv = store_vfs_sync_dir(vfs, dir);
	if (rv != TEEMS_OK)
		rv = teems_errf(errbuf, rv, "snapshot: cannot install %s: %s", path,
				teems_strerror(rv));
out:
	teems_free(buf);
	return rv;
}

int store_snapshot_load(struct store_vfs *vfs, const char *dir, uint64_t replica_id,
			const uint8_t root_key[STORE_WAL_ROOT_KEY_LEN], void **payload, size_t *len,
			struct store_wal_pos *covers, char *errbuf)
{
	static const uint8_t nonce[TEE_NONCE_LEN] = {0};
	uint8_t hdr[STORE_SNAPSHOT_HEADER_LEN];
	char path[SNAP_PATH_MAX], tmp[SNAP_PATH_MAX];
	struct tee_aead aead = {0};
	struct store_file *f = NULL;
	uint8_t *ct = NULL, *pt = NULL;
	uint64_t size, n = 0;
	size_t got;
	int rv;

	if (vfs == NULL || dir == NULL || root_key == NULL || payload == NULL || len == NULL ||
	    covers == NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "snapshot: bad arguments");
	if (snap_paths(dir, path, tmp) != TEEMS_OK)
		return teems_errf(errbuf, TEEMS_EINVAL, "snapshot: directory name too long");
	rv = store_vfs_open(vfs, path, 0, &f);
	if (rv == TEEMS_ENOTFOUND)
		return teems_errf(errbuf, rv, "snapshot: none in %s", dir);
	if (rv != TEEMS_OK)
		goto io;
	rv = store_file_size(f, &size);
	if (rv != TEEMS_OK)
		goto io;
	if (size < STORE_SNAPSHOT_HEADER_LEN + TEE_TAG_LEN) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT, "snapshot: %s is too short", path);
		goto out;
	}
	rv = store_file_read(f, hdr, sizeof(hdr), 0, &got);
	if (rv != TEEMS_OK)
		goto io;
	if (got != sizeof(hdr) || memcmp(hdr, snap_magic, 8) != 0 ||
	    get_le32(hdr + 12) != STORE_SNAPSHOT_HEADER_LEN) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT, "snapshot: %s is not a snapshot", path);
		goto out;
	}
	if (get_le32(hdr + 8) != SNAP_VERSION) {
		rv = teems_errf(errbuf, TEEMS_EVERSION, "snapshot: %s has version %u", path,
				(unsigned)get_le32(hdr + 8));
		goto out;
	}
	/* Validate the length before using it: bounded and exactly what the file holds. */
	n = get_le64(hdr + 80);
	if (n > STORE_SNAPSHOT_MAX || size != STORE_SNAPSHOT_HEADER_LEN + n + TEE_TAG_LEN) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT, "snapshot: %s has a bad length", path);
		goto out;
	}
	if (get_le64(hdr + 16) != replica_id) {
		rv = teems_errf(errbuf, TEEMS_EAUTH, "snapshot: %s belongs to another replica",
				path);
		goto out;
	}
	ct = teems_malloc((size_t)n + TEE_TAG_LEN);
	pt = teems_malloc(n > 0 ? (size_t)n : 1);
	if (ct == NULL || pt == NULL) {
		rv = TEEMS_ENOMEM;
		goto out;
	}
	rv = store_file_read(f, ct, (size_t)n + TEE_TAG_LEN, STORE_SNAPSHOT_HEADER_LEN, &got);
	if (rv != TEEMS_OK)
		goto io;
	if (got != n + TEE_TAG_LEN) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT, "snapshot: %s is shorter than its size",
				path);
		goto out;
	}
	rv = snap_key(root_key, hdr + 24, &aead);
	if (rv == TEEMS_OK)
		rv = tee_aead_open(&aead, nonce, hdr, sizeof(hdr), ct, (size_t)n, ct + n, pt);
	if (aead.ctx != NULL)
		tee_aead_free(&aead);
	if (rv == TEEMS_EAUTH) {
		rv = teems_errf(errbuf, rv,
				"snapshot: %s does not authenticate (tampered, or another key)",
				path);
		goto out;
	}
	if (rv != TEEMS_OK)
		goto out;
	covers->segment = get_le64(hdr + 40);
	covers->offset = get_le64(hdr + 48);
	covers->index = get_le64(hdr + 56);
	memcpy(covers->chain, hdr + 64, STORE_WAL_CHAIN_LEN);
	*payload = pt;
	*len = (size_t)n;
	pt = NULL;
	goto out;
io:
	rv = teems_errf(errbuf, rv, "snapshot: cannot read %s: %s", path, teems_strerror(rv));
out:
	store_file_close(f);
	teems_free(ct);
	if (pt != NULL) {
		tee_wipe(pt, n > 0 ? (size_t)n : 1);
		teems_free(pt);
	}
	return rv;
}
