/* Client histories: recording, validation, and the text file format (see history.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "teems/err.h"

#include "history.h"

#define HISTORY_HEADER \
	"# teems history: client op-id invoke complete outcome op key [args] [-> result]"

/* At most: 7 fixed fields, 2 arguments, "->", 3 result fields. One more means "too many". */
#define MAX_FIELDS 14

void history_init(struct history *h)
{
	memset(h, 0, sizeof(*h));
}

static void op_free_bytes(struct history_op *op)
{
	teems_free((void *)op->key.data);
	teems_free((void *)op->value.data);
	teems_free((void *)op->result.value.data);
}

void history_free(struct history *h)
{
	for (size_t i = 0; i < h->n; i++)
		op_free_bytes(&h->ops[i]);
	teems_free(h->ops);
	history_init(h);
}

static bool type_has_value(enum history_type t)
{
	return t == HISTORY_SET || t == HISTORY_CAS;
}

/* A copy of *op with every field its type and outcome do not use cleared (pointers borrowed). */
static struct history_op op_normalized(const struct history_op *op)
{
	struct history_op n = {
		.client = op->client,
		.op_id = op->op_id,
		.invoke = op->invoke,
		.complete = op->complete,
		.outcome = op->outcome,
		.type = op->type,
		.key = op->key,
	};
	const struct history_result *r = &op->result;

	if (type_has_value(op->type))
		n.value = op->value;
	if (op->type == HISTORY_CAS)
		n.expected_version = op->expected_version;
	if (op->outcome != HISTORY_OK)
		return n;
	n.result.version_known = r->version_known;
	if (r->version_known || op->type == HISTORY_CAS)
		n.result.version = r->version;
	if (op->type == HISTORY_GET && r->found) {
		n.result.found = true;
		n.result.value = r->value;
	}
	if (op->type == HISTORY_CAS)
		n.result.cas_ok = r->cas_ok;
	return n;
}

static int bytes_dup(struct history_bytes *dst, struct history_bytes src)
{
	uint8_t *p;

	dst->data = NULL;
	dst->len = 0;
	if (src.len == 0)
		return 0;
	p = teems_malloc(src.len);
	if (p == NULL)
		return TEEMS_ENOMEM;
	memcpy(p, src.data, src.len);
	dst->data = p;
	dst->len = src.len;
	return 0;
}

int history_add(struct history *h, const struct history_op *op)
{
	struct history_op n = op_normalized(op);
	struct history_op *slot;

	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 64;
		struct history_op *ops = teems_realloc(h->ops, cap * sizeof(*ops));

		if (ops == NULL)
			return TEEMS_ENOMEM;
		h->ops = ops;
		h->cap = cap;
	}
	slot = &h->ops[h->n];
	*slot = n;
	if (bytes_dup(&slot->key, n.key) != 0)
		goto err_key;
	if (bytes_dup(&slot->value, n.value) != 0)
		goto err_value;
	if (bytes_dup(&slot->result.value, n.result.value) != 0)
		goto err_result;
	h->n++;
	return 0;

err_result:
	teems_free((void *)slot->value.data);
err_value:
	teems_free((void *)slot->key.data);
err_key:
	return TEEMS_ENOMEM;
}

int history_invoke(struct history *h, const struct history_op *op, size_t *index)
{
	struct history_op o = *op;
	int rv;

	o.outcome = HISTORY_UNKNOWN;
	o.complete = HISTORY_OPEN;
	rv = history_add(h, &o);
	if (rv == 0 && index != NULL)
		*index = h->n - 1;
	return rv;
}

int history_complete(struct history *h, size_t index, uint64_t time, enum history_outcome outcome,
		     const struct history_result *res)
{
	struct history_op *op;
	struct history_bytes value = {NULL, 0};

	if (index >= h->n)
		return TEEMS_EINVAL;
	op = &h->ops[index];
	if (outcome == HISTORY_OK && res != NULL && op->type == HISTORY_GET && res->found &&
	    bytes_dup(&value, res->value) != 0)
		return TEEMS_ENOMEM;
	teems_free((void *)op->result.value.data);
	memset(&op->result, 0, sizeof(op->result));
	op->complete = time;
	op->outcome = outcome;
	if (outcome == HISTORY_OK && res != NULL) {
		struct history_op tmp = *op;

		tmp.result = *res;
		op->result = op_normalized(&tmp).result;
		op->result.value = value;
	}
	return 0;
}

const char *history_type_name(enum history_type t)
{
	switch (t) {
	case HISTORY_GET:
		return "GET";
	case HISTORY_SET:
		return "SET";
	case HISTORY_CAS:
		return "CAS";
	case HISTORY_DEL:
		return "DEL";
	}
	return "?";
}

const char *history_outcome_name(enum history_outcome o)
{
	switch (o) {
	case HISTORY_OK:
		return "ok";
	case HISTORY_FAIL:
		return "fail";
	case HISTORY_UNKNOWN:
		return "unknown";
	}
	return "?";
}

static bool bytes_equal(struct history_bytes a, struct history_bytes b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

bool history_op_equal(const struct history_op *a, const struct history_op *b)
{
	struct history_op x = op_normalized(a), y = op_normalized(b);

	return x.client == y.client && x.op_id == y.op_id && x.invoke == y.invoke &&
	       x.complete == y.complete && x.outcome == y.outcome && x.type == y.type &&
	       bytes_equal(x.key, y.key) && bytes_equal(x.value, y.value) &&
	       x.expected_version == y.expected_version &&
	       x.result.version_known == y.result.version_known &&
	       x.result.found == y.result.found && x.result.cas_ok == y.result.cas_ok &&
	       x.result.version == y.result.version && bytes_equal(x.result.value, y.result.value);
}

/* ---- Validation ---- */

/* Where op i came from, for messages: a line of the parsed text, or its identity. */
struct op_where {
	const size_t *lines; /* lines[i - first] for i >= first, or NULL */
	size_t first;
};

static void where(const struct history *h, const struct op_where *w, size_t i, char *buf,
		  size_t cap)
{
	if (w != NULL && w->lines != NULL && i >= w->first)
		snprintf(buf, cap, "line %zu", w->lines[i - w->first]);
	else
		snprintf(buf, cap, "op %zu (client %" PRIu64 " op %" PRIu64 ")", i,
			 h->ops[i].client, h->ops[i].op_id);
}

static int check_op(const struct history *h, const struct op_where *w, size_t i, char *errbuf)
{
	const struct history_op *op = &h->ops[i];
	const char *why = NULL;
	char at[64];

	if ((unsigned)op->type > HISTORY_DEL)
		why = "invalid op type";
	else if ((unsigned)op->outcome > HISTORY_UNKNOWN)
		why = "invalid outcome";
	else if (op->outcome != HISTORY_UNKNOWN && op->complete == HISTORY_OPEN)
		why = "an ok or failed op needs a completion time";
	else if (op->complete != HISTORY_OPEN && op->complete < op->invoke)
		why = "completes before it is invoked";
	else if (op->outcome == HISTORY_OK && op->type == HISTORY_CAS && !op->result.version_known)
		why = "a CAS result needs versions";
	if (why == NULL)
		return 0;
	where(h, w, i, at, sizeof(at));
	return teems_errf(errbuf, TEEMS_ECORRUPT, "%s: %s", at, why);
}

static int cmp_by_id(const void *a, const void *b)
{
	const struct history_op *x = *(const struct history_op *const *)a;
	const struct history_op *y = *(const struct history_op *const *)b;

	if (x->client != y->client)
		return x->client < y->client ? -1 : 1;
	if (x->op_id != y->op_id)
		return x->op_id < y->op_id ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int cmp_by_client_time(const void *a, const void *b)
{
	const struct history_op *x = *(const struct history_op *const *)a;
	const struct history_op *y = *(const struct history_op *const *)b;

	if (x->client != y->client)
		return x->client < y->client ? -1 : 1;
	if (x->invoke != y->invoke)
		return x->invoke < y->invoke ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int validate(const struct history *h, const struct op_where *w, char *errbuf)
{
	const struct history_op **v;
	char a[64], b[64];
	int rv = 0;

	for (size_t i = 0; i < h->n; i++) {
		rv = check_op(h, w, i, errbuf);
		if (rv != 0)
			return rv;
	}
	if (h->n < 2)
		return 0;
	v = teems_malloc(h->n * sizeof(*v));
	if (v == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory validating the history");
	for (size_t i = 0; i < h->n; i++)
		v[i] = &h->ops[i];

	qsort(v, h->n, sizeof(*v), cmp_by_id);
	for (size_t i = 1; i < h->n; i++) {
		if (v[i]->client == v[i - 1]->client && v[i]->op_id == v[i - 1]->op_id) {
			where(h, w, (size_t)(v[i - 1] - h->ops), a, sizeof(a));
			where(h, w, (size_t)(v[i] - h->ops), b, sizeof(b));
			rv = teems_errf(errbuf, TEEMS_ECORRUPT,
					"%s and %s: client %" PRIu64 " uses op id %" PRIu64
					" twice",
					a, b, v[i]->client, v[i]->op_id);
			goto out;
		}
	}

	qsort(v, h->n, sizeof(*v), cmp_by_client_time);
	for (size_t i = 1; i < h->n; i++) {
		const struct history_op *p = v[i - 1], *q = v[i];

		if (p->client != q->client || p->outcome == HISTORY_UNKNOWN ||
		    p->complete <= q->invoke)
			continue;
		where(h, w, (size_t)(p - h->ops), a, sizeof(a));
		where(h, w, (size_t)(q - h->ops), b, sizeof(b));
		rv = teems_errf(errbuf, TEEMS_ECORRUPT,
				"%s and %s: client %" PRIu64
				" has two ops outstanding (only an unknown outcome may stay open)",
				a, b, p->client);
		goto out;
	}
out:
	teems_free(v);
	return rv;
}

int history_validate(const struct history *h, char *errbuf)
{
	return validate(h, NULL, errbuf);
}

/* ---- Strings and the writer ---- */

void history_str_free(struct history_str *s)
{
	teems_free(s->data);
	memset(s, 0, sizeof(*s));
}

static bool str_reserve(struct history_str *s, size_t more)
{
	size_t cap;
	char *p;

	if (s->err != 0)
		return false;
	if (s->len + more + 1 <= s->cap)
		return true;
	cap = s->cap ? s->cap : 128;
	while (cap < s->len + more + 1)
		cap *= 2;
	p = teems_realloc(s->data, cap);
	if (p == NULL) {
		s->err = TEEMS_ENOMEM;
		return false;
	}
	s->data = p;
	s->cap = cap;
	return true;
}

void history_str_printf(struct history_str *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !str_reserve(s, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	s->len += (size_t)n;
}

static bool byte_is_literal(uint8_t c)
{
	return c >= 0x21 && c <= 0x7e && c != '%' && c != '"';
}

void history_str_bytes(struct history_str *s, struct history_bytes b, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = (max > 0 && b.len > max) ? max : b.len;
	char *p;

	if (b.len == 0) {
		history_str_printf(s, "\"\"");
		return;
	}
	if (!str_reserve(s, 3 * n))
		return;
	p = s->data + s->len;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = b.data[i];

		if (byte_is_literal(c)) {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = '\0';
	s->len = (size_t)(p - s->data);
	if (n < b.len)
		history_str_printf(s, "...(%zu bytes)", b.len);
}

static void str_version(struct history_str *s, bool known, uint64_t v)
{
	if (known)
		history_str_printf(s, "%" PRIu64, v);
	else
		history_str_printf(s, "?");
}

void history_str_op(struct history_str *s, const struct history_op *op, size_t max)
{
	struct history_op n = op_normalized(op);

	history_str_printf(s, "%" PRIu64 " %" PRIu64 " %" PRIu64 " ", n.client, n.op_id, n.invoke);
	if (n.complete == HISTORY_OPEN)
		history_str_printf(s, "-");
	else
		history_str_printf(s, "%" PRIu64, n.complete);
	history_str_printf(s, " %s %s ", history_outcome_name(n.outcome),
			   history_type_name(n.type));
	history_str_bytes(s, n.key, max);
	if (n.type == HISTORY_CAS)
		history_str_printf(s, " %" PRIu64, n.expected_version);
	if (type_has_value(n.type)) {
		history_str_printf(s, " ");
		history_str_bytes(s, n.value, max);
	}
	if (n.outcome != HISTORY_OK)
		return;
	history_str_printf(s, " -> ");
	switch (n.type) {
	case HISTORY_GET:
		if (n.result.found) {
			history_str_printf(s, "value ");
			history_str_bytes(s, n.result.value, max);
			history_str_printf(s, " ");
		} else {
			history_str_printf(s, "absent ");
		}
		str_version(s, n.result.version_known, n.result.version);
		break;
	case HISTORY_SET:
	case HISTORY_DEL:
		str_version(s, n.result.version_known, n.result.version);
		break;
	case HISTORY_CAS:
		history_str_printf(s, "%s %" PRIu64, n.result.cas_ok ? "ok" : "fail",
				   n.result.version);
		break;
	}
}

int history_format(const struct history *h, struct history_str *s)
{
	history_str_printf(s, "%s\n", HISTORY_HEADER);
	for (size_t i = 0; i < h->n && s->err == 0; i++) {
		history_str_op(s, &h->ops[i], 0);
		history_str_printf(s, "\n");
	}
	return s->err;
}

int history_write(const struct history *h, FILE *f, char *errbuf)
{
	struct history_str s = {0};
	int rv = history_format(h, &s);

	if (rv != 0) {
		history_str_free(&s);
		return teems_errf(errbuf, rv, "out of memory formatting the history");
	}
	if (fwrite(s.data, 1, s.len, f) != s.len || fflush(f) != 0)
		rv = teems_errf(errbuf, TEEMS_EIO, "writing the history: %s", strerror(errno));
	history_str_free(&s);
	return rv;
}

int history_write_file(const struct history *h, const char *path, char *errbuf)
{
	FILE *f = fopen(path, "w");
	int rv;

	if (f == NULL)
		return teems_errf(errbuf, TEEMS_EIO, "%s: %s", path, strerror(errno));
	rv = history_write(h, f, errbuf);
	if (fclose(f) != 0 && rv == 0)
		rv = teems_errf(errbuf, TEEMS_EIO, "%s: %s", path, strerror(errno));
	return rv;
}

/* ---- The parser ---- */

struct field {
	const char *p;
	size_t len;
};

struct parser {
	size_t line;
	char *errbuf;
	uint8_t *scratch; /* decoded keys and values of the current line */
	size_t scratch_used;
};

/* A field quoted in an error message: at most 24 characters, non-printables as '?'. */
static const char *shown(const struct field *f, char *buf, size_t cap)
{
	size_t n = f->len < 24 ? f->len : 24;
	size_t i;

	if (cap < 28)
		return "";
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)f->p[i];

		buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (n < f->len) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

static int parse_error(struct parser *ps, const char *what, const struct field *f)
{
	char buf[32];

	if (f == NULL)
		return teems_errf(ps->errbuf, TEEMS_ECORRUPT, "line %zu: %s", ps->line, what);
	return teems_errf(ps->errbuf, TEEMS_ECORRUPT, "line %zu: %s, got '%s'", ps->line, what,
			  shown(f, buf, sizeof(buf)));
}

static bool field_is(const struct field *f, const char *s)
{
	size_t n = strlen(s);

	return f->len == n && memcmp(f->p, s, n) == 0;
}

static int parse_u64(struct parser *ps, const struct field *f, const char *what, uint64_t *out)
{
	uint64_t v = 0;
	char msg[64];

	snprintf(msg, sizeof(msg), "expected %s (unsigned decimal)", what);
	if (f->len == 0)
		return parse_error(ps, msg, f);
	for (size_t i = 0; i < f->len; i++) {
		unsigned d = (unsigned char)f->p[i] - (unsigned)'0';

		if (d > 9)
			return parse_error(ps, msg, f);
		if (v > (UINT64_MAX - d) / 10) {
			snprintf(msg, sizeof(msg), "%s does not fit in 64 bits", what);
			return parse_error(ps, msg, f);
		}
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* A version or "?" (unknown). */
static int parse_version(struct parser *ps, const struct field *f, bool *known, uint64_t *v)
{
	if (field_is(f, "?")) {
		*known = false;
		*v = 0;
		return 0;
	}
	*known = true;
	return parse_u64(ps, f, "a version or '?'", v);
}

/* Decodes a percent-encoded field into the line's scratch space (never longer than the field). */
static int parse_bytes(struct parser *ps, const struct field *f, const char *what,
		       struct history_bytes *out)
{
	uint8_t *dst = ps->scratch + ps->scratch_used;
	size_t n = 0;
	char msg[80];

	out->data = dst;
	out->len = 0;
	if (field_is(f, "\"\""))
		return 0;
	for (size_t i = 0; i < f->len; i++) {
		uint8_t c = (uint8_t)f->p[i];

		if (c == '%') {
			int hi = i + 2 < f->len ? hex_digit_value(f->p[i + 1]) : -1;
			int lo = hi >= 0 ? hex_digit_value(f->p[i + 2]) : -1;

			if (lo < 0) {
				snprintf(msg, sizeof(msg), "bad percent escape in %s", what);
				return parse_error(ps, msg, f);
			}
			dst[n++] = (uint8_t)(hi << 4 | lo);
			i += 2;
		} else if (byte_is_literal(c)) {
			dst[n++] = c;
		} else {
			snprintf(msg, sizeof(msg),
				 "%s has a byte that must be percent-encoded (or \"\" for empty)",
				 what);
			return parse_error(ps, msg, f);
		}
	}
	out->len = n;
	ps->scratch_used += n;
	return 0;
}

static int parse_result(struct parser *ps, struct history_op *op, const struct field *r, size_t nr)
{
	struct history_result *res = &op->result;
	size_t want;
	int rv;

	switch (op->type) {
	case HISTORY_GET:
		if (nr >= 1 && field_is(&r[0], "absent")) {
			want = 2;
		} else if (nr >= 1 && field_is(&r[0], "value")) {
			want = 3;
			res->found = true;
		} else {
			return parse_error(
				ps, "GET result must be 'absent VERSION' or 'value BYTES VERSION'",
				nr ? &r[0] : NULL);
		}
		if (nr != want)
			return parse_error(ps,
					   want == 2 ? "GET result must be 'absent VERSION'"
						     : "GET result must be 'value BYTES VERSION'",
					   NULL);
		if (res->found) {
			rv = parse_bytes(ps, &r[1], "the value read", &res->value);
			if (rv != 0)
				return rv;
		}
		return parse_version(ps, &r[want - 1], &res->version_known, &res->version);
	case HISTORY_SET:
	case HISTORY_DEL:
		if (nr != 1)
			return parse_error(ps, "SET and DEL results are one version or '?'", NULL);
		return parse_version(ps, &r[0], &res->version_known, &res->version);
	case HISTORY_CAS:
		if (nr != 2 || !(field_is(&r[0], "ok") || field_is(&r[0], "fail")))
			return parse_error(ps, "CAS result must be 'ok VERSION' or 'fail VERSION'",
					   nr ? &r[0] : NULL);
		res->cas_ok = field_is(&r[0], "ok");
		res->version_known = true;
		if (field_is(&r[1], "?"))
			return parse_error(ps, "a CAS result needs a version", &r[1]);
		return parse_u64(ps, &r[1], "a version", &res->version);
	}
	return parse_error(ps, "internal: bad type", NULL);
}

/* Parses the fields of one non-comment line into *op (bytes point into ps->scratch). */
static int parse_fields(struct parser *ps, const struct field *f, size_t nf, struct history_op *op)
{
	size_t nargs, arrow;
	int rv;

	memset(op, 0, sizeof(*op));
	if (nf < 7)
		return parse_error(
			ps, "too few fields (client op-id invoke complete outcome op key ...)",
			NULL);
	if ((rv = parse_u64(ps, &f[0], "a client id", &op->client)) != 0 ||
	    (rv = parse_u64(ps, &f[1], "an op id", &op->op_id)) != 0 ||
	    (rv = parse_u64(ps, &f[2], "an invocation time", &op->invoke)) != 0)
		return rv;
	if (field_is(&f[4], "ok"))
		op->outcome = HISTORY_OK;
	else if (field_is(&f[4], "fail"))
		op->outcome = HISTORY_FAIL;
	else if (field_is(&f[4], "unknown"))
		op->outcome = HISTORY_UNKNOWN;
	else
		return parse_error(ps, "expected outcome ok, fail or unknown", &f[4]);
	if (field_is(&f[3], "-")) {
		if (op->outcome != HISTORY_UNKNOWN)
			return parse_error(ps, "only an unknown outcome may lack a completion time",
					   NULL);
		op->complete = HISTORY_OPEN;
	} else {
		if ((rv = parse_u64(ps, &f[3], "a completion time or '-'", &op->complete)) != 0)
			return rv;
		if (op->complete == HISTORY_OPEN)
			return parse_error(ps, "completion time too large", &f[3]);
		if (op->complete < op->invoke)
			return parse_error(ps, "completes before it is invoked", NULL);
	}
	if (field_is(&f[5], "GET")) {
		op->type = HISTORY_GET;
		nargs = 0;
	} else if (field_is(&f[5], "SET")) {
		op->type = HISTORY_SET;
		nargs = 1;
	} else if (field_is(&f[5], "CAS")) {
		op->type = HISTORY_CAS;
		nargs = 2;
	} else if (field_is(&f[5], "DEL")) {
		op->type = HISTORY_DEL;
		nargs = 0;
	} else {
		return parse_error(ps, "expected op GET, SET, CAS or DEL", &f[5]);
	}
	if ((rv = parse_bytes(ps, &f[6], "the key", &op->key)) != 0)
		return rv;
	arrow = 7 + nargs;
	if (nf < arrow)
		return parse_error(
			ps, nargs == 1 ? "SET needs a value" : "CAS needs a version and a value",
			NULL);
	if (op->type == HISTORY_SET && (rv = parse_bytes(ps, &f[7], "the value", &op->value)) != 0)
		return rv;
	if (op->type == HISTORY_CAS &&
	    ((rv = parse_u64(ps, &f[7], "an expected version", &op->expected_version)) != 0 ||
	     (rv = parse_bytes(ps, &f[8], "the value", &op->value)) != 0))
		return rv;
	if (nf == arrow) {
		if (op->outcome == HISTORY_OK)
			return parse_error(ps, "an ok op needs '-> result'", NULL);
		return 0;
	}
	if (!field_is(&f[arrow], "->"))
		return parse_error(ps, "expected '->' or the end of the line", &f[arrow]);
	if (op->outcome != HISTORY_OK)
		return parse_error(ps, "only an ok op has a result", NULL);
	return parse_result(ps, op, &f[arrow + 1], nf - arrow - 1);
}

/* Splits line[0..len) into fields; *nf = MAX_FIELDS + 1 means "too many". */
static void split(const char *line, size_t len, struct field *f, size_t *nf)
{
	size_t i = 0, n = 0;

	while (i < len) {
		size_t start;

		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && line[i] != ' ' && line[i] != '\t')
			i++;
		if (n == MAX_FIELDS) {
			n++;
			break;
		}
		f[n].p = line + start;
		f[n].len = i - start;
		n++;
	}
	*nf = n;
}

static void truncate_history(struct history *h, size_t n)
{
	while (h->n > n)
		op_free_bytes(&h->ops[--h->n]);
}

int history_parse(struct history *h, const char *text, size_t len, char *errbuf)
{
	struct parser ps = {.errbuf = errbuf};
	size_t first = h->n, scratch_cap = 0, nlines = 0, lines_cap = 0;
	size_t *lines = NULL;
	size_t pos = 0;
	int rv = 0;

	while (pos < len) {
		const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t linelen = nl ? (size_t)(nl - line) : len - pos;
		struct field f[MAX_FIELDS];
		struct history_op op;
		size_t nf;

		pos += linelen + (nl != NULL);
		ps.line++;
		if (memchr(line, '\0', linelen) != NULL) {
			rv = parse_error(&ps, "NUL byte in line", NULL);
			goto err;
		}
		if (linelen > 0 && line[linelen - 1] == '\r')
			linelen--;
		split(line, linelen, f, &nf);
		if (nf == 0 || f[0].p[0] == '#')
			continue;
		if (nf > MAX_FIELDS) {
			rv = parse_error(&ps, "too many fields", NULL);
			goto err;
		}
		if (linelen > scratch_cap) {
			uint8_t *s = teems_realloc(ps.scratch, linelen);

			if (s == NULL)
				goto err_nomem;
			ps.scratch = s;
			scratch_cap = linelen;
		}
		ps.scratch_used = 0;
		if ((rv = parse_fields(&ps, f, nf, &op)) != 0)
			goto err;
		if (nlines == lines_cap) {
			size_t cap = lines_cap ? 2 * lines_cap : 64;
			size_t *l = teems_realloc(lines, cap * sizeof(*l));

			if (l == NULL)
				goto err_nomem;
			lines = l;
			lines_cap = cap;
		}
		if (history_add(h, &op) != 0)
			goto err_nomem;
		lines[nlines++] = ps.line;
	}
	{
		struct op_where w = {.lines = lines, .first = first};

		rv = validate(h, &w, errbuf);
	}
	if (rv != 0)
		goto err;
	teems_free(lines);
	teems_free(ps.scratch);
	return 0;

err_nomem:
	rv = teems_errf(errbuf, TEEMS_ENOMEM, "line %zu: out of memory", ps.line);
err:
	truncate_history(h, first);
	if (first == 0)
		history_free(h); /* also the ops array, so that an empty h owns nothing */
	teems_free(lines);
	teems_free(ps.scratch);
	return rv;
}

int history_read_file(struct history *h, const char *path, char *errbuf)
{
	bool is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rv;

	if (f == NULL)
		return teems_errf(errbuf, errno == ENOENT ? TEEMS_ENOTFOUND : TEEMS_EIO, "%s: %s",
				  path, strerror(errno));
	for (;;) {
		size_t n;

		if (len == cap) {
			size_t ncap = cap ? 2 * cap : 65536;
			char *b = teems_realloc(buf, ncap);

			if (b == NULL) {
				rv = teems_errf(errbuf, TEEMS_ENOMEM, "%s: out of memory", path);
				goto out;
			}
			buf = b;
			cap = ncap;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		rv = teems_errf(errbuf, TEEMS_EIO, "%s: read error", path);
		goto out;
	}
	rv = history_parse(h, buf, len, errbuf);
	if (rv == TEEMS_ECORRUPT && errbuf != NULL) {
		char msg[TEEMS_ERRBUF_LEN];

		snprintf(msg, sizeof(msg), "%s", errbuf);
		teems_errf(errbuf, rv, "%s: %s", path, msg);
	}
out:
	teems_free(buf);
	if (!is_stdin)
		fclose(f);
	return rv;
}
