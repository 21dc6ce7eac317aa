/* The `dir` blob store: one file per blob in a local directory.
 *
 * A put writes a temporary file (".tmp-" + random, which no valid blob name can collide with
 * and listings skip), fdatasyncs it, renames it over the name and fsyncs the directory, so after a
 * crash at any point the name holds the old blob or the new one, never a torn mix, and a put
 * that returned is durable. A crash leaves at most an orphan temporary file; removing those is
 * the garbage collector's job (docs/OBJECTS.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/blobstore_internal.h"
#include "common/alloc.h"
#include "teems/err.h"

/* For sinks that cannot read for themselves (the decryptor can: obj_sink.pull). */
#define COPY_BUF (256u << 10)
/* A put asks the kernel to start writing the blob back every WRITEBACK_STEP bytes, so that the
 * disk works while the rest is encrypted and the fdatasync before the rename waits for the
 * tail, not for the whole blob (a 16 MiB blob took ~14 ms to fsync here from cold). */
#define WRITEBACK_STEP (2u << 20)

struct blob_dir {
	struct blobstore base;
	char path[BLOB_URL_PATH_MAX];
};

static struct blob_dir *to_dir(struct blobstore *s)
{
	return (struct blob_dir *)s;
}

static int open_dir(struct blob_dir *d, int *fd, char *errbuf)
{
	*fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0)
		return teems_errf(errbuf, errno == ENOENT ? OBJ_EUNAVAIL : TEEMS_EIO,
				  "blob directory %s: %s", d->path, strerror(errno));
	return TEEMS_OK;
}

static int dir_init(struct blobstore *s, char *errbuf)
{
	struct blob_dir *d = to_dir(s);
	char p[BLOB_URL_PATH_MAX];

	snprintf(p, sizeof(p), "%s", d->path);
	for (char *q = p + 1;; q++) {
		char c = *q;

		if (c != '/' && c != '\0')
			continue;
		*q = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST)
			return teems_errf(errbuf, TEEMS_EIO, "mkdir %s: %s", p, strerror(errno));
		*q = c;
		if (c == '\0')
			break;
	}
	return TEEMS_OK;
}

/* Writes src (exactly len bytes) to fd; from the source's own buffer when it can lend it. */
static int write_all(int fd, const struct obj_src *src, uint64_t len, const char *name,
		     char *errbuf)
{
	struct obj_sink out = obj_sink_fd(&fd);
	uint8_t *buf = NULL;
	uint64_t done = 0, kicked = 0;
	int rc = TEEMS_OK;

	if (src->borrow == NULL && (buf = teems_malloc(COPY_BUF)) == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "dir put: out of memory");
	for (;;) {
		const uint8_t *p = buf;
		size_t got = 0;

		if (src->borrow != NULL)
			rc = src->borrow(src->arg, &p, &got, errbuf);
		else
			rc = src->read(src->arg, buf, COPY_BUF, &got, errbuf);
		if (rc != TEEMS_OK || got == 0)
			break;
		if (got > len - done) {
			rc = teems_errf(errbuf, TEEMS_EIO, "put %s: source longer than %llu bytes",
					name, (unsigned long long)len);
			break;
		}
		rc = out.write(out.arg, p, got, errbuf);
		if (rc != TEEMS_OK)
			break;
		done += got;
		if (done - kicked >= WRITEBACK_STEP) {
			/* Only a hint: durability comes from the fdatasync below. */
			(void)sync_file_range(fd, (off_t)kicked, (off_t)(done - kicked),
					      SYNC_FILE_RANGE_WRITE);
			kicked = done;
		}
	}
	if (rc == TEEMS_OK && done != len)
		rc = teems_errf(errbuf, TEEMS_EIO, "put %s: source ended after %llu of %llu bytes",
				name, (unsigned long long)done, (unsigned long long)len);
	teems_free(buf);
	return rc;
}

static int dir_put(struct blobstore *s, const char *name, const struct obj_src *src, uint64_t len,
		   char *errbuf)
{
	struct blob_dir *d = to_dir(s);
	char tmp[BLOB_RANDOM_NAME_LEN + 8];
	int dfd, fd = -1, rc;

	rc = open_dir(d, &dfd, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	memcpy(tmp, ".tmp-", 5);
	rc = blobstore_random_name(tmp + 5);
	if (rc != TEEMS_OK) {
		teems_errf(errbuf, rc, "random temporary name failed");
		goto close_dir;
	}
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = teems_errf(errbuf, TEEMS_EIO, "create %s/%s: %s", d->path, tmp,
				strerror(errno));
		goto close_dir;
	}
	rc = write_all(fd, src, len, name, errbuf);
	if (rc != TEEMS_OK)
		goto unlink_tmp;
	/* The data and the file's size must be on disk before the rename can be (a crash must
	 * leave the old blob or the whole new one under the name); fdatasync covers both. */
	if (fdatasync(fd) != 0) {
		rc = teems_errf(errbuf, TEEMS_EIO, "fdatasync %s: %s", tmp, strerror(errno));
		goto unlink_tmp;
	}
	close(fd);
	fd = -1;
	if (renameat(dfd, tmp, dfd, name) != 0) {
		rc = teems_errf(errbuf, TEEMS_EIO, "rename to %s: %s", name, strerror(errno));
		goto unlink_tmp;
	}
	if (fsync(dfd) != 0) {
		rc = teems_errf(errbuf, TEEMS_EIO, "fsync %s: %s", d->path, strerror(errno));
		goto close_dir;
	}
	rc = TEEMS_OK;
	goto close_dir;
unlink_tmp:
	if (fd >= 0)
		close(fd);
	unlinkat(dfd, tmp, 0);
close_dir:
	close(dfd);
	return rc;
}

static int open_blob(struct blob_dir *d, const char *name, int *fd, char *errbuf)
{
	int dfd, rc = open_dir(d, &dfd, errbuf);

	if (rc != TEEMS_OK)
		return rc;
	*fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		rc = teems_errf(errbuf, errno == ENOENT ? TEEMS_ENOTFOUND : TEEMS_EIO,
				"blob %s: %s", name, strerror(errno));
	close(dfd);
	return rc;
}

static int dir_get(struct blobstore *s, const char *name, const struct obj_sink *sink, char *errbuf)
{
	uint8_t *buf;
	int fd, rc = open_blob(to_dir(s), name, &fd, errbuf);
	struct obj_src src = obj_src_fd(&fd);

	if (rc != TEEMS_OK)
		return rc;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (sink->pull != NULL) {
		rc = sink->pull(sink->arg, &src, errbuf);
		close(fd);
		return rc;
	}
	buf = teems_malloc(COPY_BUF);
	if (buf == NULL)
		rc = teems_errf(errbuf, TEEMS_ENOMEM, "dir get: out of memory");
	else
		rc = obj_copy(&src, sink, buf, COPY_BUF, errbuf);
	teems_free(buf);
	close(fd);
	return rc;
}

static int dir_del(struct blobstore *s, const char *name, char *errbuf)
{
	struct blob_dir *d = to_dir(s);
	int dfd, rc = open_dir(d, &dfd, errbuf);

	if (rc != TEEMS_OK)
		return rc;
	/* No fsync of the directory: every blob deleted is one that no record names (superseded,
	 * never committed, or an orphan gc found), so a delete that a crash undoes brings back an
	 * orphan for the next gc, never a wrong object. */
	if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT)
		rc = teems_errf(errbuf, TEEMS_EIO, "unlink %s: %s", name, strerror(errno));
	close(dfd);
	return rc;
}

static int dir_stat(struct blobstore *s, const char *name, struct blob_stat *st, char *errbuf)
{
	struct blob_dir *d = to_dir(s);
	struct stat sb;
	int dfd, rc = open_dir(d, &dfd, errbuf);

	if (rc != TEEMS_OK)
		return rc;
	if (fstatat(dfd, name, &sb, 0) != 0)
		rc = teems_errf(errbuf, errno == ENOENT ? TEEMS_ENOTFOUND : TEEMS_EIO,
				"blob %s: %s", name, strerror(errno));
	else if (!S_ISREG(sb.st_mode))
		rc = teems_errf(errbuf, TEEMS_EIO, "blob %s is not a regular file", name);
	else
		*st = (struct blob_stat){.size = (uint64_t)sb.st_size, .mtime = sb.st_mtime};
	close(dfd);
	return rc;
}

static int dir_list(struct blobstore *s, const char *prefix, blob_list_fn fn, void *arg,
		    char *errbuf)
{
	struct blob_dir *d = to_dir(s);
	size_t plen = strlen(prefix);
	struct dirent *e;
	DIR *dir = opendir(d->path);
	int rc = TEEMS_OK;

	if (dir == NULL)
		return teems_errf(errbuf, errno == ENOENT ? OBJ_EUNAVAIL : TEEMS_EIO,
				  "blob directory %s: %s", d->path, strerror(errno));
	errno = 0;
	while ((e = readdir(dir)) != NULL) {
		if (!blob_name_valid(e->d_name) || strncmp(e->d_name, prefix, plen) != 0)
			continue;
		rc = fn(arg, e->d_name);
		if (rc != 0)
			break;
		errno = 0;
	}
	if (rc == 0 && errno != 0)
		rc = teems_errf(errbuf, TEEMS_EIO, "readdir %s: %s", d->path, strerror(errno));
	closedir(dir);
	return rc;
}

static int dir_sweep(struct blobstore *s, int64_t older_than, uint64_t *removed, char *errbuf)
{
	struct blob_dir *d = to_dir(s);
	struct dirent *e;
	DIR *dir = opendir(d->path);
	int rc = TEEMS_OK;

	if (dir == NULL)
		return teems_errf(errbuf, errno == ENOENT ? OBJ_EUNAVAIL : TEEMS_EIO,
				  "blob directory %s: %s", d->path, strerror(errno));
	while ((e = readdir(dir)) != NULL) {
		struct stat sb;

		if (strncmp(e->d_name, ".tmp-", 5) != 0 ||
		    fstatat(dirfd(dir), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(sb.st_mode) || sb.st_mtime >= older_than)
			continue;
		if (unlinkat(dirfd(dir), e->d_name, 0) == 0)
			(*removed)++;
		else if (errno != ENOENT)
			rc = teems_errf(errbuf, TEEMS_EIO, "%s/%s: %s", d->path, e->d_name,
					strerror(errno));
	}
	closedir(dir);
	return rc;
}

static void dir_close(struct blobstore *s)
{
	teems_free(s);
}

static const struct blobstore_ops dir_ops = {
	.init = dir_init,
	.put = dir_put,
	.get = dir_get,
	.del = dir_del,
	.stat = dir_stat,
	.list = dir_list,
	.close = dir_close,
	.sweep = dir_sweep,
};

int blob_dir_open(const struct blob_url *url, struct blobstore **out, char *errbuf)
{
	struct blob_dir *d = teems_calloc(1, sizeof(*d));

	if (d == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "dir store: out of memory");
	d->base.ops = &dir_ops;
	memcpy(d->path, url->path, sizeof(d->path));
	*out = &d->base;
	return TEEMS_OK;
}
