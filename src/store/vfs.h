/* The storage VFS: the one door through which the sealed WAL and snapshots touch files
 * (DESIGN.md section 7).
 *
 * Why an ops table: production uses the POSIX implementation (vfs_posix.c); tests and the
 * simulator use memvfs (memvfs.h), which keeps synced and unsynced bytes apart so it can
 * simulate a power loss or hand back any earlier synced version of the files (a rollback,
 * DESIGN.md section 2), like SQLite's crash-test VFS (src/test6.c).
 *
 * Semantics every implementation follows (and that the WAL relies on):
 * - paths are full paths ("dir/name"); a file's directory is everything before the last '/';
 * - store_file_write() writes all bytes or fails; store_file_read() returns fewer bytes than
 *   asked only at end of file;
 * - store_file_sync() makes the file's bytes and size durable, not its name: creating, renaming
 *   or unlinking a name becomes durable only at store_vfs_sync_dir() of its directory, as on a
 *   real file system;
 * - errors are teems_err codes: TEEMS_ENOTFOUND (no such file or directory), TEEMS_EEXIST
 *   (exclusive create of an existing name; mkdir of an existing directory), TEEMS_ENOMEM,
 *   TEEMS_EINVAL (bad flags or path), TEEMS_EIO (any other failure of the operating system or,
 *   in memvfs, an injected failure or a power loss).
 *
 * Thread safety: the POSIX implementation is as thread-safe as the system calls under it (any
 * handle may be used from any thread, one operation per handle at a time). memvfs is not
 * thread-safe at all; the WAL never uses it from two threads at once in tests. */
#ifndef TEEMS_STORE_VFS_H
#define TEEMS_STORE_VFS_H

#include <stddef.h>
#include <stdint.h>

struct store_vfs;

/* An open file. Implementations embed this as their first member. */
struct store_file {
	struct store_vfs *vfs;
};

/* store_vfs_open() flags. Files are always opened for reading. */
enum {
	STORE_OPEN_WRITE = 1 << 0,  /* also for writing */
	STORE_OPEN_CREATE = 1 << 1, /* create if missing (needs WRITE) */
	STORE_OPEN_EXCL = 1 << 2,   /* with CREATE: fail with TEEMS_EEXIST if the name exists */
	STORE_OPEN_TRUNC = 1 << 3,  /* truncate to zero length (needs WRITE) */
};

/* A directory listing: names (not paths), in no particular order, without "." and "..".
 * Owned by the caller; free with store_dirlist_free(). */
struct store_dirlist {
	char **names;
	size_t n;
};

/* The ops table. Callers use the store_vfs_* / store_file_* wrappers below. */
struct store_vfs {
	int (*open)(struct store_vfs *vfs, const char *path, int flags, struct store_file **out);
	int (*read)(struct store_file *f, void *buf, size_t len, uint64_t off, size_t *nread);
	int (*write)(struct store_file *f, const void *buf, size_t len, uint64_t off);
	int (*sync)(struct store_file *f);
	int (*size)(struct store_file *f, uint64_t *size);
	int (*truncate)(struct store_file *f, uint64_t size);
	void (*close)(struct store_file *f);
	int (*rename)(struct store_vfs *vfs, const char *from, const char *to);
	int (*unlink)(struct store_vfs *vfs, const char *path);
	int (*list)(struct store_vfs *vfs, const char *dir, struct store_dirlist *out);
	int (*sync_dir)(struct store_vfs *vfs, const char *dir);
	int (*mkdir)(struct store_vfs *vfs, const char *dir);
	void (*destroy)(struct store_vfs *vfs);
};

/* Opens path; *out belongs to the caller until store_file_close().
 * Errors: TEEMS_ENOTFOUND, TEEMS_EEXIST, TEEMS_EINVAL, TEEMS_ENOMEM, TEEMS_EIO. */
static inline int store_vfs_open(struct store_vfs *vfs, const char *path, int flags,
				 struct store_file **out)
{
	return vfs->open(vfs, path, flags, out);
}

/* Reads up to len bytes at off; *nread < len only at end of file. Errors: TEEMS_EIO. */
static inline int store_file_read(struct store_file *f, void *buf, size_t len, uint64_t off,
				  size_t *nread)
{
	return f->vfs->read(f, buf, len, off, nread);
}

/* Writes all len bytes at off (retrying short writes). Errors: TEEMS_EIO, TEEMS_ENOMEM. */
static inline int store_file_write(struct store_file *f, const void *buf, size_t len, uint64_t off)
{
	return f->vfs->write(f, buf, len, off);
}

/* Makes the file's contents and size durable (fdatasync). Errors: TEEMS_EIO. */
static inline int store_file_sync(struct store_file *f)
{
	return f->vfs->sync(f);
}

/* Errors: TEEMS_EIO. */
static inline int store_file_size(struct store_file *f, uint64_t *size)
{
	return f->vfs->size(f, size);
}

/* Sets the file's length (shrinks or zero-extends). Errors: TEEMS_EIO, TEEMS_ENOMEM. */
static inline int store_file_truncate(struct store_file *f, uint64_t size)
{
	return f->vfs->truncate(f, size);
}

/* Closes and frees the handle (never syncs). f may be NULL. */
static inline void store_file_close(struct store_file *f)
{
	if (f != NULL)
		f->vfs->close(f);
}

/* Atomically replaces `to` with `from` (same directory or not). Durable at sync_dir.
 * Errors: TEEMS_ENOTFOUND, TEEMS_ENOMEM, TEEMS_EIO. */
static inline int store_vfs_rename(struct store_vfs *vfs, const char *from, const char *to)
{
	return vfs->rename(vfs, from, to);
}

/* Errors: TEEMS_ENOTFOUND, TEEMS_ENOMEM, TEEMS_EIO. */
static inline int store_vfs_unlink(struct store_vfs *vfs, const char *path)
{
	return vfs->unlink(vfs, path);
}

/* Lists the names in dir. Errors: TEEMS_ENOTFOUND, TEEMS_ENOMEM, TEEMS_EIO. */
static inline int store_vfs_list(struct store_vfs *vfs, const char *dir, struct store_dirlist *out)
{
	return vfs->list(vfs, dir, out);
}

/* Makes every create, rename and unlink in dir durable. Errors: TEEMS_ENOTFOUND, TEEMS_EIO. */
static inline int store_vfs_sync_dir(struct store_vfs *vfs, const char *dir)
{
	return vfs->sync_dir(vfs, dir);
}

/* Creates one directory level. Errors: TEEMS_EEXIST, TEEMS_ENOTFOUND (no parent),
 * TEEMS_ENOMEM, TEEMS_EIO. */
static inline int store_vfs_mkdir(struct store_vfs *vfs, const char *dir)
{
	return vfs->mkdir(vfs, dir);
}

/* Frees the VFS. Every file must be closed first. vfs may be NULL. */
static inline void store_vfs_destroy(struct store_vfs *vfs)
{
	if (vfs != NULL)
		vfs->destroy(vfs);
}

/* Frees a listing filled by store_vfs_list() (safe on a zeroed one). */
void store_dirlist_free(struct store_dirlist *list);

/* The POSIX implementation: O_CLOEXEC everywhere, EINTR retried, short reads and writes
 * continued, fdatasync for files and fsync for directories. Files are created mode 0600 and
 * directories 0700. Returns NULL when out of memory. Free with store_vfs_destroy(). */
struct store_vfs *store_vfs_posix(void);

#endif
