#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "client/stream.h"
#include "common/alloc.h"
#include "teems/err.h"

static int fd_read(void *arg, void *buf, size_t cap, size_t *got, char *errbuf)
{
	int fd = *(int *)arg;
	ssize_t n;

	do
		n = read(fd, buf, cap);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return teems_errf(errbuf, TEEMS_EIO, "read: %s", strerror(errno));
	*got = (size_t)n;
	return TEEMS_OK;
}

static int fd_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	int fd = *(int *)arg;
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return teems_errf(errbuf, TEEMS_EIO, "write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	return TEEMS_OK;
}

struct obj_src obj_src_fd(int *fd)
{
	return (struct obj_src){.read = fd_read, .arg = fd};
}

struct obj_sink obj_sink_fd(int *fd)
{
	return (struct obj_sink){.write = fd_write, .arg = fd};
}

static int mem_read(void *arg, void *buf, size_t cap, size_t *got, char *errbuf)
{
	struct obj_mem_src *m = arg;
	size_t n = m->len - m->pos;

	(void)errbuf;
	if (n > cap)
		n = cap;
	if (n > 0)
		memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	*got = n;
	return TEEMS_OK;
}

struct obj_src obj_src_mem(struct obj_mem_src *mem)
{
	return (struct obj_src){.read = mem_read, .arg = mem};
}

static int mem_write(void *arg, const void *buf, size_t len, char *errbuf)
{
	struct obj_mem_sink *m = arg;
	size_t limit = m->limit ? m->limit : SIZE_MAX;

	if (len == 0)
		return TEEMS_OK;
	if (m->len > limit || len > limit - m->len)
		return teems_errf(errbuf, TEEMS_EFULL, "memory sink limit of %zu bytes reached",
				  limit);
	if (m->len + len > m->cap) {
		size_t cap = m->cap ? m->cap : 4096;
		uint8_t *p;

		while (cap < m->len + len)
			cap *= 2;
		if (cap > limit)
			cap = limit;
		p = teems_realloc(m->data, cap);
		if (p == NULL)
			return teems_errf(errbuf, TEEMS_ENOMEM, "memory sink: out of memory");
		m->data = p;
		m->cap = cap;
	}
	memcpy(m->data + m->len, buf, len);
	m->len += len;
	return TEEMS_OK;
}

struct obj_sink obj_sink_mem(struct obj_mem_sink *mem)
{
	return (struct obj_sink){.write = mem_write, .arg = mem};
}

int obj_read_full(const struct obj_src *src, void *buf, size_t len, size_t *got, char *errbuf)
{
	size_t have = 0;

	while (have < len) {
		size_t n = 0;
		int rc = src->read(src->arg, (uint8_t *)buf + have, len - have, &n, errbuf);

		if (rc != TEEMS_OK)
			return rc;
		if (n == 0)
			break;
		have += n;
	}
	*got = have;
	return TEEMS_OK;
}

int obj_copy(const struct obj_src *src, const struct obj_sink *sink, void *buf, size_t buf_len,
	     char *errbuf)
{
	for (;;) {
		size_t n = 0;
		int rc = src->read(src->arg, buf, buf_len, &n, errbuf);

		if (rc != TEEMS_OK)
			return rc;
		if (n == 0)
			return TEEMS_OK;
		rc = sink->write(sink->arg, buf, n, errbuf);
		if (rc != TEEMS_OK)
			return rc;
	}
}
