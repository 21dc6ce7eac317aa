/* Linearizability (WGL search per key) and monotonic reads; see lincheck.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "teems/err.h"

#include "lincheck.h"

/* How many ops of the longest prefix, and how many candidates, an explanation shows. */
#define EXPLAIN_PREFIX 8
#define EXPLAIN_CANDIDATES 8
#define EXPLAIN_BYTES 64

/* Model value ids of one key: 0 absent, 1 any value no ok GET returned, 2.. the values read. */
#define VAL_ABSENT 0u
#define VAL_UNREAD 1u
#define VAL_FIRST_READ 2u

#define NO_REQ UINT64_MAX
#define SLOT_EMPTY UINT64_MAX /* in cache_slot.ver: the model version never gets there */

struct mstate {
	uint64_t ver;
	uint32_t val;
};

/* One op of the key, as the search sees it. */
struct kop {
	const struct history_op *op;
	uint64_t invoke;
	uint64_t ret; /* HISTORY_OPEN for an unknown outcome */
	uint64_t z1, z2;
	uint32_t val;  /* GET: the value id read; SET, CAS: the value id written; DEL: VAL_ABSENT
			* (an unknown write no GET can observe writes VAL_UNREAD) */
	int32_t cls;   /* unknown ops: equivalence class (same effect in every state); else -1 */
	uint32_t rank; /* unknown ops: rank by invocation within the class */
	uint64_t req;  /* the version the key must have when it takes effect, or NO_REQ */
	bool unknown;
	bool read_only;	    /* ok GET, ok CAS that failed: never changes the state */
	bool check_version; /* ok GET, SET, DEL that reported a version */
};

/* An event of the WGL list: the call or return of kops[kop]. */
struct event {
	uint64_t time;
	uint32_t kop;
	bool is_return;
};

struct frame {
	uint32_t ev;  /* the call event lifted */
	uint8_t pass; /* the scan it was found in (enum pass) */
	struct mstate prev;
};

struct cache_slot {
	uint64_t h1, h2, ver;
};

/* An unknown op's class (CAS or not, value id, expected version) and its index, in invocation
 * order. */
struct ukey {
	uint32_t is_cas;
	uint32_t val;
	uint64_t expected;
	uint32_t kop;
};

/* A GET with a known version: it read value id val at version. */
struct obs {
	uint32_t val;
	uint64_t version;
};

struct search {
	struct kop *kops;
	size_t m;
	size_t n_ok;
	bool track_versions;
	struct history_bytes *reads; /* value id VAL_FIRST_READ + i is reads[i] */
	size_t n_reads;

	struct event *ev; /* 2m events in list order; index 2m is the list head */
	uint32_t *next, *prev, *match;

	struct cache_slot *slots;
	size_t cap, used;

	struct frame *stack;
	size_t sp;
	uint32_t *cls_done;  /* per class: how many of its ops are linearized */
	struct ukey *ukeys;  /* the unknown ops, by class then rank */
	uint32_t *cls_start; /* class c is ukeys[cls_start[c] .. cls_start[c + 1]) */
	size_t n_ukeys;
	int32_t unread_cls; /* the class of unknown SETs and DELs of VAL_UNREAD, or -1 */
	uint32_t *call_ev;  /* kop -> its call event */
	struct obs *obs;    /* the GETs with known versions, sorted */
	size_t n_obs;
	bool *read_unversioned; /* per value id: an ok GET without a version read it */
	/* A min-tree over the req of the ok ops not linearized yet (NO_REQ for the others); its
	 * root is the lowest version some pending op needs. Versions never decrease, so a
	 * configuration whose version is above it is dead. */
	uint64_t *req_tree;
	size_t req_leaves;
	uint32_t *best; /* kops of the longest linearized prefix found */
	size_t best_len, low;
	struct mstate best_state;

	uint64_t states, budget;
	bool reduce; /* apply the reductions (lincheck_options.no_reductions is false) */
};

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

const char *lincheck_verdict_name(enum lincheck_verdict v)
{
	switch (v) {
	case LINCHECK_OK:
		return "ok";
	case LINCHECK_VIOLATION:
		return "violation";
	case LINCHECK_UNKNOWN:
		return "unknown";
	}
	return "?";
}

void lincheck_result_free(struct lincheck_result *res)
{
	teems_free((void *)res->key.data);
	teems_free(res->explanation);
	memset(res, 0, sizeof(*res));
}

static int bytes_cmp(struct history_bytes a, struct history_bytes b)
{
	size_t n = a.len < b.len ? a.len : b.len;
	int c = n ? memcmp(a.data, b.data, n) : 0;

	if (c != 0)
		return c;
	return a.len < b.len ? -1 : a.len > b.len;
}

static int cmp_bytes(const void *a, const void *b)
{
	return bytes_cmp(*(const struct history_bytes *)a, *(const struct history_bytes *)b);
}

static int cmp_op_key_time(const void *a, const void *b)
{
	const struct history_op *x = *(const struct history_op *const *)a;
	const struct history_op *y = *(const struct history_op *const *)b;
	int c = bytes_cmp(x->key, y->key);

	if (c != 0)
		return c;
	if (x->invoke != y->invoke)
		return x->invoke < y->invoke ? -1 : 1;
	return x < y ? -1 : x > y;
}

/* Events in time order; at equal times calls come first (closed intervals: ops that touch are
 * concurrent), then by op. */
static int cmp_event(const void *a, const void *b)
{
	const struct event *x = a, *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	if (x->is_return != y->is_return)
		return x->is_return ? 1 : -1;
	return x->kop < y->kop ? -1 : x->kop > y->kop;
}

static int set_key(struct lincheck_result *res, struct history_bytes key)
{
	uint8_t *p = NULL;

	if (key.len > 0) {
		p = teems_malloc(key.len);
		if (p == NULL)
			return TEEMS_ENOMEM;
		memcpy(p, key.data, key.len);
	}
	res->key.data = p;
	res->key.len = key.len;
	return 0;
}

/* ---- The model ---- */

/* Applies kops[i] to state s: NULL and the next state in *ns if the op can take effect there
 * and return what it returned, else why not. */
static const char *model_step(const struct search *S, const struct kop *k, struct mstate s,
			      struct mstate *ns)
{
	const struct history_op *op = k->op;
	const struct history_result *r = &op->result;
	uint64_t next_ver = s.ver + (S->track_versions ? 1 : 0);

	*ns = s;
	switch (op->type) {
	case HISTORY_GET:
		if (r->found && s.val != k->val)
			return s.val == VAL_ABSENT ? "reads a value, but the key is absent"
						   : "reads a value other than the key's";
		if (!r->found && s.val != VAL_ABSENT)
			return "reads absent, but the key holds a value";
		if (k->check_version && s.ver != r->version)
			return "reads a version other than the key's";
		return NULL;
	case HISTORY_SET:
	case HISTORY_DEL:
		if (k->check_version && r->version != next_ver)
			return "returns a new version other than the key's version + 1";
		ns->val = k->val;
		ns->ver = next_ver;
		return NULL;
	case HISTORY_CAS:
		if (k->unknown || r->cas_ok) {
			if (s.ver != op->expected_version)
				return k->unknown
					       ? "would not apply here (expected version differs)"
					       : "succeeds, but the key's version is not the "
						 "expected one";
			if (!k->unknown && r->version != s.ver + 1)
				return "succeeds, but returns a new version other than the key's + "
				       "1";
			ns->val = k->val;
			ns->ver = s.ver + 1;
			return NULL;
		}
		if (s.ver == op->expected_version)
			return "fails, but the key's version is the expected one";
		if (r->version != s.ver)
			return "fails, but returns a current version other than the key's";
		return NULL;
	}
	return "invalid op type";
}

/* ---- The cache of visited configurations ---- */

static uint64_t val_key1(uint32_t val)
{
	return mix64(0x5851f42d4c957f2dull ^ val);
}

static uint64_t val_key2(uint32_t val)
{
	return mix64(0x14057b7ef767814full + ((uint64_t)val << 32));
}

static int cache_grow(struct search *S)
{
	size_t cap = S->cap ? 2 * S->cap : 1024;
	struct cache_slot *slots = teems_malloc(cap * sizeof(*slots));

	if (slots == NULL)
		return TEEMS_ENOMEM;
	memset(slots, 0xff, cap * sizeof(*slots));
	for (size_t i = 0; i < S->cap; i++) {
		struct cache_slot *o = &S->slots[i];
		size_t j;

		if (o->ver == SLOT_EMPTY)
			continue;
		for (j = (size_t)(o->h1 ^ o->ver) & (cap - 1); slots[j].ver != SLOT_EMPTY;
		     j = (j + 1) & (cap - 1))
			;
		slots[j] = *o;
	}
	teems_free(S->slots);
	S->slots = slots;
	S->cap = cap;
	return 0;
}

/* 1 if the configuration is new (and now remembered), 0 if seen, TEEMS_ENOMEM. */
static int cache_insert(struct search *S, uint64_t h1, uint64_t h2, uint64_t ver)
{
	size_t j;

	if (2 * (S->used + 1) > S->cap && cache_grow(S) != 0)
		return TEEMS_ENOMEM;
	for (j = (size_t)(h1 ^ ver) & (S->cap - 1); S->slots[j].ver != SLOT_EMPTY;
	     j = (j + 1) & (S->cap - 1)) {
		const struct cache_slot *c = &S->slots[j];

		if (c->h1 == h1 && c->h2 == h2 && c->ver == ver)
			return 0;
	}
	S->slots[j] = (struct cache_slot){h1, h2, ver};
	S->used++;
	return 1;
}

/* ---- The WGL search ---- */

static void req_set(struct search *S, size_t i, uint64_t req)
{
	size_t n = S->req_leaves + i;

	S->req_tree[n] = req;
	for (n /= 2; n >= 1; n /= 2) {
		uint64_t a = S->req_tree[2 * n], b = S->req_tree[2 * n + 1];

		S->req_tree[n] = a < b ? a : b;
	}
}

static void lift(struct search *S, uint32_t e)
{
	uint32_t r = S->match[e];

	S->next[S->prev[e]] = S->next[e];
	S->prev[S->next[e]] = S->prev[e];
	S->next[S->prev[r]] = S->next[r];
	S->prev[S->next[r]] = S->prev[r];
}

static void unlift(struct search *S, uint32_t e)
{
	uint32_t r = S->match[e];

	S->next[S->prev[r]] = r;
	S->prev[S->next[r]] = r;
	S->next[S->prev[e]] = e;
	S->prev[S->next[e]] = e;
}

/* ---- Equivalent unknown ops ---- */

static int cmp_ukey_class(const struct ukey *x, const struct ukey *y)
{
	if (x->is_cas != y->is_cas)
		return x->is_cas < y->is_cas ? -1 : 1;
	if (x->val != y->val)
		return x->val < y->val ? -1 : 1;
	if (x->expected != y->expected)
		return x->expected < y->expected ? -1 : 1;
	return 0;
}

static int cmp_obs(const void *a, const void *b)
{
	const struct obs *x = a, *y = b;

	if (x->val != y->val)
		return x->val < y->val ? -1 : 1;
	return x->version < y->version ? -1 : x->version > y->version;
}

/* The class of unknown ops (CAS or not, val, expected), or -1. */
static int32_t find_class(const struct search *S, bool cas, uint32_t val, uint64_t expected)
{
	struct ukey probe = {cas, val, cas ? expected : 0, 0};
	size_t lo = 0, hi = S->n_ukeys;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cmp_ukey_class(&S->ukeys[mid], &probe) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == S->n_ukeys || cmp_ukey_class(&S->ukeys[lo], &probe) != 0)
		return -1;
	return S->kops[S->ukeys[lo].kop].cls;
}

static int cmp_ukey(const void *a, const void *b)
{
	const struct ukey *x = a, *y = b;
	int c = cmp_ukey_class(x, y);

	if (c != 0)
		return c;
	return x->kop < y->kop ? -1 : x->kop > y->kop;
}

/* Could a GET see value id val at version? */
static bool observable(const struct search *S, uint32_t val, uint64_t version)
{
	struct obs probe = {val, version};

	return S->read_unversioned[val] ||
	       (S->n_obs > 0 &&
		bsearch(&probe, S->obs, S->n_obs, sizeof(*S->obs), cmp_obs) != NULL);
}

/* Is the next op of class c (if any) a candidate now? e is the call event of a candidate. */
static bool class_candidate(const struct search *S, int32_t c, uint32_t e)
{
	const uint32_t head = (uint32_t)(2 * S->m);
	uint32_t rank, w;

	if (c < 0)
		return false;
	rank = S->cls_done[c];
	if (S->cls_start[c] + rank >= S->cls_start[c + 1])
		return false;
	w = S->call_ev[S->ukeys[S->cls_start[c] + rank].kop];
	if (w < e)
		return true; /* the list keeps event order, and e is before the first return */
	for (; e != head && !S->ev[e].is_return; e = S->next[e])
		if (e == w)
			return true;
	return false;
}

/* May the search skip the unknown SET or DEL k (call event e) in state s, because another
 * candidate w has the same effect here and is worth less later? Then any linearization that
 * places k here and w later (or never) can swap them: w here, k at w's place (or nowhere).
 * - w is an unknown CAS that applies here: past this version it never can.
 * - w writes VAL_UNREAD and no GET can see k's value at the version k would produce: w can
 *   never be seen at all, while k might be elsewhere.
 * CAS ops are never skipped and unread writes are skipped only for a CAS, so some candidate
 * with the effect is always tried. */
static bool unknown_dominated(const struct search *S, const struct kop *k, struct mstate s,
			      uint32_t e)
{
	if (!S->track_versions || k->op->type == HISTORY_CAS)
		return false;
	if (class_candidate(S, find_class(S, true, k->val, s.ver), e))
		return true;
	if (k->val == VAL_UNREAD || observable(S, k->val, s.ver + 1))
		return false;
	return class_candidate(S, S->unread_cls, e) ||
	       class_candidate(S, find_class(S, true, VAL_UNREAD, s.ver), e);
}

/* The scans of one configuration, in order. */
enum pass {
	PASS_READ,    /* ok ops that leave the state as it is (GET, failed CAS) and fit now */
	PASS_WRITE,   /* the other ok ops */
	PASS_UNKNOWN, /* ops with an unknown outcome */
};

static bool in_pass(const struct search *S, const struct kop *k, enum pass pass)
{
	if (k->unknown)
		return pass == PASS_UNKNOWN;
	return k->read_only && S->reduce ? pass == PASS_READ : pass == PASS_WRITE;
}

/* Runs the search. Returns the verdict (LINCHECK_*) or TEEMS_ENOMEM.
 *
 * At each configuration the candidates are the calls before the first return event in the
 * list. They are tried in three scans:
 * - A read-only ok op that fits the current state is linearized at once, and is the only
 *   candidate tried: if a linearization from configuration C exists, moving that op to its
 *   front gives another (it changes no state, everything that must precede it is already in
 *   C since it is a candidate, and moving it earlier only relaxes the constraints on the
 *   others). So C is dead exactly when C + op is: undoing such a step undoes the one before
 *   it too. Without this, every subset of the reads of one state is a configuration.
 * - Then the other ok ops, then the unknown ones: this only orders the exploration, so that
 *   a linearizable history is usually found without trying, at every step, each pending
 *   unknown op that in fact never took effect. */
static int search_run(struct search *S)
{
	const uint32_t head = (uint32_t)(2 * S->m);
	struct mstate state = {0, VAL_ABSENT}, ns;
	uint64_t z1 = 0, z2 = 0;
	size_t ok_done = 0;
	enum pass pass = PASS_READ;
	uint32_t e;

	if (S->n_ok == 0)
		return LINCHECK_OK;
	e = S->next[head];
	for (;;) {
		const struct kop *k;
		uint64_t h1, h2;
		uint32_t ki;
		int rv;

		if (e == head || S->ev[e].is_return) {
			/* The end of the candidates: whatever is linearized next would follow an
			 * op that has not been linearized although it had already returned. */
			if (pass != PASS_UNKNOWN) {
				pass++;
				e = S->next[head];
				continue;
			}
			goto backtrack;
		}
		ki = S->ev[e].kop;
		k = &S->kops[ki];
		if (!in_pass(S, k, pass) ||
		    (S->reduce && k->cls >= 0 && S->cls_done[k->cls] != k->rank) ||
		    model_step(S, k, state, &ns) != NULL ||
		    (S->reduce && k->unknown && unknown_dominated(S, k, state, e))) {
			e = S->next[e];
			continue;
		}
		h1 = z1 ^ k->z1;
		h2 = z2 ^ k->z2;
		if (k->req != NO_REQ)
			req_set(S, ki, NO_REQ);
		/* Versions never decrease: past the version a pending op needs, all is dead. */
		rv = S->reduce && ns.ver > S->req_tree[1]
			     ? 0
			     : cache_insert(S, h1 ^ val_key1(ns.val), h2 ^ val_key2(ns.val),
					    ns.ver);
		if (rv < 0)
			return rv;
		if (rv == 0) {
			if (k->req != NO_REQ)
				req_set(S, ki, k->req);
			if (pass == PASS_READ)
				goto backtrack; /* C + op was explored and failed, so C fails */
			e = S->next[e];
			continue;
		}
		if (++S->states > S->budget)
			return LINCHECK_UNKNOWN;
		S->stack[S->sp++] = (struct frame){e, pass, state};
		state = ns;
		z1 = h1;
		z2 = h2;
		lift(S, e);
		ok_done += !k->unknown;
		if (k->cls >= 0)
			S->cls_done[k->cls]++;
		if (S->sp > S->best_len) {
			for (size_t i = S->low; i < S->sp; i++)
				S->best[i] = S->ev[S->stack[i].ev].kop;
			S->best_len = S->low = S->sp;
			S->best_state = state;
		}
		if (ok_done == S->n_ok)
			return LINCHECK_OK;
		e = S->next[head];
		pass = PASS_READ;
		continue;

	backtrack:
		for (;;) {
			struct frame f;

			if (S->sp == 0)
				return LINCHECK_VIOLATION;
			f = S->stack[--S->sp];
			k = &S->kops[S->ev[f.ev].kop];
			state = f.prev;
			z1 ^= k->z1;
			z2 ^= k->z2;
			unlift(S, f.ev);
			ok_done -= !k->unknown;
			if (k->cls >= 0)
				S->cls_done[k->cls]--;
			if (k->req != NO_REQ)
				req_set(S, S->ev[f.ev].kop, k->req);
			if (S->sp < S->low)
				S->low = S->sp;
			if (f.pass != PASS_READ) {
				e = S->next[f.ev];
				pass = f.pass;
				break;
			}
		}
	}
}

/* ---- Building one key's search ---- */

static void search_free(struct search *S)
{
	teems_free(S->kops);
	teems_free(S->reads);
	teems_free(S->ev);
	teems_free(S->next);
	teems_free(S->prev);
	teems_free(S->match);
	teems_free(S->slots);
	teems_free(S->stack);
	teems_free(S->best);
	teems_free(S->cls_done);
	teems_free(S->req_tree);
	teems_free(S->ukeys);
	teems_free(S->cls_start);
	teems_free(S->call_ev);
	teems_free(S->obs);
	teems_free(S->read_unversioned);
	memset(S, 0, sizeof(*S));
}

static uint32_t value_id(const struct search *S, struct history_bytes v)
{
	const struct history_bytes *p =
		S->n_reads ? bsearch(&v, S->reads, S->n_reads, sizeof(*S->reads), cmp_bytes) : NULL;

	return p ? VAL_FIRST_READ + (uint32_t)(p - S->reads) : VAL_UNREAD;
}

static bool op_is_kept(const struct history_op *op)
{
	return op->outcome == HISTORY_OK ||
	       (op->outcome == HISTORY_UNKNOWN && op->type != HISTORY_GET);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* With versions, the unknown writes whose effect no GET can see write VAL_UNREAD, so that
 * they join one class (an unknown DEL and an unknown SET nobody sees are then the same op).
 * Each version is produced by one write; the ok writes that reported their new version
 * produce the versions in P (with 0, the initial state's). A GET with a known version in P
 * therefore sees the value of an ok write (or the initial state), never an unknown write's.
 * So an unknown write is observable only through a GET of its value whose version is unknown
 * or not in P; without one, writing VAL_UNREAD instead changes no step of any linearization. */
static int hide_unobservable(struct search *S)
{
	uint64_t *p = teems_malloc((S->m + 1) * sizeof(*p));
	bool *seen = teems_calloc(S->n_reads + VAL_FIRST_READ, sizeof(*seen));
	size_t np = 0;

	if (p == NULL || seen == NULL) {
		teems_free(p);
		teems_free(seen);
		return TEEMS_ENOMEM;
	}
	p[np++] = 0;
	for (size_t i = 0; i < S->m; i++) {
		const struct kop *k = &S->kops[i];
		const struct history_op *op = k->op;

		if (k->unknown || op->type == HISTORY_GET)
			continue;
		if (op->type == HISTORY_CAS ? op->result.cas_ok : k->check_version)
			p[np++] = op->result.version;
	}
	qsort(p, np, sizeof(*p), cmp_u64);
	for (size_t i = 0; i < S->m; i++) {
		const struct kop *k = &S->kops[i];

		if (!k->unknown && k->op->type == HISTORY_GET &&
		    (!k->check_version ||
		     bsearch(&k->op->result.version, p, np, sizeof(*p), cmp_u64) == NULL))
			seen[k->val] = true;
	}
	for (size_t i = 0; i < S->m; i++) {
		struct kop *k = &S->kops[i];

		if (k->unknown && !seen[k->val])
			k->val = VAL_UNREAD;
	}
	teems_free(p);
	teems_free(seen);
	return 0;
}

/* ops[0..n): one key's ops in invocation order. */
static int search_init(struct search *S, const struct history_op *const *ops, size_t n,
		       uint64_t budget, bool reduce)
{
	size_t m = 0, nev, nu = 0, ncls = 0;

	memset(S, 0, sizeof(*S));
	S->budget = budget;
	S->reduce = reduce;
	S->kops = teems_calloc(n ? n : 1, sizeof(*S->kops));
	S->reads = teems_calloc(n ? n : 1, sizeof(*S->reads));
	if (S->kops == NULL || S->reads == NULL)
		return TEEMS_ENOMEM;

	for (size_t i = 0; i < n; i++) {
		const struct history_op *op = ops[i];

		if (op->outcome == HISTORY_OK && op->type == HISTORY_GET && op->result.found)
			S->reads[S->n_reads++] = op->result.value;
	}
	qsort(S->reads, S->n_reads, sizeof(*S->reads), cmp_bytes);
	if (S->n_reads > 0) {
		size_t u = 1;

		for (size_t i = 1; i < S->n_reads; i++)
			if (bytes_cmp(S->reads[i], S->reads[u - 1]) != 0)
				S->reads[u++] = S->reads[i];
		S->n_reads = u;
	}

	for (size_t i = 0; i < n; i++) {
		const struct history_op *op = ops[i];
		struct kop *k = &S->kops[m];

		if (!op_is_kept(op))
			continue;
		k->op = op;
		k->invoke = op->invoke;
		k->unknown = op->outcome == HISTORY_UNKNOWN;
		k->ret = k->unknown ? HISTORY_OPEN : op->complete;
		k->check_version =
			!k->unknown && op->type != HISTORY_CAS && op->result.version_known;
		k->cls = -1;
		k->read_only = !k->unknown && (op->type == HISTORY_GET ||
					       (op->type == HISTORY_CAS && !op->result.cas_ok));
		if (op->type == HISTORY_GET)
			k->val = op->result.found ? value_id(S, op->result.value) : VAL_ABSENT;
		else if (op->type == HISTORY_SET || op->type == HISTORY_CAS)
			k->val = value_id(S, op->value);
		else
			k->val = VAL_ABSENT;
		S->track_versions |= k->check_version || op->type == HISTORY_CAS;
		S->n_ok += !k->unknown;
		m++;
	}

	/* Without versions to check, an unknown SET of a value no GET returned (a "phantom") only
	 * hides the key's value until the next write: leaving it out loses nothing. */
	{
		size_t w = 0;

		for (size_t i = 0; i < m; i++) {
			struct kop k = S->kops[i];

			if (S->reduce && !S->track_versions && k.unknown &&
			    k.op->type == HISTORY_SET && k.val == VAL_UNREAD)
				continue;
			S->kops[w++] = k;
		}
		m = w;
	}
	S->m = m;
	for (size_t i = 0; i < m; i++) {
		S->kops[i].z1 = mix64(2 * i + 1);
		S->kops[i].z2 = mix64(2 * i + 2);
	}

	for (S->req_leaves = 1; S->req_leaves < m; S->req_leaves *= 2)
		;
	S->req_tree = teems_malloc(2 * S->req_leaves * sizeof(*S->req_tree));
	if (S->req_tree == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < 2 * S->req_leaves; i++)
		S->req_tree[i] = NO_REQ;
	for (size_t i = 0; i < m; i++) {
		struct kop *k = &S->kops[i];
		const struct history_op *op = k->op;

		k->req = NO_REQ;
		if (k->unknown)
			continue;
		if (op->type == HISTORY_CAS)
			k->req = op->result.cas_ok ? op->expected_version : op->result.version;
		else if (k->check_version && op->type == HISTORY_GET)
			k->req = op->result.version;
		else if (k->check_version)
			k->req = op->result.version > 0 ? op->result.version - 1 : 0;
		S->req_tree[S->req_leaves + i] = k->req;
	}
	for (size_t t = S->req_leaves - 1; t >= 1; t--)
		S->req_tree[t] = S->req_tree[2 * t] < S->req_tree[2 * t + 1]
					 ? S->req_tree[2 * t]
					 : S->req_tree[2 * t + 1];

	if (S->reduce && S->track_versions && hide_unobservable(S) != 0)
		return TEEMS_ENOMEM;

	/* Classes of unknown ops with the same effect in every state: both CAS with the same
	 * expected version, or both SET or DEL, and the same value id written. If a
	 * linearization places q where an earlier-invoked p of q's class was still pending, then
	 * swapping them (p there, q at p's place, or nowhere if p was nowhere) gives one too, since
	 * neither has a return time to respect: linearizing each class in invocation order loses
	 * nothing, and turns the 2^k subsets of k equivalent pending ops into k + 1 counts. (With
	 * versions, the unread SETs are the common case: one class per key.) */
	{
		struct ukey *u = teems_malloc((m ? m : 1) * sizeof(*u));

		S->ukeys = u;
		S->cls_done = teems_calloc(m ? m : 1, sizeof(*S->cls_done));
		S->cls_start = teems_malloc((m + 1) * sizeof(*S->cls_start));
		if (u == NULL || S->cls_done == NULL || S->cls_start == NULL)
			return TEEMS_ENOMEM;
		for (size_t i = 0; i < m; i++) {
			const struct kop *k = &S->kops[i];

			if (k->unknown)
				u[nu++] = (struct ukey){
					k->op->type == HISTORY_CAS, k->val,
					k->op->type == HISTORY_CAS ? k->op->expected_version : 0,
					(uint32_t)i};
		}
		qsort(u, nu, sizeof(*u), cmp_ukey);
		for (size_t i = 0; i < nu; i++) {
			struct kop *k = &S->kops[u[i].kop];

			if (i > 0 && cmp_ukey_class(&u[i - 1], &u[i]) == 0) {
				k->cls = S->kops[u[i - 1].kop].cls;
				k->rank = S->kops[u[i - 1].kop].rank + 1;
			} else {
				S->cls_start[ncls] = (uint32_t)i;
				k->cls = (int32_t)ncls++;
				k->rank = 0;
			}
		}
		S->cls_start[ncls] = (uint32_t)nu;
		S->n_ukeys = nu;
		S->unread_cls = find_class(S, false, VAL_UNREAD, 0);
	}

	S->obs = teems_malloc((m ? m : 1) * sizeof(*S->obs));
	S->read_unversioned = teems_calloc(S->n_reads + VAL_FIRST_READ, sizeof(bool));
	if (S->obs == NULL || S->read_unversioned == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < m; i++) {
		const struct kop *k = &S->kops[i];

		if (k->unknown || k->op->type != HISTORY_GET)
			continue;
		if (k->check_version)
			S->obs[S->n_obs++] = (struct obs){k->val, k->op->result.version};
		else
			S->read_unversioned[k->val] = true;
	}
	qsort(S->obs, S->n_obs, sizeof(*S->obs), cmp_obs);

	nev = 2 * m;
	S->ev = teems_malloc((nev + 1) * sizeof(*S->ev));
	S->next = teems_malloc((nev + 1) * sizeof(*S->next));
	S->prev = teems_malloc((nev + 1) * sizeof(*S->prev));
	S->match = teems_malloc((nev + 1) * sizeof(*S->match));
	S->stack = teems_malloc((m + 1) * sizeof(*S->stack));
	S->best = teems_malloc((m + 1) * sizeof(*S->best));
	if (S->ev == NULL || S->next == NULL || S->prev == NULL || S->match == NULL ||
	    S->stack == NULL || S->best == NULL || cache_grow(S) != 0)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < m; i++) {
		S->ev[2 * i] = (struct event){S->kops[i].invoke, (uint32_t)i, false};
		S->ev[2 * i + 1] = (struct event){S->kops[i].ret, (uint32_t)i, true};
	}
	qsort(S->ev, nev, sizeof(*S->ev), cmp_event);
	{
		uint32_t *call_of = S->call_ev = teems_malloc((m + 1) * sizeof(*S->call_ev));

		if (call_of == NULL)
			return TEEMS_ENOMEM;

		for (size_t i = 0; i < nev; i++)
			if (!S->ev[i].is_return)
				call_of[S->ev[i].kop] = (uint32_t)i;
		for (size_t i = 0; i < nev; i++)
			if (S->ev[i].is_return)
				S->match[call_of[S->ev[i].kop]] = (uint32_t)i;
	}
	for (size_t i = 0; i <= nev; i++) {
		S->next[i] = (uint32_t)((i + 1) % (nev + 1));
		S->prev[i] = (uint32_t)((i + nev) % (nev + 1));
	}
	return 0;
}

/* ---- Explanations ---- */

static void explain_state(const struct search *S, struct history_str *s, struct mstate st)
{
	if (st.val == VAL_ABSENT) {
		history_str_printf(s, "absent");
	} else if (st.val == VAL_UNREAD) {
		history_str_printf(s, "a value that no GET returned");
	} else {
		history_str_printf(s, "value ");
		history_str_bytes(s, S->reads[st.val - VAL_FIRST_READ], EXPLAIN_BYTES);
	}
	if (S->track_versions)
		history_str_printf(s, ", version %" PRIu64, st.ver);
	else
		history_str_printf(s, " (no versions recorded for this key)");
}

static void explain_op(struct history_str *s, const char *label, const struct kop *k)
{
	history_str_printf(s, "  %s", label);
	history_str_op(s, k->op, EXPLAIN_BYTES);
	history_str_printf(s, "\n");
}

/* One op that could come next after the longest prefix, and why it does not. */
static void explain_candidate(const struct search *S, struct history_str *s, const struct kop *k,
			      const bool *placed)
{
	struct mstate ns;
	const char *why = model_step(S, k, S->best_state, &ns);

	explain_op(s, "", k);
	if (why != NULL) {
		history_str_printf(s, "    %s\n", why);
		return;
	}
	for (size_t i = 0; i < S->m; i++) {
		const struct kop *o = &S->kops[i];

		if (!placed[i] && o != k && o->req != NO_REQ && o->req < ns.ver) {
			history_str_printf(s,
					   "    fits here, but then this op could never be placed "
					   "(it needs version %" PRIu64 "):\n",
					   o->req);
			explain_op(s, "    ", o);
			return;
		}
	}
	history_str_printf(s, "    fits here%s, but nothing after it can be placed\n",
			   k->unknown ? " (it or an equivalent unknown write)" : "");
}

static void explain_violation(const struct search *S, struct history_str *s)
{
	bool *placed = teems_calloc(S->m ? S->m : 1, sizeof(*placed));
	const struct kop *blocking = NULL;
	size_t shown = 0, from;

	if (placed == NULL) {
		s->err = TEEMS_ENOMEM;
		return;
	}
	for (size_t i = 0; i < S->best_len; i++)
		placed[S->best[i]] = true;
	for (size_t i = 0; i < S->m; i++)
		if (!placed[i] && !S->kops[i].unknown &&
		    (blocking == NULL || S->kops[i].ret < blocking->ret))
			blocking = &S->kops[i];

	history_str_printf(s, "longest linearizable prefix: %zu of the key's %zu ops (%zu ok)\n",
			   S->best_len, S->m, S->n_ok);
	from = S->best_len > EXPLAIN_PREFIX ? S->best_len - EXPLAIN_PREFIX : 0;
	if (from > 0)
		history_str_printf(s, "  ... %zu earlier ops\n", from);
	for (size_t i = from; i < S->best_len; i++) {
		char label[32];

		snprintf(label, sizeof(label), "%zu. ", i + 1);
		explain_op(s, label, &S->kops[S->best[i]]);
	}
	history_str_printf(s, "state after it: ");
	explain_state(S, s, S->best_state);
	history_str_printf(s, "\n");
	if (blocking == NULL) {
		teems_free(placed);
		return;
	}
	history_str_printf(s, "could not place (it returned before anything else pending):\n");
	explain_candidate(S, s, blocking, placed);
	for (size_t i = 0; i < S->m; i++) {
		const struct kop *k = &S->kops[i];

		if (placed[i] || k == blocking || k->invoke > blocking->ret)
			continue;
		if (shown == 0)
			history_str_printf(s, "other candidates at that point:\n");
		if (shown++ == EXPLAIN_CANDIDATES) {
			history_str_printf(s, "  ...\n");
			break;
		}
		explain_candidate(S, s, k, placed);
	}
	teems_free(placed);
}

/* Checks one key; fills res for VIOLATION and UNKNOWN. Returns the verdict or TEEMS_ENOMEM. */
static int check_key(const struct history_op *const *ops, size_t n, uint64_t budget, bool reduce,
		     struct lincheck_result *res)
{
	struct search S;
	struct history_str s = {0};
	int rv = search_init(&S, ops, n, budget, reduce);

	if (rv == 0)
		rv = search_run(&S);
	res->states += S.states;
	if (S.states > res->max_key_states)
		res->max_key_states = S.states;
	if (rv == LINCHECK_VIOLATION || rv == LINCHECK_UNKNOWN) {
		history_str_printf(&s, "key ");
		history_str_bytes(&s, ops[0]->key, EXPLAIN_BYTES);
		if (rv == LINCHECK_UNKNOWN)
			history_str_printf(&s,
					   ": search budget of %" PRIu64
					   " states exceeded (%zu ops on the key)\n",
					   budget, S.m);
		else
			history_str_printf(&s, ": no linearization exists\n");
		if (rv == LINCHECK_VIOLATION)
			explain_violation(&S, &s);
		if (s.err != 0 || set_key(res, ops[0]->key) != 0) {
			history_str_free(&s);
			rv = TEEMS_ENOMEM;
		} else {
			res->explanation = s.data;
		}
	}
	search_free(&S);
	return rv;
}

/* All ops of h sorted by (key, invocation), and the number of distinct keys. */
static int sort_by_key(const struct history *h, const struct history_op ***out, size_t *keys)
{
	const struct history_op **v = teems_malloc((h->n ? h->n : 1) * sizeof(*v));

	*out = v;
	*keys = 0;
	if (v == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < h->n; i++)
		v[i] = &h->ops[i];
	qsort(v, h->n, sizeof(*v), cmp_op_key_time);
	for (size_t i = 0; i < h->n; i++)
		*keys += i == 0 || bytes_cmp(v[i]->key, v[i - 1]->key) != 0;
	return 0;
}

int lincheck_check(const struct history *h, const struct lincheck_options *opt,
		   struct lincheck_result *res, char *errbuf)
{
	uint64_t budget = opt && opt->max_states_per_key ? opt->max_states_per_key
							 : LINCHECK_DEFAULT_MAX_STATES;
	const struct history_op **v;
	size_t i, j;
	int rv;

	memset(res, 0, sizeof(*res));
	rv = history_validate(h, errbuf);
	if (rv != 0)
		return rv;
	rv = sort_by_key(h, &v, &res->keys);
	if (rv != 0)
		goto nomem;
	res->ops = h->n;
	for (i = 0; i < h->n; i = j) {
		struct lincheck_result kr = {0};

		for (j = i + 1; j < h->n && bytes_cmp(v[j]->key, v[i]->key) == 0; j++)
			;
		rv = check_key(v + i, j - i, budget, !(opt && opt->no_reductions), &kr);
		res->states += kr.states;
		if (kr.max_key_states > res->max_key_states)
			res->max_key_states = kr.max_key_states;
		if (rv < 0) {
			lincheck_result_free(&kr);
			goto nomem;
		}
		/* A violation wins over an exceeded budget; the first of either is reported. */
		if (rv == LINCHECK_VIOLATION ||
		    (rv == LINCHECK_UNKNOWN && res->verdict == LINCHECK_OK)) {
			teems_free((void *)res->key.data);
			teems_free(res->explanation);
			res->verdict = (enum lincheck_verdict)rv;
			res->key = kr.key;
			res->explanation = kr.explanation;
		} else {
			lincheck_result_free(&kr);
		}
		if (rv == LINCHECK_VIOLATION)
			break;
	}
	teems_free(v);
	return 0;

nomem:
	teems_free(v);
	lincheck_result_free(res);
	return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory checking linearizability");
}

/* ---- Monotonic reads ---- */

static int cmp_op_client_key_time(const void *a, const void *b)
{
	const struct history_op *x = *(const struct history_op *const *)a;
	const struct history_op *y = *(const struct history_op *const *)b;
	int c;

	if (x->client != y->client)
		return x->client < y->client ? -1 : 1;
	c = bytes_cmp(x->key, y->key);
	if (c != 0)
		return c;
	if (x->invoke != y->invoke)
		return x->invoke < y->invoke ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int cmp_op_key_value(const void *a, const void *b)
{
	const struct history_op *x = *(const struct history_op *const *)a;
	const struct history_op *y = *(const struct history_op *const *)b;
	int c = bytes_cmp(x->key, y->key);

	return c != 0 ? c : bytes_cmp(x->value, y->value);
}

static int cmp_op_key(const void *a, const void *b)
{
	const struct history_op *x = *(const struct history_op *const *)a;
	const struct history_op *y = *(const struct history_op *const *)b;

	return bytes_cmp(x->key, y->key);
}

/* Ops that may have written op->value to op->key: SET, and CAS unless it reported failure. */
static bool op_may_write_value(const struct history_op *op)
{
	if (op->outcome == HISTORY_FAIL)
		return false;
	if (op->type == HISTORY_SET)
		return true;
	return op->type == HISTORY_CAS && (op->outcome == HISTORY_UNKNOWN || op->result.cas_ok);
}

/* The only op that may have written read->result.value to its key, or NULL if none or several. */
static const struct history_op *writer_of(const struct history_op *read,
					  const struct history_op **writes, size_t n)
{
	struct history_op probe = {.key = read->key, .value = read->result.value};
	const struct history_op *pp = &probe;
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cmp_op_key_value(&writes[mid], &pp) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == n || cmp_op_key_value(&writes[lo], &pp) != 0)
		return NULL;
	if (lo + 1 < n && cmp_op_key_value(&writes[lo + 1], &pp) == 0)
		return NULL;
	return writes[lo];
}

static int monotonic_violation(struct lincheck_result *res, const struct history_op *earlier,
			       const struct history_op *later, const char *why,
			       const struct history_op *w_earlier, const struct history_op *w_later)
{
	struct history_str s = {0};

	history_str_printf(&s, "key ");
	history_str_bytes(&s, later->key, EXPLAIN_BYTES);
	history_str_printf(&s, ": client %" PRIu64 " reads go backwards (%s)\n  earlier: ",
			   later->client, why);
	history_str_op(&s, earlier, EXPLAIN_BYTES);
	history_str_printf(&s, "\n  later:   ");
	history_str_op(&s, later, EXPLAIN_BYTES);
	history_str_printf(&s, "\n");
	if (w_earlier != NULL) {
		history_str_printf(&s, "  the earlier read's value was written by: ");
		history_str_op(&s, w_earlier, EXPLAIN_BYTES);
		history_str_printf(&s, "\n");
	}
	if (w_later != NULL) {
		history_str_printf(&s, "  the later read's value was written by:   ");
		history_str_op(&s, w_later, EXPLAIN_BYTES);
		history_str_printf(&s, "\n");
	}
	if (s.err != 0 || set_key(res, later->key) != 0) {
		history_str_free(&s);
		return TEEMS_ENOMEM;
	}
	res->explanation = s.data;
	res->verdict = LINCHECK_VIOLATION;
	return 0;
}

int lincheck_monotonic_reads(const struct history *h, struct lincheck_result *res, char *errbuf)
{
	const struct history_op **reads = NULL, **writes = NULL, **dels = NULL, **all = NULL;
	size_t nr = 0, nw = 0, nd = 0, i, j;
	int rv;

	memset(res, 0, sizeof(*res));
	rv = history_validate(h, errbuf);
	if (rv != 0)
		return rv;
	if (sort_by_key(h, &all, &res->keys) != 0)
		goto nomem;
	res->ops = h->n;
	reads = teems_malloc((h->n ? h->n : 1) * sizeof(*reads));
	writes = teems_malloc((h->n ? h->n : 1) * sizeof(*writes));
	dels = teems_malloc((h->n ? h->n : 1) * sizeof(*dels));
	if (reads == NULL || writes == NULL || dels == NULL)
		goto nomem;
	for (i = 0; i < h->n; i++) {
		const struct history_op *op = &h->ops[i];

		if (op->type == HISTORY_GET && op->outcome == HISTORY_OK)
			reads[nr++] = op;
		else if (op_may_write_value(op))
			writes[nw++] = op;
		else if (op->type == HISTORY_DEL && op->outcome != HISTORY_FAIL)
			dels[nd++] = op;
	}
	qsort(reads, nr, sizeof(*reads), cmp_op_client_key_time);
	qsort(writes, nw, sizeof(*writes), cmp_op_key_value);
	qsort(dels, nd, sizeof(*dels), cmp_op_key);

	for (i = 0; i < nr && res->verdict == LINCHECK_OK; i = j) {
		const struct history_op *max_ver_read = NULL, *max_w_read = NULL, *max_w = NULL;
		bool has_del = false;

		for (j = i + 1; j < nr && reads[j]->client == reads[i]->client &&
				bytes_cmp(reads[j]->key, reads[i]->key) == 0;
		     j++)
			;
		{
			const struct history_op *const *d =
				nd ? bsearch(&reads[i], dels, nd, sizeof(*dels), cmp_op_key) : NULL;

			has_del = d != NULL;
		}
		for (size_t k = i; k < j; k++) {
			const struct history_op *r = reads[k], *w = NULL;
			bool initial = false;

			if (r->result.version_known && max_ver_read != NULL &&
			    r->result.version < max_ver_read->result.version) {
				rv = monotonic_violation(res, max_ver_read, r, "version decreases",
							 NULL, NULL);
				break;
			}
			if (r->result.found)
				w = writer_of(r, writes, nw);
			else
				initial = !has_del;
			if (w != NULL && max_w != NULL && w->outcome == HISTORY_OK &&
			    w->complete < max_w->invoke) {
				rv = monotonic_violation(
					res, max_w_read, r,
					"its value's write completed before the earlier value's "
					"write was invoked",
					max_w, w);
				break;
			}
			if (initial && max_w != NULL) {
				rv = monotonic_violation(res, max_w_read, r,
							 "sees the initial state after a write",
							 max_w, NULL);
				break;
			}
			if (r->result.version_known &&
			    (max_ver_read == NULL ||
			     r->result.version > max_ver_read->result.version))
				max_ver_read = r;
			if (w != NULL && (max_w == NULL || w->invoke > max_w->invoke)) {
				max_w = w;
				max_w_read = r;
			}
		}
		if (rv != 0)
			goto nomem;
	}
	teems_free(all);
	teems_free(reads);
	teems_free(writes);
	teems_free(dels);
	return 0;

nomem:
	teems_free(all);
	teems_free(reads);
	teems_free(writes);
	teems_free(dels);
	lincheck_result_free(res);
	return teems_errf(errbuf, TEEMS_ENOMEM, "out of memory checking monotonic reads");
}
