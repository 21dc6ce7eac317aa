/* memvfs: an in-memory store_vfs for tests and the simulator that models what a power loss and
 * a rollback do to files (DESIGN.md sections 2 and 7; SQLite's src/test6.c crash VFS).
 *
 * Model:
 * - each file (inode) has its current bytes, its synced bytes (as of its last store_file_sync)
 *   and the list of writes and truncations issued since (the unsynced ones);
 * - each directory has its current names and its durable names (as of its last sync_dir) and the
 *   list of creates, renames and unlinks issued since. A name becomes durable only when its
 *   directory is synced, as on a real file system;
 * - every successful sync (file or directory) makes a new *version* of the durable state,
 *   numbered 1, 2, ... (version 0 is the empty start). With history on, every version is kept
 *   (file bytes are shared, copy-on-write) and memvfs_rollback() restarts on any of them: that
 *   is the adversary's rollback (DESIGN.md section 2: "restart a replica on any earlier
 *   authentic sealed state").
 * - memvfs_power_loss() keeps the durable state and, per unsynced write, keeps it, drops it or
 *   garbles it, as the mode and the seeded generator decide; in MEMVFS_RANDOM each 512-byte
 *   sector of each write is decided separately (torn writes) and each directory keeps a random
 *   prefix of its unsynced operations (journaled metadata is ordered).
 * Simplifications: mkdir is durable at once, directories are never removed, and rename works
 * only within one directory (TEEMS_EINVAL otherwise; the store never renames across).
 *
 * Deterministic: given the seed and the same sequence of calls, the same result (splitmix64,
 * never rand()). Not thread-safe. After a power loss or a rollback every open handle is dead:
 * its operations return TEEMS_EIO and it must still be closed. */
#ifndef TEEMS_STORE_MEMVFS_H
#define TEEMS_STORE_MEMVFS_H

#include <stddef.h>
#include <stdint.h>

#include "vfs.h"

/* What a power loss does to each unsynced write. */
enum memvfs_crash_mode {
	MEMVFS_DROP,   /* lose them all: only synced bytes and synced names survive */
	MEMVFS_KEEP,   /* keep them all (the page cache made it to disk) */
	MEMVFS_GARBLE, /* every unsynced write lands as random bytes; unsynced names are lost */
	MEMVFS_RANDOM, /* per sector: keep, drop, zero or garble; a random prefix of name ops */
};

/* What a sync hook asks for. */
enum memvfs_hook_action {
	MEMVFS_HOOK_CONTINUE = 0, /* the sync happens normally */
	MEMVFS_HOOK_FAIL,	  /* the sync fails with TEEMS_EIO and has no effect */
	MEMVFS_HOOK_CRASH_BEFORE, /* power loss instead of the sync; it returns TEEMS_EIO */
	MEMVFS_HOOK_CRASH_AFTER,  /* the sync happens, then power loss; it returns TEEMS_EIO */
};

/* Called before every file or directory sync with its ordinal (1 for the first sync since
 * memvfs_new). Returns an enum memvfs_hook_action. */
typedef int (*memvfs_sync_hook)(void *arg, uint64_t nth);

/* A new, empty file system ("." exists). keep_history: keep every synced version for
 * memvfs_rollback() (costs memory; off for fuzzing). Returns NULL when out of memory.
 * Free with store_vfs_destroy(). */
struct store_vfs *memvfs_new(uint64_t seed, int keep_history);

/* Simulates a power loss and reboot now (see the model above). Afterwards every name and byte
 * is durable (it is what is on the disk), and the result is recorded as a new version.
 * Errors: TEEMS_ENOMEM (then nothing happened). */
int memvfs_power_loss(struct store_vfs *vfs, enum memvfs_crash_mode mode);

/* The newest version number (0 before the first sync). */
uint64_t memvfs_version(struct store_vfs *vfs);

/* Restarts on an earlier synced version: the files and names become exactly what was durable
 * then, with nothing unsynced. Errors: TEEMS_EINVAL (history off, or no such version),
 * TEEMS_ENOMEM (the state is then empty). */
int memvfs_rollback(struct store_vfs *vfs, uint64_t version);

/* How many syncs (file and directory) have been attempted so far. */
uint64_t memvfs_sync_count(struct store_vfs *vfs);

/* Installs (or, with hook NULL, removes) the sync hook. */
void memvfs_set_sync_hook(struct store_vfs *vfs, memvfs_sync_hook hook, void *arg);

/* Convenience hook: the sync with ordinal nth triggers `action` (a memvfs_hook_action);
 * a crash uses `mode`. nth 0 disarms it. Replaces any hook set with memvfs_set_sync_hook. */
void memvfs_crash_at_sync(struct store_vfs *vfs, uint64_t nth, int action,
			  enum memvfs_crash_mode mode);

/* Fails the nth write (0 = the next one) with TEEMS_EIO, once; UINT64_MAX disarms. */
void memvfs_fail_write(struct store_vfs *vfs, uint64_t nth);

/* Test setup: makes path's content exactly data[0..len) and durable (bytes and name), as if
 * written, synced and its directory synced; records a version. The directory must exist.
 * Errors: TEEMS_ENOTFOUND, TEEMS_ENOMEM. */
int memvfs_put(struct store_vfs *vfs, const char *path, const void *data, size_t len);

/* A copy of path's current content; *data belongs to the caller (teems_free), NULL when len 0.
 * Errors: TEEMS_ENOTFOUND, TEEMS_ENOMEM. */
int memvfs_get(struct store_vfs *vfs, const char *path, uint8_t **data, size_t *len);

#endif
