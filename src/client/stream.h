/* Byte streams for the object layer: a source the consumer pulls from and a sink the producer
 * pushes into. Encryption is a source adapter (curl's upload callback pulls ciphertext) and
 * decryption is a sink adapter (curl's download callback pushes ciphertext), so a multi-GiB
 * object flows through a few fixed-size buffers and never sits in memory (DESIGN.md section 9).
 *
 * Callbacks return TEEMS_OK or a negative error code (teems/err.h or client/obj_err.h) and may
 * fill errbuf (TEEMS_ERRBUF_LEN bytes, may be NULL). */
#ifndef TEEMS_CLIENT_STREAM_H
#define TEEMS_CLIENT_STREAM_H

#include <stddef.h>
#include <stdint.h>

/* Reads up to cap (> 0) bytes into buf and sets *got; *got == 0 means end of stream. A short
 * read is not the end: callers loop. */
typedef int (*obj_read_fn)(void *arg, void *buf, size_t cap, size_t *got, char *errbuf);

/* Consumes all len bytes of buf (len may be 0). buf belongs to the caller and is only borrowed
 * for the duration of the call. */
typedef int (*obj_write_fn)(void *arg, const void *buf, size_t len, char *errbuf);

/* Optional, for sources that hold their bytes in a buffer of their own (the encryptor): lends
 * the next bytes in place instead of copying them. *p stays valid until the next call of
 * read or borrow; *len == 0 means end of stream. A consumer that can write from any address
 * (the dir store) saves a copy of every byte. */
typedef int (*obj_borrow_fn)(void *arg, const uint8_t **p, size_t *len, char *errbuf);

struct obj_src {
	obj_read_fn read;
	void *arg;
	obj_borrow_fn borrow; /* NULL: use read */
};

/* Optional, for sinks that would rather read than be written to (the decryptor): consumes src
 * to its end, reading straight into buffers of the sink's own, so that a source that can
 * read anywhere (a file) needs no buffer of its own and no byte is copied twice. Returns as
 * write would (the sink's errors, or src's). */
typedef int (*obj_pull_fn)(void *arg, const struct obj_src *src, char *errbuf);

struct obj_sink {
	obj_write_fn write;
	void *arg;
	obj_pull_fn pull; /* NULL: use write */
};

/* A source over a file descriptor (read(2), retrying EINTR) and a sink over one (write(2) until
 * everything is written). The descriptor stays owned by the caller. Errors: TEEMS_EIO. */
struct obj_src obj_src_fd(int *fd);
struct obj_sink obj_sink_fd(int *fd);

/* A source over a caller-owned memory buffer; the cursor advances through *mem. */
struct obj_mem_src {
	const uint8_t *data;
	size_t len;
	size_t pos;
};
struct obj_src obj_src_mem(struct obj_mem_src *mem);

/* A sink that appends into a growing buffer allocated with teems_malloc (free it with
 * teems_free); `limit` caps its size (TEEMS_EFULL beyond it; 0 = no cap). For tests and small
 * bodies. */
struct obj_mem_sink {
	uint8_t *data; /* owned by the sink's user; teems_free() it */
	size_t len;
	size_t cap;
	size_t limit;
};
struct obj_sink obj_sink_mem(struct obj_mem_sink *mem);

/* Reads until buf holds len bytes or the stream ends; *got tells how many arrived. */
int obj_read_full(const struct obj_src *src, void *buf, size_t len, size_t *got, char *errbuf);

/* Copies src into sink until the end of src, through a caller-provided buffer. */
int obj_copy(const struct obj_src *src, const struct obj_sink *sink, void *buf, size_t buf_len,
	     char *errbuf);

#endif
