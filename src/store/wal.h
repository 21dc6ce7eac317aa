/* The sealed write-ahead log (DESIGN.md section 7).
 *
 * A WAL is a directory of segment files, each an authenticated header followed by AES-256-GCM
 * sealed records. Threat model (DESIGN.md section 2): the host can crash us at any point, and
 * can delete, truncate, replace, reorder or replay any file, or restart us on any earlier synced
 * version of the directory. It cannot forge or read sealed data. So the WAL guarantees:
 * - what store_wal_open() delivers is a prefix of one history that this replica really wrote
 *   (never a forged, reordered or spliced sequence); a record that fails to authenticate ends
 *   the valid prefix, which is then a rollback, not a crash;
 * - no (key, nonce) pair is ever used twice, even when the directory is rolled back and we
 *   write again: every open-for-write derives a fresh key from a fresh random incarnation id.
 *
 * ON-DISK FORMAT (version 1; also in docs/STORAGE.md). Integers are little-endian.
 *
 * File name: "wal-%016" PRIx64, the segment number (lowercase hex, from 1).
 *
 * Segment header, STORE_WAL_HEADER_LEN = 96 bytes:
 *   0  magic "TEEMSWAL"             8
 *   8  version (1)                  u32
 *  12  header length (96)           u32
 *  16  replica id                   u64
 *  24  segment number               u64   (must equal the file name's)
 *  32  first record index           u64   (records are numbered 1, 2, ... across segments)
 *  40  nonce counter of this header u64   (record j of the segment, from 0, uses counter+1+j)
 *  48  incarnation id               16    (random per open-for-write)
 *  64  previous chain value         16    (the chain value just before the first record)
 *  80  tag                          16    GCM tag of an empty plaintext, AD = bytes 0..79
 *
 * Record at byte offset `off` of segment `s`, with index `i`:
 *   0  payload length n             u32   (n <= STORE_WAL_RECORD_MAX)
 *   4  ciphertext                   n
 * 4+n  tag                          16    the record's chain value
 *   AD = replica id u64 | s u64 | i u64 | off u64 | n u32 | previous chain value 16
 *        (52 bytes); nonce counter = the header's counter + 1 + position in the segment
 *
 * Keys and nonces: key = HKDF-SHA256(ikm = root key, salt = none,
 * info = "teems wal v1" || incarnation id); nonce = counter u64 || 0 u32. One incarnation writes
 * one or more consecutive segments (rollover) with one running counter.
 *
 * The chain: the chain value after record i is its tag; before record 1 it is 16 zero bytes
 * (genesis). Each record's AD binds the previous chain value, so dropping, reordering or
 * splicing records breaks the chain; each header binds the chain value it continues from and
 * the first index (and its first record's AD starts from that value), so segments chain too.
 *
 * Reading: the valid prefix starts at the anchor (genesis, or the position a snapshot covers)
 * and follows, segment by segment, the lowest-numbered segment whose authentic header continues
 * the chain exactly; inside a segment it stops at end of file, at a torn (incomplete) record or
 * at the first record that fails to authenticate. Segment files that are not on that chain are
 * ignored (never deleted by open, so a wrong key cannot wipe a WAL). */
#ifndef TEEMS_STORE_WAL_H
#define TEEMS_STORE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfs.h"

#define STORE_WAL_HEADER_LEN 96
#define STORE_WAL_RECORD_OVERHEAD 20		/* length + tag */
#define STORE_WAL_RECORD_MAX (16u << 20)	/* largest payload, bytes */
#define STORE_WAL_SEGMENT_DEFAULT (64ull << 20) /* rollover threshold */
#define STORE_WAL_SEGMENT_MIN 4096ull
#define STORE_WAL_SEGMENT_MAX (1ull << 30)
#define STORE_WAL_CHAIN_LEN 16
#define STORE_WAL_INCARNATION_LEN 16
#define STORE_WAL_ROOT_KEY_LEN 32

/* A position in the WAL: just after record `index` (0: before the first record). */
struct store_wal_pos {
	uint64_t segment; /* segment file holding the position; 0 before any segment */
	uint64_t offset;  /* byte offset of the position in that segment */
	uint64_t index;	  /* index of the last record before the position */
	uint8_t chain[STORE_WAL_CHAIN_LEN]; /* chain value after that record */
};

/* Why the valid prefix ended. */
enum store_wal_stop {
	STORE_WAL_STOP_CLEAN,  /* end of the last segment file, at a record boundary */
	STORE_WAL_STOP_TORN,   /* an incomplete record at the end (a crash mid-write) */
	STORE_WAL_STOP_AUTH,   /* a record failed to authenticate or has an impossible length */
	STORE_WAL_STOP_SPLICE, /* clean end, but later segment files do not continue the chain */
	STORE_WAL_STOP_ANCHOR, /* no segment continues the anchor: nothing after it is valid */
};

/* What store_wal_open() found. */
struct store_wal_info {
	struct store_wal_pos end;  /* end of the valid prefix (the anchor when nothing follows) */
	uint64_t records;	   /* records delivered (those after the anchor) */
	uint64_t segments;	   /* segment files on the valid chain */
	uint64_t ignored_segments; /* segment files not on it */
	uint64_t tail_bytes;	   /* bytes after the valid prefix in its last segment */
	enum store_wal_stop stop;
};

/* Receives each record of the valid prefix in order. data is valid only during the call.
 * A non-zero return stops store_wal_open(), which returns that value. */
typedef int (*store_wal_record_fn)(void *arg, uint64_t index, const void *data, size_t len);

/* Test hook: called with every (key, nonce) pair the WAL seals under, before it is used. */
typedef void (*store_wal_nonce_fn)(void *arg, const uint8_t key[32], const uint8_t nonce[12]);

struct store_wal_opts {
	uint64_t replica_id;
	/* STORE_WAL_ROOT_KEY_LEN bytes, copied: the caller's sealing key, tee_seal_key("wal"). */
	const uint8_t *root_key;
	/* Where the valid prefix starts: the position covered by the loaded snapshot, NULL for
	 * genesis. Records up to anchor->index are checked against anchor->chain, not delivered. */
	const struct store_wal_pos *anchor;
	uint64_t segment_size;	       /* rollover threshold; 0: STORE_WAL_SEGMENT_DEFAULT */
	store_wal_record_fn on_record; /* may be NULL */
	void *arg;
	/* Tests only. */
	store_wal_nonce_fn nonce_hook;
	void *nonce_arg;
	/* Tests only: use these 16 bytes as the incarnation id instead of random ones. Reusing an
	 * id after a rollback reuses nonces; S16's negative control does exactly that. */
	const uint8_t *test_incarnation;
};

struct store_wal;

/* Opens the WAL in directory dir (which must exist), delivers the valid prefix to
 * opts->on_record and describes it in *info (may be NULL).
 *
 * With wal == NULL it only reads (nothing on disk changes). Otherwise it opens for writing:
 * it truncates the invalid tail of the prefix's last segment, syncs every segment of the
 * prefix (what we read from the page cache must be on disk before we build on it), and starts
 * a new segment, numbered above every segment file present, with a fresh incarnation id,
 * chained to the end of the valid prefix; *wal belongs to the caller until store_wal_close().
 * Corrupt, torn, reordered, spliced or foreign files are never an error: they end the prefix.
 *
 * Errors: TEEMS_EINVAL (bad options or dir), TEEMS_ENOTFOUND (no such directory),
 * TEEMS_ENOMEM, TEEMS_EIO (the VFS failed), TEEMS_ECRYPTO, or a non-zero on_record result. */
int store_wal_open(struct store_vfs *vfs, const char *dir, const struct store_wal_opts *opts,
		   struct store_wal **wal, struct store_wal_info *info, char *errbuf);

/* Seals one record into the pending group (memory only; no I/O) and sets *index (may be NULL)
 * to its index. The record is durable once a later store_wal_sync() returns. data is only read
 * during the call.
 * Errors: TEEMS_EINVAL (len > STORE_WAL_RECORD_MAX), TEEMS_ENOMEM (nothing changed),
 * TEEMS_EIO (the WAL failed earlier and must be reopened), TEEMS_ECRYPTO (the WAL fails). */
int store_wal_append(struct store_wal *wal, const void *data, size_t len, uint64_t *index);

/* Group commit in two halves, so that sealing the next group overlaps the I/O of this one
 * (the daemon appends and closes groups on its event loop and runs the I/O on a worker):
 *
 * store_wal_sync_prepare() closes the open group: every record appended so far will be made
 * durable by the next store_wal_sync_run(); records appended later go to the next group. Sets
 * *upto (may be NULL) to the index of the last record in it. No I/O, and no allocation in the
 * steady state. Errors: TEEMS_ENOMEM (nothing changed; the WAL stays usable), TEEMS_EIO (the
 * WAL failed earlier).
 *
 * store_wal_sync_run() writes the groups closed before the call (one write per segment they
 * touch) and makes them durable with one fdatasync (plus a directory sync after a rollover),
 * then sets *synced (may be NULL) to the durable position. A synced acknowledgement may be
 * sent for every record up to synced->index once it returns (DESIGN.md section 7).
 * Errors: TEEMS_EIO, TEEMS_ENOMEM: the WAL is then failed (every later append and sync returns
 * TEEMS_EIO), because after a failed write or fsync nobody knows what reached the disk
 * (PostgreSQL's fsyncgate); close it and reopen, which finds the durable prefix. */
int store_wal_sync_prepare(struct store_wal *wal, uint64_t *upto);
int store_wal_sync_run(struct store_wal *wal, struct store_wal_pos *synced, char *errbuf);

/* Both halves at once: makes every record appended so far durable. Errors: as above (an
 * ENOMEM from closing the group leaves the WAL usable). */
int store_wal_sync(struct store_wal *wal, struct store_wal_pos *synced, char *errbuf);

/* Deletes every segment whose records all have index <= before_index (never the segment being
 * written) and our own abandoned segments (authentic, off the chain) numbered below the first
 * one kept, then syncs the directory. Files that do not authenticate are never deleted. Call it
 * only once a snapshot covering before_index is durable: a later open must then be given that
 * snapshot's position as its anchor. Errors: TEEMS_EIO (some files may be gone already; the WAL
 * itself stays usable). */
int store_wal_compact(struct store_wal *wal, uint64_t before_index, char *errbuf);

/* The position after the last appended record and after the last synced one (either may be
 * NULL). */
void store_wal_position(struct store_wal *wal, struct store_wal_pos *appended,
			struct store_wal_pos *synced);

/* Sets *yes to whether the WAL in dir still starts at its first record (index 1), read from
 * genesis without changing anything. A replica whose snapshot cannot be used asks this before
 * it restores the WAL alone: once compacted, the WAL no longer holds what the snapshot stood
 * for. An empty or unreadable WAL does not. Errors: as store_wal_open's. */
int store_wal_starts_at_genesis(struct store_vfs *vfs, const char *dir, uint64_t replica_id,
				const uint8_t *root_key, bool *yes, char *errbuf);

/* Frees the WAL without syncing: records appended since the last sync may or may not survive.
 * wal may be NULL. */
void store_wal_close(struct store_wal *wal);

/* THREAD SAFETY. A store_wal has two sides, each guarded by its own mutex: appending
 * (store_wal_append, store_wal_sync_prepare: memory and crypto only) and I/O
 * (store_wal_sync_run, store_wal_compact). One thread may append and close groups while another
 * runs the I/O; the I/O side holds the append lock only for pointer swaps, never across a
 * write or an fsync. store_wal_sync() and store_wal_position() may be called from any thread.
 * Concurrent calls on one side are serialized. store_wal_open() and store_wal_close() need
 * exclusive access. Only the I/O side touches the VFS, from whichever thread runs it. */

#endif
