/* RESP request parser and reply encoder (resp.h). The parser follows Redis's
 * processMultibulkBuffer / processInlineBuffer (redis/src/networking.c) and its error texts;
 * inline splitting follows sdssplitargs (redis/src/sds.c). */
#include "net/resp.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "teems/err.h"

enum { ST_IDLE = 0, ST_MULTIBULK = 1, ST_ERROR = 2 };

/* Redis preallocates at most this many argument slots for a declared multibulk count, so a
 * "*1048576\r\n" header alone does not make the server allocate much. */
#define PREALLOC_ARGS 1024u

void resp_limits_default(struct resp_limits *l)
{
	l->max_args = RESP_DEFAULT_MAX_ARGS;
	l->max_bulk = RESP_DEFAULT_MAX_BULK;
	l->max_inline = RESP_DEFAULT_MAX_INLINE;
	l->max_request = RESP_DEFAULT_MAX_REQUEST;
}

void resp_parser_init(struct resp_parser *p, const struct resp_limits *limits)
{
	memset(p, 0, sizeof(*p));
	if (limits != NULL)
		p->limits = *limits;
	else
		resp_limits_default(&p->limits);
	p->bulk_ = -1;
}

void resp_parser_free(struct resp_parser *p)
{
	teems_free(p->args_);
	p->args_ = NULL;
	p->argcap_ = 0;
}

const char *resp_parser_error(const struct resp_parser *p)
{
	return p->state_ == ST_ERROR ? p->error_ : "";
}

static int proto_error(struct resp_parser *p, const char *msg)
{
	snprintf(p->error_, sizeof(p->error_), "ERR Protocol error: %s", msg);
	p->state_ = ST_ERROR;
	return RESP_PROTOCOL_ERROR;
}

static void reset(struct resp_parser *p)
{
	p->state_ = ST_IDLE;
	p->off_ = 0;
	p->left_ = 0;
	p->bulk_ = -1;
	p->argc_ = 0;
}

/* Redis's string2ll: optional '-', digits, no leading zeros, no sign on zero, no spaces. */
static bool parse_ll(const uint8_t *s, size_t len, long long *out)
{
	size_t i = 0;
	bool neg = false;
	unsigned long long v = 0;

	if (len == 0 || len > 20)
		return false;
	if (len == 1 && s[0] == '0') {
		*out = 0;
		return true;
	}
	if (s[0] == '-') {
		neg = true;
		i = 1;
		if (len == 1)
			return false;
	}
	if (s[i] < '1' || s[i] > '9')
		return false;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (ULLONG_MAX - (unsigned)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (neg) {
		if (v > (unsigned long long)LLONG_MAX + 1)
			return false;
		*out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
	} else {
		if (v > (unsigned long long)LLONG_MAX)
			return false;
		*out = (long long)v;
	}
	return true;
}

static int reserve_args(struct resp_parser *p, size_t n)
{
	struct resp_arg *a;
	size_t cap;

	if (n <= p->argcap_)
		return TEEMS_OK;
	cap = p->argcap_ ? p->argcap_ : 16;
	while (cap < n)
		cap *= 2;
	a = teems_realloc(p->args_, cap * sizeof(*a));
	if (a == NULL)
		return TEEMS_ENOMEM;
	p->args_ = a;
	p->argcap_ = cap;
	return TEEMS_OK;
}

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

/* Splits line[0..len) in place into arguments (sdssplitargs). Returns TEEMS_OK, 1 for
 * unbalanced quotes, 2 for too many arguments, or TEEMS_ENOMEM. */
static int split_inline(struct resp_parser *p, uint8_t *line, size_t len)
{
	size_t r = 0, w;
	int rc;

	p->argc_ = 0;
	for (;;) {
		bool inq = false, insq = false, done = false;
		size_t start;

		while (r < len && is_space(line[r]))
			r++;
		if (r >= len)
			return TEEMS_OK;
		if (p->argc_ >= p->limits.max_args)
			return 2;
		start = w = r;
		while (!done) {
			if (inq) {
				if (r >= len)
					return 1;
				if (line[r] == '\\' && r + 3 < len && line[r + 1] == 'x' &&
				    hex_digit_value(line[r + 2]) >= 0 &&
				    hex_digit_value(line[r + 3]) >= 0) {
					line[w++] = (uint8_t)(hex_digit_value(line[r + 2]) * 16 +
							      hex_digit_value(line[r + 3]));
					r += 4;
				} else if (line[r] == '\\' && r + 1 < len) {
					uint8_t c = line[r + 1];

					switch (c) {
					case 'n':
						c = '\n';
						break;
					case 'r':
						c = '\r';
						break;
					case 't':
						c = '\t';
						break;
					case 'b':
						c = '\b';
						break;
					case 'a':
						c = '\a';
						break;
					default:
						break;
					}
					line[w++] = c;
					r += 2;
				} else if (line[r] == '"') {
					if (r + 1 < len && !is_space(line[r + 1]))
						return 1;
					r++;
					done = true;
				} else {
					line[w++] = line[r++];
				}
			} else if (insq) {
				if (r >= len)
					return 1;
				if (line[r] == '\\' && r + 1 < len && line[r + 1] == '\'') {
					line[w++] = '\'';
					r += 2;
				} else if (line[r] == '\'') {
					if (r + 1 < len && !is_space(line[r + 1]))
						return 1;
					r++;
					done = true;
				} else {
					line[w++] = line[r++];
				}
			} else if (r >= len || is_space(line[r])) {
				done = true;
			} else if (line[r] == '"') {
				inq = true;
				r++;
			} else if (line[r] == '\'') {
				insq = true;
				r++;
			} else {
				line[w++] = line[r++];
			}
		}
		rc = reserve_args(p, p->argc_ + 1);
		if (rc != TEEMS_OK)
			return rc;
		p->args_[p->argc_].p = line + start;
		p->args_[p->argc_].off_ = start;
		p->args_[p->argc_].len = w - start;
		p->argc_++;
	}
}

static int parse_inline(struct resp_parser *p, uint8_t *buf, size_t len, struct resp_request *req)
{
	uint8_t *nl = memchr(buf, '\n', len);
	size_t line_len;
	int rc;

	if (nl == NULL) {
		if (len > p->limits.max_inline)
			return proto_error(p, "too big inline request");
		return RESP_INCOMPLETE;
	}
	line_len = (size_t)(nl - buf);
	if (line_len > p->limits.max_inline)
		return proto_error(p, "too big inline request");
	req->consumed = line_len + 1;
	if (line_len > 0 && buf[line_len - 1] == '\r')
		line_len--;
	rc = split_inline(p, buf, line_len);
	if (rc == 1)
		return proto_error(p, "unbalanced quotes in request");
	if (rc == 2)
		return proto_error(p, "invalid multibulk length");
	if (rc != TEEMS_OK) {
		p->argc_ = 0;
		return rc;
	}
	req->argc = p->argc_;
	req->argv = p->args_;
	p->argc_ = 0;
	return RESP_REQUEST;
}

/* Finds the header line starting at buf[from] ("*N" or "$N" up to CR LF). Returns 1 with
 * *end at the CR, 0 if the line is not complete yet, -1 if it is already too long. */
static int find_line(const struct resp_parser *p, const uint8_t *buf, size_t len, size_t from,
		     size_t *end)
{
	const uint8_t *cr = memchr(buf + from, '\r', len - from);

	if (cr == NULL || (size_t)(cr - buf) + 1 >= len) {
		if (len - from > p->limits.max_inline)
			return -1;
		return 0;
	}
	*end = (size_t)(cr - buf);
	return 1;
}

int resp_parse(struct resp_parser *p, uint8_t *buf, size_t len, struct resp_request *req)
{
	size_t end;
	long long v;
	int rc;

	req->argc = 0;
	req->argv = NULL;
	req->consumed = 0;
	if (p->state_ == ST_ERROR)
		return RESP_PROTOCOL_ERROR;
	if (len == 0)
		return RESP_INCOMPLETE;
	if (p->state_ == ST_IDLE) {
		if (buf[0] != '*')
			return parse_inline(p, buf, len, req);
		rc = find_line(p, buf, len, 0, &end);
		if (rc < 0)
			return proto_error(p, "too big mbulk count string");
		if (rc == 0)
			return RESP_INCOMPLETE;
		if (buf[end + 1] != '\n' || !parse_ll(buf + 1, end - 1, &v) ||
		    (v > 0 && (unsigned long long)v > p->limits.max_args))
			return proto_error(p, "invalid multibulk length");
		if (v <= 0) {
			req->consumed = end + 2;
			return RESP_REQUEST;
		}
		rc = reserve_args(p, (size_t)v < PREALLOC_ARGS ? (size_t)v : PREALLOC_ARGS);
		if (rc != TEEMS_OK)
			return rc;
		p->state_ = ST_MULTIBULK;
		p->left_ = (size_t)v;
		p->off_ = end + 2;
		p->bulk_ = -1;
		p->argc_ = 0;
	}
	while (p->left_ > 0) {
		size_t need;

		if (p->off_ >= len)
			return RESP_INCOMPLETE;
		if (p->bulk_ < 0) {
			rc = find_line(p, buf, len, p->off_, &end);
			if (rc < 0)
				return proto_error(p, "too big bulk count string");
			if (rc == 0)
				return RESP_INCOMPLETE;
			if (buf[p->off_] != '$') {
				char msg[48];
				uint8_t c = buf[p->off_];

				if (c >= 0x20 && c < 0x7f)
					snprintf(msg, sizeof(msg), "expected '$', got '%c'", c);
				else
					snprintf(msg, sizeof(msg), "expected '$', got '\\x%02x'",
						 c);
				return proto_error(p, msg);
			}
			if (buf[end + 1] != '\n' ||
			    !parse_ll(buf + p->off_ + 1, end - p->off_ - 1, &v) || v < 0 ||
			    (unsigned long long)v > p->limits.max_bulk)
				return proto_error(p, "invalid bulk length");
			p->off_ = end + 2;
			if (p->off_ > p->limits.max_request ||
			    (size_t)v + 2 > p->limits.max_request - p->off_)
				return proto_error(p, "too big request");
			p->bulk_ = v;
		}
		need = p->off_ + (size_t)p->bulk_ + 2;
		if (len < need)
			return RESP_INCOMPLETE;
		if (buf[need - 2] != '\r' || buf[need - 1] != '\n')
			return proto_error(p, "bulk not followed by CRLF");
		rc = reserve_args(p, p->argc_ + 1);
		if (rc != TEEMS_OK)
			return rc;
		p->args_[p->argc_].off_ = p->off_;
		p->args_[p->argc_].len = (size_t)p->bulk_;
		p->argc_++;
		p->off_ = need;
		p->bulk_ = -1;
		p->left_--;
	}
	for (size_t i = 0; i < p->argc_; i++)
		p->args_[i].p = buf + p->args_[i].off_;
	req->argc = p->argc_;
	req->argv = p->args_;
	req->consumed = p->off_;
	reset(p);
	return RESP_REQUEST;
}

/* ---- encoder ---- */

void resp_out_init(struct resp_out *o, int proto)
{
	memset(o, 0, sizeof(*o));
	o->proto = proto == 3 ? 3 : 2;
}

void resp_out_free(struct resp_out *o)
{
	teems_free(o->buf);
	o->buf = NULL;
	o->len = o->cap = 0;
}

void resp_out_consume(struct resp_out *o, size_t n)
{
	if (n >= o->len) {
		o->len = 0;
		return;
	}
	memmove(o->buf, o->buf + n, o->len - n);
	o->len -= n;
}

static uint8_t *grow(struct resp_out *o, size_t n)
{
	uint8_t *b;
	size_t cap;

	if (o->err != TEEMS_OK)
		return NULL;
	if (n > SIZE_MAX - o->len) {
		o->err = TEEMS_ENOMEM;
		return NULL;
	}
	if (o->len + n > o->cap) {
		cap = o->cap ? o->cap : 256;
		while (cap < o->len + n)
			cap = cap > SIZE_MAX / 2 ? o->len + n : cap * 2;
		b = teems_realloc(o->buf, cap);
		if (b == NULL) {
			o->err = TEEMS_ENOMEM;
			return NULL;
		}
		o->buf = b;
		o->cap = cap;
	}
	b = o->buf + o->len;
	o->len += n;
	return b;
}

void resp_add_raw(struct resp_out *o, const void *p, size_t len)
{
	uint8_t *b = grow(o, len);

	if (b != NULL && len > 0)
		memcpy(b, p, len);
}

static void add_header(struct resp_out *o, char type, long long n)
{
	char tmp[32];
	int k = snprintf(tmp, sizeof(tmp), "%c%lld\r\n", type, n);

	resp_add_raw(o, tmp, (size_t)k);
}

/* type, then s with CR/LF replaced by spaces, then CRLF. */
static void add_line(struct resp_out *o, char type, const char *s, size_t len)
{
	uint8_t *b = grow(o, len + 3);

	if (b == NULL)
		return;
	b[0] = (uint8_t)type;
	for (size_t i = 0; i < len; i++)
		b[1 + i] = (s[i] == '\r' || s[i] == '\n') ? ' ' : (uint8_t)s[i];
	b[len + 1] = '\r';
	b[len + 2] = '\n';
}

void resp_add_simple(struct resp_out *o, const char *s)
{
	add_line(o, '+', s, strlen(s));
}

void resp_add_error(struct resp_out *o, const char *msg)
{
	add_line(o, '-', msg, strlen(msg));
}

void resp_add_errorf(struct resp_out *o, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	resp_add_error(o, msg);
}

void resp_add_int(struct resp_out *o, long long v)
{
	add_header(o, ':', v);
}

void resp_add_bulk(struct resp_out *o, const void *p, size_t len)
{
	char tmp[32];
	int k = snprintf(tmp, sizeof(tmp), "$%zu\r\n", len);
	uint8_t *b = grow(o, (size_t)k + len + 2);

	if (b == NULL)
		return;
	memcpy(b, tmp, (size_t)k);
	if (len > 0)
		memcpy(b + k, p, len);
	b[(size_t)k + len] = '\r';
	b[(size_t)k + len + 1] = '\n';
}

void resp_add_bulk_cstr(struct resp_out *o, const char *s)
{
	resp_add_bulk(o, s, strlen(s));
}

void resp_add_null(struct resp_out *o)
{
	if (o->proto == 3)
		resp_add_raw(o, "_\r\n", 3);
	else
		resp_add_raw(o, "$-1\r\n", 5);
}

void resp_add_null_array(struct resp_out *o)
{
	if (o->proto == 3)
		resp_add_raw(o, "_\r\n", 3);
	else
		resp_add_raw(o, "*-1\r\n", 5);
}

void resp_add_array(struct resp_out *o, size_t n)
{
	add_header(o, '*', (long long)n);
}

void resp_add_set(struct resp_out *o, size_t n)
{
	add_header(o, o->proto == 3 ? '~' : '*', (long long)n);
}

void resp_add_map(struct resp_out *o, size_t n)
{
	if (o->proto == 3)
		add_header(o, '%', (long long)n);
	else
		add_header(o, '*', (long long)n * 2);
}

void resp_add_double(struct resp_out *o, double d)
{
	char tmp[64];
	int k;

	if (isinf(d))
		k = snprintf(tmp, sizeof(tmp), "%s", d > 0 ? "inf" : "-inf");
	else if (isnan(d))
		k = snprintf(tmp, sizeof(tmp), "nan");
	else
		k = snprintf(tmp, sizeof(tmp), "%.17g", d);
	if (o->proto == 3)
		add_line(o, ',', tmp, (size_t)k);
	else
		resp_add_bulk(o, tmp, (size_t)k);
}

void resp_add_bool(struct resp_out *o, bool b)
{
	if (o->proto == 3)
		resp_add_raw(o, b ? "#t\r\n" : "#f\r\n", 4);
	else
		resp_add_int(o, b ? 1 : 0);
}
