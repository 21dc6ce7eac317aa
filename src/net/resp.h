/* RESP, the Redis protocol, server side (DESIGN.md section 9): an incremental request parser
 * and a reply encoder. Pure: no sockets, no clock; allocation through teems_malloc.
 *
 * Requests are what Redis accepts (redis/src/networking.c, processMultibulkBuffer and
 * processInlineBuffer):
 *   multibulk  *<argc>\r\n then argc times $<len>\r\n<len bytes>\r\n
 *   inline     a line of words ended by \n (an optional \r before it is dropped), split as
 *              redis-cli and sdssplitargs do: "double quotes" with \n \r \t \b \a \\ \" \xHH
 *              escapes, 'single quotes' with \' only; a closing quote must be followed by a
 *              space or the end of the line.
 * `*0\r\n`, `*-1\r\n` and blank inline lines are empty requests: Redis ignores them.
 *
 * Protocol errors are answered the way Redis answers them: one error reply
 * ("-ERR Protocol error: invalid multibulk length") and the connection is closed after it is
 * written. The parser then stays in the error state; the caller must stop feeding it.
 *
 * Limits (struct resp_limits): Redis's are a multibulk of at most 1024*1024 arguments
 * (hard-coded), proto-max-bulk-len 512 MiB and an inline line of at most 64 KiB
 * (PROTO_INLINE_MAX_SIZE). teems keeps the argument count and inline size and lowers the bulk
 * length to 64 MiB by default (a KV value is at most KV_MAX_VALUE anyway; the command layer
 * refuses a too-large value with a clear error) and adds a cap on the whole request. A daemon
 * that wants Redis 7's stricter limits before AUTH (10 arguments, 16 KiB bulks) passes a second
 * struct resp_limits for unauthenticated connections. */
#ifndef TEEMS_NET_RESP_H
#define TEEMS_NET_RESP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESP_DEFAULT_MAX_ARGS (1024u * 1024u)
#define RESP_DEFAULT_MAX_BULK ((size_t)64 << 20)
#define RESP_DEFAULT_MAX_INLINE ((size_t)64 << 10)
#define RESP_DEFAULT_MAX_REQUEST ((size_t)128 << 20)

struct resp_limits {
	size_t max_args;    /* arguments in one request, command name included */
	size_t max_bulk;    /* bytes in one bulk argument */
	size_t max_inline;  /* bytes in an inline line, and in a *N or $N header line */
	size_t max_request; /* bytes of one request on the wire, headers included */
};

/* Fills l with the defaults above. */
void resp_limits_default(struct resp_limits *l);

/* One argument: a view of len bytes. */
struct resp_arg {
	const uint8_t *p;
	size_t len;
	size_t off_; /* internal: offset from the start of the request */
};

struct resp_request {
	size_t argc;		     /* 0: an empty request, to be skipped (nothing is replied) */
	const struct resp_arg *argv; /* argc views, owned by the parser (see resp_parse) */
	size_t consumed;	     /* bytes at the front of buf this request occupied */
};

enum resp_status {
	RESP_INCOMPLETE = 0,	 /* not a whole request yet: call again with more bytes */
	RESP_REQUEST = 1,	 /* *req holds one request */
	RESP_PROTOCOL_ERROR = 2, /* resp_parser_error() says what; reply it, then close */
};

struct resp_parser {
	struct resp_limits limits;
	/* internal state, kept between calls so a large request is scanned only once */
	int state_;	 /* 0 idle, 1 inside a multibulk, 2 protocol error */
	size_t off_;	 /* bytes of the current request scanned so far */
	size_t left_;	 /* multibulk arguments still to read */
	long long bulk_; /* length of the bulk being read, -1 while its $ line is awaited */
	struct resp_arg *args_;
	size_t argc_, argcap_;
	char error_[128];
};

/* Sets up a parser with the given limits (NULL: the defaults). Cannot fail: the argument array
 * is allocated on first use. */
void resp_parser_init(struct resp_parser *p, const struct resp_limits *limits);
void resp_parser_free(struct resp_parser *p);

/* Parses the request at the front of buf[0..len).
 *
 * Contract: buf starts with the first byte of the request not yet returned. After
 * RESP_INCOMPLETE, the next call must pass the same bytes again at the front (the buffer may
 * have moved or grown) followed by any new ones; the parser remembers how far it got, so a
 * 64 MiB argument arriving in pieces is not rescanned. After RESP_REQUEST, the caller handles
 * the request and then drops req->consumed bytes from the front before the next call
 * (pipelining: one buffer may hold many requests; call until RESP_INCOMPLETE).
 *
 * Arguments are zero-copy views into buf, valid until the caller changes or moves those bytes
 * or calls resp_parse again. Inline requests with quotes or escapes are decoded in place,
 * which is why buf is not const: bytes of an inline request may be rewritten.
 *
 * Returns an enum resp_status, or TEEMS_ENOMEM (the argument array could not grow; the parser
 * may be called again with the same bytes). */
int resp_parse(struct resp_parser *p, uint8_t *buf, size_t len, struct resp_request *req);

/* After RESP_PROTOCOL_ERROR: the reply text without the "-" and CRLF, Redis's words, e.g.
 * "ERR Protocol error: invalid multibulk length". "" otherwise. */
const char *resp_parser_error(const struct resp_parser *p);

/* The reply encoder. Every resp_add_* appends to a growable buffer; a failed allocation is
 * remembered (o->err = TEEMS_ENOMEM) and makes every later call a no-op, so a caller encodes a
 * whole reply and checks once. proto is 2 or 3 (HELLO switches it between replies).
 *
 * RESP2 renderings of RESP3 types follow Redis: null -> $-1 (resp_add_null) or *-1
 * (resp_add_null_array), map -> flat array of 2n elements, set -> array, double -> bulk string,
 * boolean -> integer 1/0. */
struct resp_out {
	uint8_t *buf; /* owned; bytes [0, len) are waiting to be written */
	size_t len, cap;
	int proto;
	int err;
};

void resp_out_init(struct resp_out *o, int proto);
void resp_out_free(struct resp_out *o);
/* Drops the first n bytes (written to the socket). n <= o->len. */
void resp_out_consume(struct resp_out *o, size_t n);

void resp_add_simple(struct resp_out *o, const char *s);
/* An error reply; msg starts with its code ("ERR ...", "WRONGTYPE ...", "NOAUTH ..."). CR and
 * LF inside msg are replaced by spaces, as Redis does, so the reply stays one line. */
void resp_add_error(struct resp_out *o, const char *msg);
void resp_add_errorf(struct resp_out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void resp_add_int(struct resp_out *o, long long v);
void resp_add_bulk(struct resp_out *o, const void *p, size_t len);
void resp_add_bulk_cstr(struct resp_out *o, const char *s);
void resp_add_null(struct resp_out *o);
void resp_add_null_array(struct resp_out *o);
void resp_add_array(struct resp_out *o, size_t n);
void resp_add_set(struct resp_out *o, size_t n);
/* n key-value pairs follow. */
void resp_add_map(struct resp_out *o, size_t n);
void resp_add_double(struct resp_out *o, double d);
void resp_add_bool(struct resp_out *o, bool b);
/* Appends bytes verbatim (an already encoded reply). */
void resp_add_raw(struct resp_out *o, const void *p, size_t len);

#endif
