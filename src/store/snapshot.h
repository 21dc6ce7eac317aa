/* Sealed snapshots (DESIGN.md section 7).
 *
 * A snapshot is one file, replaced atomically: written to STORE_SNAPSHOT_TMP, fsynced, renamed
 * over STORE_SNAPSHOT_NAME, then the directory is fsynced. It is sealed under its own key,
 * derived from the root key and a random 16-byte id in its header, so every snapshot has a
 * fresh key and the fixed nonce is never reused. Its associated data binds the replica id and
 * the WAL position (index and chain value) it covers: store_wal_open() with that position as
 * its anchor accepts only a WAL that continues this very history, so a snapshot and a WAL from
 * before and after a rollback cannot be spliced into a state that never existed.
 *
 * ON-DISK FORMAT (version 1; also in docs/STORAGE.md). Integers are little-endian.
 *   0  magic "TEEMSSNP"        8
 *   8  version (1)             u32
 *  12  header length (88)      u32
 *  16  replica id              u64
 *  24  snapshot id             16   random; the key's HKDF input
 *  40  covered segment         u64  \
 *  48  covered offset          u64   | the store_wal_pos the snapshot covers
 *  56  covered index           u64   |
 *  64  covered chain value     16   /
 *  80  payload length n        u64  (n <= STORE_SNAPSHOT_MAX)
 *  88  ciphertext              n
 * 88+n tag                     16   AES-256-GCM, AD = bytes 0..87
 * key = HKDF-SHA256(ikm = root key, salt = none, info = "teems snapshot v1" || snapshot id);
 * nonce = 12 zero bytes (each key seals exactly one snapshot).
 *
 * Thread safety: the functions share no state; two writers of one directory must be
 * serialized by the caller. */
#ifndef TEEMS_STORE_SNAPSHOT_H
#define TEEMS_STORE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "vfs.h"
#include "wal.h"

#define STORE_SNAPSHOT_NAME "snapshot"
#define STORE_SNAPSHOT_TMP "snapshot.tmp"
#define STORE_SNAPSHOT_HEADER_LEN 88
#define STORE_SNAPSHOT_MAX (1ull << 30) /* largest payload, bytes */

/* Seals payload[0..len) with the WAL position it covers and installs it as dir's snapshot,
 * durably (the rename and the directory are synced before it returns). payload is only read.
 * On failure the previous snapshot, if any, is still in place, except after a failed directory
 * sync, when the new one may already be (and may or may not survive a crash).
 * Errors: TEEMS_EINVAL (len > STORE_SNAPSHOT_MAX, bad arguments), TEEMS_ENOMEM, TEEMS_EIO,
 * TEEMS_ENOTFOUND (no such directory), TEEMS_ECRYPTO. */
int store_snapshot_write(struct store_vfs *vfs, const char *dir, uint64_t replica_id,
			 const uint8_t root_key[STORE_WAL_ROOT_KEY_LEN],
			 const struct store_wal_pos *covers, const void *payload, size_t len,
			 char *errbuf);

/* Loads and authenticates dir's snapshot. On success *payload (at least 1 byte allocated, even
 * for len 0) belongs to the caller, who frees it with teems_free() (after tee_wipe() if it
 * matters); *covers is the WAL position to pass to store_wal_open() as the anchor.
 * Errors: TEEMS_ENOTFOUND (no snapshot), TEEMS_ECORRUPT (malformed: magic, lengths, size),
 * TEEMS_EVERSION, TEEMS_EAUTH (another replica's, another key's, or tampered with),
 * TEEMS_ENOMEM, TEEMS_EIO, TEEMS_ECRYPTO. Nothing is returned on error. */
int store_snapshot_load(struct store_vfs *vfs, const char *dir, uint64_t replica_id,
			const uint8_t root_key[STORE_WAL_ROOT_KEY_LEN], void **payload, size_t *len,
			struct store_wal_pos *covers, char *errbuf);

#endif
