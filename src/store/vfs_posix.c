/* The production VFS over POSIX system calls. See vfs.h for the contract. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "teems/err.h"
#include "vfs.h"

struct posix_file {
	struct store_file base;
	int fd;
};

static int posix_err(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return TEEMS_ENOTFOUND;
	case EEXIST:
		return TEEMS_EEXIST;
	case ENOMEM:
		return TEEMS_ENOMEM;
	default:
		return TEEMS_EIO;
	}
}

void store_dirlist_free(struct store_dirlist *list)
{
	for (size_t i = 0; i < list->n; i++)
		teems_free(list->names[i]);
	teems_free(list->names);
	list->names = NULL;
	list->n = 0;
}

static int posix_open(struct store_vfs *vfs, const char *path, int flags, struct store_file **out)
{
	struct posix_file *f;
	int oflags = O_CLOEXEC;
	int fd;

	if ((flags & (STORE_OPEN_CREATE | STORE_OPEN_TRUNC)) && !(flags & STORE_OPEN_WRITE))
		return TEEMS_EINVAL;
	oflags |= (flags & STORE_OPEN_WRITE) ? O_RDWR : O_RDONLY;
	if (flags & STORE_OPEN_CREATE)
		oflags |= O_CREAT;
	if (flags & STORE_OPEN_EXCL)
		oflags |= O_EXCL;
	if (flags & STORE_OPEN_TRUNC)
		oflags |= O_TRUNC;
	f = teems_malloc(sizeof(*f));
	if (f == NULL)
		return TEEMS_ENOMEM;
	do {
		fd = open(path, oflags, 0600);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int e = errno;

		teems_free(f);
		errno = e;
		return posix_err(e);
	}
	f->base.vfs = vfs;
	f->fd = fd;
	*out = &f->base;
	return TEEMS_OK;
}

static int posix_read(struct store_file *file, void *buf, size_t len, uint64_t off, size_t *nread)
{
	struct posix_file *f = (struct posix_file *)file;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(f->fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return posix_err(errno);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*nread = done;
	return TEEMS_OK;
}

static int posix_write(struct store_file *file, const void *buf, size_t len, uint64_t off)
{
	struct posix_file *f = (struct posix_file *)file;
	size_t done = 0;

	while (done < len) {
		ssize_t n =
			pwrite(f->fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return posix_err(errno);
		if (n == 0)
			return TEEMS_EIO; /* no progress and no error: refuse to spin */
		done += (size_t)n;
	}
	return TEEMS_OK;
}

static int posix_sync(struct store_file *file)
{
	struct posix_file *f = (struct posix_file *)file;
	int rv;

	/* fdatasync also flushes the size when it changed, which is all a reader needs. A failed
	 * fdatasync is never retried as if it had worked: the kernel may have dropped the dirty
	 * pages (PostgreSQL's "fsyncgate"); the caller treats it as fatal for the file. */
	do {
		rv = fdatasync(f->fd);
	} while (rv < 0 && errno == EINTR);
	return rv < 0 ? TEEMS_EIO : TEEMS_OK;
}

static int posix_size(struct store_file *file, uint64_t *size)
{
	struct posix_file *f = (struct posix_file *)file;
	struct stat st;

	if (fstat(f->fd, &st) < 0)
		return posix_err(errno);
	*size = (uint64_t)st.st_size;
	return TEEMS_OK;
}

static int posix_truncate(struct store_file *file, uint64_t size)
{
	struct posix_file *f = (struct posix_file *)file;
	int rv;

	do {
		rv = ftruncate(f->fd, (off_t)size);
	} while (rv < 0 && errno == EINTR);
	return rv < 0 ? posix_err(errno) : TEEMS_OK;
}

static void posix_close(struct store_file *file)
{
	struct posix_file *f = (struct posix_file *)file;

	/* Never retry close on EINTR: on Linux the descriptor is already gone. */
	close(f->fd);
	teems_free(f);
}

static int posix_rename(struct store_vfs *vfs, const char *from, const char *to)
{
	return rename(from, to) < 0 ? posix_err(errno) : TEEMS_OK;
}

static int posix_unlink(struct store_vfs *vfs, const char *path)
{
	return unlink(path) < 0 ? posix_err(errno) : TEEMS_OK;
}

static int posix_list(struct store_vfs *vfs, const char *dir, struct store_dirlist *out)
{
	struct store_dirlist l = {0};
	size_t cap = 0;
	struct dirent *de;
	DIR *d;
	int rv = TEEMS_OK;

	d = opendir(dir);
	if (d == NULL)
		return posix_err(errno);
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				rv = posix_err(errno);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (l.n == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			char **names = teems_realloc(l.names, ncap * sizeof(*names));

			if (names == NULL) {
				rv = TEEMS_ENOMEM;
				break;
			}
			l.names = names;
			cap = ncap;
		}
		size_t len = strlen(de->d_name);
		char *name = teems_malloc(len + 1);

		if (name == NULL) {
			rv = TEEMS_ENOMEM;
			break;
		}
		memcpy(name, de->d_name, len + 1);
		l.names[l.n++] = name;
	}
	closedir(d);
	if (rv != TEEMS_OK) {
		store_dirlist_free(&l);
		return rv;
	}
	*out = l;
	return TEEMS_OK;
}

static int posix_sync_dir(struct store_vfs *vfs, const char *dir)
{
	int fd, rv;

	do {
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return posix_err(errno);
	do {
		rv = fsync(fd);
	} while (rv < 0 && errno == EINTR);
	close(fd);
	return rv < 0 ? TEEMS_EIO : TEEMS_OK;
}

static int posix_mkdir(struct store_vfs *vfs, const char *dir)
{
	return mkdir(dir, 0700) < 0 ? posix_err(errno) : TEEMS_OK;
}

static void posix_destroy(struct store_vfs *vfs)
{
	teems_free(vfs);
}

struct store_vfs *store_vfs_posix(void)
{
	struct store_vfs *vfs = teems_malloc(sizeof(*vfs));

	if (vfs == NULL)
		return NULL;
	*vfs = (struct store_vfs){
		.open = posix_open,
		.read = posix_read,
		.write = posix_write,
		.sync = posix_sync,
		.size = posix_size,
		.truncate = posix_truncate,
		.close = posix_close,
		.rename = posix_rename,
		.unlink = posix_unlink,
		.list = posix_list,
		.sync_dir = posix_sync_dir,
		.mkdir = posix_mkdir,
		.destroy = posix_destroy,
	};
	return vfs;
}
