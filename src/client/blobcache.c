#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/blobcache.h"
#include "client/blobstore.h"
#include "common/alloc.h"
#include "teems/err.h"

#define CACHE_BUF (64 * 1024)
#define HEX_LEN (2 * TEE_SHA256_LEN)

struct blobcache {
	char dir[BLOB_URL_PATH_MAX];
	uint64_t max_bytes;
};

struct blobcache_fill {
	struct blobcache *cache;
	char tmp[BLOB_RANDOM_NAME_LEN + 8];
	int fd;
};

static void hex(const uint8_t *b, char out[HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < TEE_SHA256_LEN; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[HEX_LEN] = '\0';
}

static int path_of(const struct blobcache *c, const char *name, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s", c->dir, name);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int blobcache_open(const char *dir, uint64_t max_bytes, struct blobcache **out, char *errbuf)
{
	struct blobcache *c;

	*out = NULL;
	if (dir == NULL || dir[0] == '\0' || strlen(dir) + HEX_LEN + 2 >= sizeof(c->dir))
		return teems_errf(errbuf, TEEMS_EINVAL, "blob cache: bad directory");
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return teems_errf(errbuf, TEEMS_EIO, "blob cache: mkdir %s: %s", dir,
				  strerror(errno));
	c = teems_calloc(1, sizeof(*c));
	if (c == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "blob cache: out of memory");
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	c->max_bytes = max_bytes;
	*out = c;
	return TEEMS_OK;
}

void blobcache_close(struct blobcache *cache)
{
	teems_free(cache);
}

int blobcache_drop(struct blobcache *cache, const uint8_t key[TEE_SHA256_LEN], char *errbuf)
{
	char name[HEX_LEN + 1], path[BLOB_URL_PATH_MAX + HEX_LEN + 2];

	hex(key, name);
	if (path_of(cache, name, path, sizeof(path)) != 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "blob cache: path too long");
	if (unlink(path) != 0 && errno != ENOENT)
		return teems_errf(errbuf, TEEMS_EIO, "blob cache: unlink %s: %s", path,
				  strerror(errno));
	return TEEMS_OK;
}

int blobcache_get(struct blobcache *cache, const uint8_t key[TEE_SHA256_LEN],
		  const struct obj_sink *sink, char *errbuf)
{
	char name[HEX_LEN + 1], path[BLOB_URL_PATH_MAX + HEX_LEN + 2];
	uint8_t *buf;
	int fd, rc;
	struct obj_src src = obj_src_fd(&fd);

	hex(key, name);
	if (path_of(cache, name, path, sizeof(path)) != 0)
		return teems_errf(errbuf, TEEMS_EINVAL, "blob cache: path too long");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return teems_errf(errbuf, errno == ENOENT ? TEEMS_ENOTFOUND : TEEMS_EIO,
				  "blob cache: %s: %s", name, strerror(errno));
	if (sink->pull != NULL) {
		rc = sink->pull(sink->arg, &src, errbuf);
	} else if ((buf = teems_malloc(CACHE_BUF)) == NULL) {
		rc = teems_errf(errbuf, TEEMS_ENOMEM, "blob cache: out of memory");
	} else {
		rc = obj_copy(&src, sink, buf, CACHE_BUF, errbuf);
		teems_free(buf);
	}
	if (rc == TEEMS_OK)
		utimensat(AT_FDCWD, path, NULL, 0); /* LRU: a hit is a use */
	close(fd);
	return rc;
}

int blobcache_fill_begin(struct blobcache *cache, struct blobcache_fill **out, char *errbuf)
{
	char path[BLOB_URL_PATH_MAX + HEX_LEN + 2];
	struct blobcache_fill *f;
	int rc;

	*out = NULL;
	f = teems_calloc(1, sizeof(*f));
	if (f == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "blob cache: out of memory");
	f->cache = cache;
	f->fd = -1;
	memcpy(f->tmp, ".tmp-", 5);
	rc = blobstore_random_name(f->tmp + 5);
	if (rc != TEEMS_OK) {
		teems_errf(errbuf, rc, "blob cache: random name failed");
		goto fail;
	}
	path_of(cache, f->tmp, path, sizeof(path));
	f->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		rc = teems_errf(errbuf, TEEMS_EIO, "blob cache: create %s: %s", path,
				strerror(errno));
		goto fail;
	}
	*out = f;
	return TEEMS_OK;
fail:
	teems_free(f);
	return rc;
}

static int fill_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct blobcache_fill *f = arg;
	struct obj_sink out = obj_sink_fd(&f->fd);

	return out.write(out.arg, buf, len, errbuf);
}

struct obj_sink blobcache_fill_sink(struct blobcache_fill *fill)
{
	return (struct obj_sink){.write = fill_write, .arg = fill};
}

void blobcache_fill_abort(struct blobcache_fill *fill)
{
	char path[BLOB_URL_PATH_MAX + HEX_LEN + 2];

	if (fill == NULL)
		return;
	if (fill->fd >= 0)
		close(fill->fd);
	path_of(fill->cache, fill->tmp, path, sizeof(path));
	unlink(path);
	teems_free(fill);
}

int blobcache_fill_commit(struct blobcache_fill *fill, const uint8_t key[TEE_SHA256_LEN],
			  char *errbuf)
{
	char tmp[BLOB_URL_PATH_MAX + HEX_LEN + 2], path[BLOB_URL_PATH_MAX + HEX_LEN + 2];
	char name[HEX_LEN + 1];
	struct blobcache *cache = fill->cache;

	close(fill->fd);
	fill->fd = -1;
	hex(key, name);
	path_of(cache, fill->tmp, tmp, sizeof(tmp));
	path_of(cache, name, path, sizeof(path));
	if (rename(tmp, path) != 0) {
		int e = errno;

		blobcache_fill_abort(fill);
		return teems_errf(errbuf, TEEMS_EIO, "blob cache: rename: %s", strerror(e));
	}
	teems_free(fill);
	return blobcache_trim(cache, errbuf);
}

struct entry {
	char name[HEX_LEN + 1];
	uint64_t size;
	struct timespec mtime;
};

static int by_age(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

int blobcache_trim(struct blobcache *cache, char *errbuf)
{
	struct entry *e = NULL;
	size_t n = 0, cap = 0;
	uint64_t total = 0;
	struct dirent *d;
	DIR *dir;
	int rc = TEEMS_OK;

	if (cache->max_bytes == 0)
		return TEEMS_OK;
	dir = opendir(cache->dir);
	if (dir == NULL)
		return teems_errf(errbuf, TEEMS_EIO, "blob cache: %s: %s", cache->dir,
				  strerror(errno));
	while ((d = readdir(dir)) != NULL) {
		char path[BLOB_URL_PATH_MAX + HEX_LEN + 2];
		struct stat st;

		if (strlen(d->d_name) != HEX_LEN || d->d_name[0] == '.')
			continue;
		path_of(cache, d->d_name, path, sizeof(path));
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			struct entry *ne = teems_realloc(e, ncap * sizeof(*e));

			if (ne == NULL) {
				rc = teems_errf(errbuf, TEEMS_ENOMEM, "blob cache: out of memory");
				goto out;
			}
			e = ne;
			cap = ncap;
		}
		memcpy(e[n].name, d->d_name, HEX_LEN + 1);
		e[n].size = (uint64_t)st.st_size;
		e[n].mtime = st.st_mtim;
		total += e[n].size;
		n++;
	}
	qsort(e, n, sizeof(*e), by_age);
	for (size_t i = 0; i < n && total > cache->max_bytes; i++) {
		char path[BLOB_URL_PATH_MAX + HEX_LEN + 2];

		path_of(cache, e[i].name, path, sizeof(path));
		if (unlink(path) == 0 || errno == ENOENT)
			total -= e[i].size;
	}
out:
	teems_free(e);
	closedir(dir);
	return rc;
}
