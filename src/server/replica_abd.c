/* engine = abd: the RR-ABD data plane of the replica engine (replica_abd.h; the simulator's
 * shell, tests/sim/sim_abd.c, is the model this follows step for step). */
#include "server/replica_abd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "core/abd.h"
#include "core/abd_lease.h"
#include "core/quorum.h"
#include "server/replica_internal.h"
#include "teems/err.h"

#define ABD_RETRY_NS (10 * RP_MS) /* a refused request (not fresh, no lease, busy) again */
#define ABD_MAX_REPLICAS QUORUM_MAX_REPLICAS

#define ERR_UNKNOWN                                                                            \
	"ERR teems: outcome unknown (the write was not confirmed within T_op): it may or may " \
	"not have been applied"

enum areq_kind {
	AREQ_GET,
	AREQ_SET,
	AREQ_DEL_READ,	/* DEL, first its read (the reply's count) */
	AREQ_DEL_WRITE, /* DEL, then the tombstone */
};

/* One client command in flight through the ABD core (request_id = this slot's id). */
struct areq {
	bool used;
	bool gone;   /* the connection closed: answer nobody */
	bool queued; /* to be handed to the core after the current step */
	uint64_t id; /* the core's request_id */
	uint64_t conn, req;
	int proto;
	enum areq_kind kind;
	bool del_found;			/* DEL: the read found a value */
	uint64_t retry_at, deadline_ns; /* hi clock */
	uint8_t *key, *value;		/* owned copies (re-sent on a refusal) */
	uint32_t key_len, value_len;
};

struct rp_abd {
	struct abd *a;
	struct abd_ready ar;
	struct store_wal *wal;
	uint8_t *buf; /* record encoding scratch */
	size_t cap_buf;
	uint64_t written_seq, appended_index, prepared_index, synced_seq;
	bool urgent;
	uint64_t last_group_sync_hi;
	uint64_t restored;
	/* the sync job (worker side: job_*) */
	bool in_job;
	uint64_t job_seq;
	int job_rc;
	char job_err[256];
	/* the glue (sim_abd.c glue()) */
	bool restarted; /* the core began restarted: abd_begin_recovery once registered+fenced */
	bool begun;	/* abd_begin_recovery called */
	bool rebound;	/* an epoch restart named this incarnation: recover again */
	bool recovered_once;
	struct msg_regidx fed[ABD_MAX_REPLICAS];
	bool fed_have[ABD_MAX_REPLICAS];
	/* the configuration lease (abd_lease.h; sim_abd.c lease_sync()) */
	struct abd_lease lease;
	uint64_t lease_until; /* hi: what ABD was given (0: none) */
	/* clients */
	struct areq *reqs;
	size_t n_reqs, cap_reqs;
	uint64_t next_id;
	bool stepping;
	uint64_t refused, unknown, retries;
	char status[1024];
};

static struct rp_abd *X(const struct replica *r)
{
	return r->abd;
}

static enum abd_sync_policy abd_sync(enum config_sync s)
{
	return s == CONFIG_SYNC_ALWAYS ? ABD_SYNC_ALWAYS
	       : s == CONFIG_SYNC_NONE ? ABD_SYNC_NONE
				       : ABD_SYNC_RR;
}

static int new_abd(struct replica *r, bool restarted, char *errbuf)
{
	struct rp_abd *x = X(r);
	struct abd_config ac;
	struct abd_lease_config lc;
	int rc;

	if (x->a != NULL) {
		abd_free(x->a);
		x->a = NULL;
	}
	abd_config_default(&ac);
	ac.quorum = r->cfg.quorum;
	ac.self = r->self;
	ac.reg = paxos_registration(r->p);
	ac.restarted = restarted;
	ac.sync = abd_sync(r->cfg.sync);
	ac.t_op_ns = r->cfg.t_op_us * 1000;
	x->restarted = restarted;
	x->begun = false;
	rc = abd_new(&x->a, &ac, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	/* A new core is a new holder and grantor: nothing counted, a fresh nonce key. */
	memset(&lc, 0, sizeof(lc));
	lc.self = r->self;
	lc.n = r->n;
	lc.w_q = quorum_write(&r->cfg.quorum);
	lc.t_cfg_ns = r->cfg.t_cfg_us * 1000;
	lc.rho_ppm = (uint32_t)(r->cfg.rho * 1e6 + 0.5);
	lc.nonce_key = r->rng ^ (r->now.lo_ns * 0x9e3779b97f4a7c15ull);
	r->rng += 0x632be59bd9b4e019ull;
	x->lease_until = 0;
	return abd_lease_init(&x->lease, &lc, errbuf);
}

/* ---- carrying out a ready (abd.h: persist, send, reply, recovered, halted) ---- */

static void queue_submit(struct replica *r, struct areq *q);
static void drain_queue(struct replica *r);

static int grow(struct rp_abd *x, size_t need)
{
	size_t ncap = x->cap_buf ? x->cap_buf : 4096;
	uint8_t *nb;

	if (need <= x->cap_buf)
		return TEEMS_OK;
	while (ncap < need)
		ncap *= 2;
	nb = teems_realloc(x->buf, ncap);
	if (nb == NULL)
		return TEEMS_ENOMEM;
	x->buf = nb;
	x->cap_buf = ncap;
	return TEEMS_OK;
}

static void persist(struct replica *r, const struct abd_persist *p)
{
	struct rp_abd *x = X(r);
	uint64_t index = 0;
	size_t len = 0;
	int rc = abd_persist_encode(p, NULL, 0, &len);

	if (rc == TEEMS_EFULL) {
		if (grow(x, len) != TEEMS_OK) {
			rp_halt(r, "engine: out of memory encoding an ABD WAL record");
			return;
		}
		rc = abd_persist_encode(p, x->buf, x->cap_buf, &len);
	}
	if (rc != TEEMS_OK) {
		rp_halt(r, "engine: abd_persist_encode refused record %" PRIu64 ": %s", p->seq,
			teems_strerror(rc));
		return;
	}
	rc = store_wal_append(x->wal, x->buf, len, &index);
	if (rc != TEEMS_OK) {
		rp_halt(r, "engine: ABD WAL append failed: %s", teems_strerror(rc));
		return;
	}
	x->appended_index = index;
	x->written_seq = p->seq;
	if (p->sync)
		x->urgent = true;
}

static struct areq *find_req(struct rp_abd *x, uint64_t id)
{
	for (size_t i = 0; i < x->n_reqs; i++)
		if (x->reqs[i].used && x->reqs[i].id == id)
			return &x->reqs[i];
	return NULL;
}

static void req_free(struct areq *q)
{
	teems_free(q->key);
	teems_free(q->value);
	memset(q, 0, sizeof(*q));
}

static void answer(struct replica *r, struct areq *q, struct resp_out *o)
{
	if (!q->gone) {
		if (o->err != TEEMS_OK) {
			static const char oom[] = "-ERR teems: out of memory\r\n";

			r->io.reply(r->io.ctx, q->conn, q->req, (const uint8_t *)oom,
				    sizeof(oom) - 1);
		} else {
			r->io.reply(r->io.ctx, q->conn, q->req, o->buf, o->len);
		}
	}
	req_free(q);
}

static void answer_error(struct replica *r, struct areq *q, const char *msg)
{
	struct resp_out o;

	resp_out_init(&o, q->proto);
	resp_add_error(&o, msg);
	answer(r, q, &o);
	resp_out_free(&o);
}

static const char *refusal_text(enum abd_refusal why)
{
	switch (why) {
	case ABD_REFUSED_NOT_FRESH:
		return "TRYAGAIN teems: this replica is recovering (engine = abd); retry later or "
		       "ask another replica";
	case ABD_REFUSED_NO_LEASE:
		return "TRYAGAIN teems: this replica holds no configuration lease yet (engine = "
		       "abd); retry later";
	case ABD_REFUSED_BUSY:
		return "TRYAGAIN teems: busy; retry later";
	case ABD_REFUSED_INVALID:
		return "ERR teems: key or value too large";
	case ABD_REFUSED_HALTED:
	default:
		return "ERR teems: this replica is stopping";
	}
}

static void on_reply(struct replica *r, const struct abd_reply *rp)
{
	struct rp_abd *x = X(r);
	struct areq *q;
	struct resp_out o;

	if (rp->client_id != r->client_id)
		return;
	q = find_req(x, rp->request_id);
	if (q == NULL)
		return;
	if (rp->outcome == ABD_OUTCOME_REFUSED) {
		x->refused++;
		/* Never started: not applied, so trying again is safe (until the deadline). */
		if (rp->reason != ABD_REFUSED_INVALID && rp->reason != ABD_REFUSED_HALTED &&
		    r->now.hi_ns < q->deadline_ns) {
			q->retry_at = r->now.hi_ns + ABD_RETRY_NS;
			x->retries++;
			return;
		}
		answer_error(r, q, refusal_text(rp->reason));
		return;
	}
	if (rp->outcome == ABD_OUTCOME_UNKNOWN) {
		x->unknown++;
		/* A read has no effect: it may simply run again. */
		if ((q->kind == AREQ_GET || q->kind == AREQ_DEL_READ) &&
		    r->now.hi_ns < q->deadline_ns) {
			q->retry_at = r->now.hi_ns + ABD_RETRY_NS;
			x->retries++;
			return;
		}
		answer_error(r, q,
			     q->kind == AREQ_GET || q->kind == AREQ_DEL_READ
				     ? "TRYAGAIN teems: the read did not complete within T_op; "
				       "retry later"
				     : ERR_UNKNOWN);
		return;
	}
	resp_out_init(&o, q->proto);
	switch (q->kind) {
	case AREQ_GET:
		if (rp->found)
			resp_add_bulk(&o, rp->value, rp->len);
		else
			resp_add_null(&o);
		break;
	case AREQ_SET:
		resp_add_simple(&o, "OK");
		break;
	case AREQ_DEL_READ:
		resp_out_free(&o);
		if (!rp->found) {
			/* Nothing to delete: Redis answers 0 and writes nothing. */
			resp_out_init(&o, q->proto);
			resp_add_int(&o, 0);
			answer(r, q, &o);
			resp_out_free(&o);
			return;
		}
		q->del_found = true;
		q->kind = AREQ_DEL_WRITE;
		queue_submit(r, q);
		return;
	case AREQ_DEL_WRITE:
		resp_add_int(&o, q->del_found ? 1 : 0);
		break;
	}
	answer(r, q, &o);
	resp_out_free(&o);
}

static void send_core(struct replica *r, uint16_t to, const struct msg *m)
{
	int rc = rp_send_msg(r, to, m);

	if (rc != TEEMS_OK)
		rp_halt(r, "engine: cannot send the ABD core's %s: %s", msg_type_name(m->type),
			teems_strerror(rc));
}

static void take_ready(struct replica *r)
{
	struct rp_abd *x = X(r);
	struct abd_ready *rd = &x->ar;

	for (size_t k = 0; k < rd->n_persist && !r->halted; k++)
		persist(r, &rd->persist[k]);
	for (size_t k = 0; k < rd->n_sends && !r->halted; k++)
		send_core(r, rd->sends[k].to, &rd->sends[k].msg);
	for (size_t k = 0; k < rd->n_replies && !r->halted; k++)
		on_reply(r, &rd->replies[k]);
	if (r->halted)
		return;
	if (rd->recovered) {
		x->recovered_once = true;
		rp_log(r, "abd: recovered (%zu registers): fresh", abd_keys(x->a));
	}
	if (rd->halted)
		/* The control plane decides (glue): an epoch restart may name this incarnation,
		 * or its Paxos core halts too once it sees the newer registration. */
		rp_log(r, "abd: halted (a newer registration of replica %u seen)", r->self);
	if (x->urgent || (r->cfg.sync == CONFIG_SYNC_ALWAYS && rp_abd_sync_wanted(r)))
		r->io.want_sync(r->io.ctx);
}

static void astep(struct replica *r, struct abd_input *in)
{
	struct rp_abd *x = X(r);
	int rc;

	if (r->halted)
		return;
	rp_read_clock(r);
	in->now.lo_ns = r->now.lo_ns;
	in->now.hi_ns = r->now.hi_ns;
	in->now.epoch = r->now.epoch;
	x->stepping = true;
	rc = abd_step(x->a, in, &x->ar);
	if (rc == TEEMS_ENOMEM) {
		x->stepping = false;
		rp_halt(r, "engine: out of memory in the ABD core");
		return;
	}
	take_ready(r);
	x->stepping = false;
	drain_queue(r);
}

static void apoke(struct replica *r)
{
	struct abd_input in;

	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_TICK;
	in.tick.random = r->rng ^ (r->now.lo_ns * 0x9e3779b97f4a7c15ull);
	r->rng += 0x632be59bd9b4e019ull;
	astep(r, &in);
}

/* ---- client requests ---- */

static void submit(struct replica *r, struct areq *q)
{
	struct abd_input in;

	q->queued = false;
	q->retry_at = 0;
	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_REQUEST;
	in.request.client_id = r->client_id;
	in.request.request_id = q->id;
	in.request.op = q->kind == AREQ_SET	    ? ABD_SET
			: q->kind == AREQ_DEL_WRITE ? ABD_DEL
						    : ABD_GET;
	in.request.key = q->key;
	in.request.key_len = q->key_len;
	in.request.value = q->value;
	in.request.value_len = q->kind == AREQ_SET ? q->value_len : 0;
	astep(r, &in);
}

/* Hands q to the core now, or after the step being carried out (the ready is reused). */
static void queue_submit(struct replica *r, struct areq *q)
{
	if (X(r)->stepping) {
		q->queued = true;
		return;
	}
	submit(r, q);
}

static void drain_queue(struct replica *r)
{
	struct rp_abd *x = X(r);
	bool again = true;

	while (again && !r->halted && !x->stepping) {
		again = false;
		for (size_t i = 0; i < x->n_reqs && !r->halted; i++) {
			if (x->reqs[i].used && x->reqs[i].queued) {
				submit(r, &x->reqs[i]);
				again = true;
			}
		}
	}
}

static void retry_due(struct replica *r)
{
	struct rp_abd *x = X(r);

	for (size_t i = 0; i < x->n_reqs && !r->halted; i++) {
		struct areq *q = &x->reqs[i];

		if (!q->used || q->retry_at == 0)
			continue;
		if (q->gone) /* not started (refused) and nobody waits: drop it */
			req_free(q);
		else if (q->retry_at <= r->now.hi_ns)
			queue_submit(r, q);
	}
}

static struct areq *req_new(struct replica *r)
{
	struct rp_abd *x = X(r);

	for (size_t i = 0; i < x->n_reqs; i++)
		if (!x->reqs[i].used)
			return &x->reqs[i];
	if (x->n_reqs == x->cap_reqs) {
		size_t ncap = x->cap_reqs ? 2 * x->cap_reqs : 64;
		struct areq *nr = teems_realloc(x->reqs, ncap * sizeof(*nr));

		if (nr == NULL)
			return NULL;
		memset(nr + x->cap_reqs, 0, (ncap - x->cap_reqs) * sizeof(*nr));
		x->reqs = nr;
		x->cap_reqs = ncap;
	}
	return &x->reqs[x->n_reqs++];
}

static void reply_error(struct replica *r, uint64_t conn, uint64_t req, int proto, const char *msg)
{
	struct resp_out o;

	resp_out_init(&o, proto);
	resp_add_error(&o, msg);
	if (o.err == TEEMS_OK)
		r->io.reply(r->io.ctx, conn, req, o.buf, o.len);
	resp_out_free(&o);
}

static void not_supported(struct replica *r, uint64_t conn, uint64_t req, int proto,
			  const char *name, const char *what)
{
	char err[CMD_ERR_LEN];

	snprintf(err, sizeof(err), "ERR '%s'%s is not supported with engine = abd", name, what);
	reply_error(r, conn, req, proto, err);
}

static uint8_t *dup_bytes(const uint8_t *p, size_t len)
{
	uint8_t *d = teems_malloc(len ? len : 1);

	if (d != NULL && len > 0)
		memcpy(d, p, len);
	return d;
}

/* What ABD serves (docs/ABD.md): one register per key, read and overwritten; a delete is a
 * tombstone. It cannot do what needs the current value and a write in one atomic step (INCR,
 * SET NX/XX/GET, VSET's compare-and-set, leases), several keys at once (MSET, MGET, DEL of
 * several keys, EXISTS of several), expiry (the register has no clock), or a scan (no ordered
 * view of the whole map across replicas). Users and policies live in the Paxos state machine,
 * which commits no client command here: their writes are refused, and with no user ever
 * created every connection acts as "default".
 *
 * DEL key answers Redis's count from a read of the key just before its tombstone is written
 * (a key found absent is not written at all, and answers 0): the delete itself is
 * linearizable, the count is not atomic with it (a concurrent SET between the two may make
 * it 1 for a value the reader never saw, or the read's value may be overwritten before the
 * tombstone lands; either way the key is absent afterwards). */
bool rp_abd_client(struct replica *r, uint64_t conn, uint64_t req, const char *user,
		   const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc, int proto)
{
	struct rp_abd *x = X(r);
	enum areq_kind kind;
	struct areq *q;

	switch (spec->id) {
	case CMD_AUTH:
	case CMD_ACL_LIST:
	case CMD_ACL_GETUSER:
	case CMD_ACL_WHOAMI:
		return false;
	case CMD_GET:
		kind = AREQ_GET;
		break;
	case CMD_SET:
		if (argc != 3) {
			not_supported(r, conn, req, proto, "set",
				      " with options (NX, XX, GET, EX, PX, EXAT, PXAT, KEEPTTL)");
			return true;
		}
		kind = AREQ_SET;
		break;
	case CMD_DEL:
		if (argc != 2) {
			not_supported(r, conn, req, proto, "del", " with several keys");
			return true;
		}
		kind = AREQ_DEL_READ;
		break;
	default:
		if (!(spec->flags & (CMD_F_READ | CMD_F_WRITE)))
			return false;
		not_supported(r, conn, req, proto, spec->name, "");
		return true;
	}
	if ((strcmp(user, KV_USER_ANON) != 0 && strcmp(user, "default") != 0) ||
	    !kv_acl_default_open(r->kv)) {
		/* Only "default" (on, nopass, every key) can act: ACL SETUSER is refused above,
		 * and key patterns and policies are checked only by the Paxos state machine (a
		 * data directory of the paxos engine may hold other users). Never serve data past
		 * them. */
		reply_error(r, conn, req, proto,
			    "NOPERM teems: users and key permissions are not enforced with engine "
			    "= abd");
		return true;
	}
	if (argv[1].len > MSG_MAX_KEY || (kind == AREQ_SET && argv[2].len > MSG_MAX_VALUE)) {
		reply_error(r, conn, req, proto, "ERR teems: key or value too large");
		return true;
	}
	q = req_new(r);
	if (q == NULL)
		goto oom;
	q->key = dup_bytes(argv[1].p, argv[1].len);
	q->value = kind == AREQ_SET ? dup_bytes(argv[2].p, argv[2].len) : NULL;
	if (q->key == NULL || (kind == AREQ_SET && q->value == NULL)) {
		teems_free(q->key);
		teems_free(q->value);
		q->key = q->value = NULL;
		goto oom;
	}
	q->used = true;
	q->id = ++x->next_id;
	q->conn = conn;
	q->req = req;
	q->proto = proto;
	q->kind = kind;
	q->key_len = (uint32_t)argv[1].len;
	q->value_len = kind == AREQ_SET ? (uint32_t)argv[2].len : 0;
	rp_read_clock(r);
	q->deadline_ns = r->now.hi_ns + RP_NO_LEADER_NS;
	queue_submit(r, q);
	return true;
oom:
	reply_error(r, conn, req, proto, "ERR teems: out of memory");
	return true;
}

void rp_abd_client_gone(struct replica *r, uint64_t conn)
{
	struct rp_abd *x = X(r);

	if (x == NULL)
		return;
	for (size_t i = 0; i < x->n_reqs; i++)
		if (x->reqs[i].used && x->reqs[i].conn == conn)
			x->reqs[i].gone = true;
}

/* ---- the glue between the two cores (sim_abd.c glue()) ---- */

static bool fresh(const struct replica *r)
{
	const struct rp_abd *x = X(r);

	return paxos_lifecycle(r->p) == PAXOS_LC_FRESH && !abd_suspicious(x->a) &&
	       !abd_recovering(x->a) && !abd_halted(x->a);
}

static void glue_cores(struct replica *r)
{
	struct rp_abd *x = X(r);
	enum paxos_lifecycle lc;
	struct msg_incarnation regs[ABD_MAX_REPLICAS];
	size_t n = 0;
	bool changed = false, poke = false;
	char errbuf[TEEMS_ERRBUF_LEN];

	if (r->halted || r->genesis.pending)
		return;
	/* The genesis check decided that this empty directory is not a first start: the Paxos
	 * core was replaced by a restarted one (replica_genesis.c); so is the data plane (its
	 * WAL is empty, or it would have restored restarted). */
	if (!x->restarted && !r->first_boot) {
		if (new_abd(r, true, errbuf) != TEEMS_OK) {
			rp_halt(r, "engine: %s", errbuf);
			return;
		}
		memset(x->fed_have, 0, sizeof(x->fed_have));
	}
	lc = paxos_lifecycle(r->p);
	/* Epoch restart: the control plane installed a new epoch that names this incarnation. */
	if ((!x->restarted || x->begun) && paxos_registered(r->p) && lc != PAXOS_LC_HALTED) {
		struct msg_regidx preg = paxos_registration(r->p);
		struct msg_regidx areg = abd_registration(x->a);

		if (preg.epoch > areg.epoch && msg_regidx_cmp(&preg, &areg) > 0) {
			if (abd_set_registration(x->a, preg) != TEEMS_OK) {
				rp_halt(r, "abd: superseded by a newer incarnation of replica %u",
					r->self);
				return;
			}
			rp_log(r,
			       "abd: continues at registration %" PRIu64 ".%" PRIu64
			       " after an epoch restart",
			       preg.epoch, preg.slot);
			x->begun = false;
			x->rebound = true;
			poke = true;
		}
	}
	/* The registration vector, fed again whenever it differs from what ABD last got. */
	for (uint16_t i = 0; i < r->n && i < ABD_MAX_REPLICAS; i++) {
		struct msg_regidx ri;
		uint8_t key[MSG_PUBLIC_KEY_SIZE];

		if (!paxos_config_registration(r->p, i, &ri, key))
			continue;
		regs[n].replica = i;
		regs[n].reg = ri;
		n++;
		if (!x->fed_have[i] || msg_regidx_cmp(&ri, &x->fed[i]) != 0)
			changed = true;
		x->fed[i] = ri;
		x->fed_have[i] = true;
	}
	if (changed && n > 0) {
		if (abd_set_config(x->a, regs, n) != TEEMS_OK) {
			rp_halt(r, "engine: abd_set_config refused the registration vector");
			return;
		}
		poke = true;
	}
	if (abd_halted(x->a)) {
		if (paxos_halted(r->p))
			rp_halt(r,
				"a newer incarnation of replica %u is registered: this one stops",
				r->self);
		return;
	}
	if ((x->restarted || x->rebound) && !x->begun && paxos_registered(r->p) &&
	    (lc == PAXOS_LC_RECOVERING || lc == PAXOS_LC_FRESH)) {
		struct msg_regidx reg = paxos_registration(r->p);

		x->begun = true;
		if (abd_begin_recovery(x->a, reg) == TEEMS_OK) {
			rp_log(r, "abd: registered %" PRIu64 ".%" PRIu64 " and fenced: recovering",
			       reg.epoch, reg.slot);
			poke = true;
		}
	}
	if (poke)
		apoke(r);
}

/* ---- the configuration lease (abd_lease.h; the simulator's lease_sync() and
 * lease_message()) ---- */

static struct lease_time lease_now(struct replica *r)
{
	struct lease_time t;

	rp_read_clock(r);
	t.lo_ns = r->now.lo_ns;
	t.hi_ns = r->now.hi_ns;
	t.epoch = r->now.epoch;
	return t;
}

/* A grantor grants nothing unless fresh in both planes, with no restart promised (an answer
 * makes the Paxos core suspicious) and not halted: the fence of section 4. */
static void lease_configure(struct replica *r)
{
	struct rp_abd *x = X(r);
	struct msg_incarnation regs[ABD_MAX_REPLICAS], self;
	size_t n = 0;

	for (uint16_t i = 0; i < r->n && i < ABD_MAX_REPLICAS; i++) {
		if (!x->fed_have[i])
			continue;
		regs[n].replica = i;
		regs[n].reg = x->fed[i];
		n++;
	}
	self.replica = r->self;
	self.reg = abd_registration(x->a);
	abd_lease_configure(&x->lease, abd_lease_index(paxos_config_applied_index(r->p)),
			    abd_lease_index(paxos_config_accepted_index(r->p)), self, regs, n,
			    !fresh(r) || paxos_suspicious(r->p) || paxos_halted(r->p));
}

/* Every time: the core also drops its copy by itself (a taint, abd_set_registration), so no
 * cached value is trusted. */
static void lease_push(struct replica *r, struct lease_time now)
{
	struct rp_abd *x = X(r);

	x->lease_until = abd_lease_valid_until(&x->lease, now);
	abd_set_lease(x->a, x->lease_until);
}

/* After every Paxos step and tick: configure, renew when due (to every peer), hand the result
 * to the ABD core. */
static void lease_sync(struct replica *r)
{
	struct rp_abd *x = X(r);
	struct lease_time now = lease_now(r);

	lease_configure(r);
	if (!abd_halted(x->a) && abd_lease_renew_due(&x->lease, now)) {
		struct msg m;

		abd_lease_renew(&x->lease, now, &m);
		for (uint16_t to = 0; to < r->n && !r->halted; to++)
			if (to != r->self)
				send_core(r, to, &m);
	}
	lease_push(r, now);
}

static void lease_message(struct replica *r, const struct msg *m)
{
	struct rp_abd *x = X(r);
	struct lease_time now;
	struct msg reply;

	if (m->type == MSG_LEASE_RENEW) {
		lease_configure(r); /* the ABD plane may have moved since the last glue */
		if (abd_lease_on_renew(&x->lease, m, &reply))
			send_core(r, m->from.replica, &reply);
		return;
	}
	now = lease_now(r);
	(void)abd_lease_on_reply(&x->lease, m, now);
	lease_push(r, now);
}

static void glue(struct replica *r)
{
	glue_cores(r);
	if (!r->halted && !r->genesis.pending)
		lease_sync(r);
}

bool rp_abd_frame(struct replica *r, const struct msg *m)
{
	struct abd_input in;

	if (m->type == MSG_LEASE_RENEW || m->type == MSG_LEASE_REPLY) {
		if (!r->halted)
			lease_message(r, m);
		return true;
	}
	if (m->type < MSG_ABD_QUERY || m->type > MSG_ABD_RANGE_REPLY)
		return false;
	memset(&in, 0, sizeof(in));
	in.type = ABD_IN_MESSAGE;
	in.message = m;
	astep(r, &in);
	return true;
}

void rp_abd_after_paxos(struct replica *r, const struct msg *m)
{
	if (r->halted || r->genesis.pending)
		return;
	(void)m;
	glue(r);
}

void rp_abd_tick(struct replica *r)
{
	struct rp_abd *x = X(r);

	if (r->halted || r->genesis.pending)
		return;
	glue(r);
	if (r->halted)
		return;
	apoke(r);
	retry_due(r);
	drain_queue(r);
	if (r->halted)
		return;
	if (r->cfg.sync == CONFIG_SYNC_RR &&
	    r->now.hi_ns - x->last_group_sync_hi >= RP_GROUP_SYNC_NS) {
		x->last_group_sync_hi = r->now.hi_ns;
		if (rp_abd_sync_wanted(r))
			r->io.want_sync(r->io.ctx);
	}
}

/* ---- the fsync job ---- */

bool rp_abd_sync_wanted(const struct replica *r)
{
	const struct rp_abd *x = X(r);

	return x != NULL && x->wal != NULL && x->appended_index > x->prepared_index;
}

void rp_abd_sync_prepare(struct replica *r)
{
	struct rp_abd *x = X(r);
	uint64_t upto = 0;
	int rc;

	x->in_job = false;
	x->job_rc = TEEMS_OK;
	x->job_err[0] = '\0';
	if (x->wal == NULL || x->appended_index == x->prepared_index)
		return;
	rc = store_wal_sync_prepare(x->wal, &upto);
	if (rc != TEEMS_OK) {
		if (rc != TEEMS_ENOMEM)
			rp_halt(r, "engine: ABD WAL: %s", teems_strerror(rc));
		return;
	}
	x->prepared_index = x->appended_index;
	x->job_seq = x->written_seq;
	x->urgent = false;
	x->in_job = true;
}

void rp_abd_sync_run(struct replica *r)
{
	struct rp_abd *x = X(r);

	if (x == NULL || !x->in_job)
		return;
	x->job_rc = store_wal_sync_run(x->wal, NULL, x->job_err);
}

void rp_abd_sync_done(struct replica *r)
{
	struct rp_abd *x = X(r);
	struct abd_input in;

	if (x == NULL || !x->in_job)
		return;
	x->in_job = false;
	if (r->halted)
		return;
	if (x->job_rc != TEEMS_OK) {
		rp_halt(r,
			"engine: ABD WAL fsync failed (%s): nothing is known about the file any "
			"more",
			x->job_err[0] ? x->job_err : teems_strerror(x->job_rc));
		return;
	}
	if (x->job_seq > x->synced_seq) {
		x->synced_seq = x->job_seq;
		r->stats.fsyncs++;
		memset(&in, 0, sizeof(in));
		in.type = ABD_IN_SYNCED;
		in.synced.seq = x->job_seq;
		astep(r, &in);
	}
	if (!r->halted && rp_abd_sync_wanted(r) && (x->urgent || r->cfg.sync == CONFIG_SYNC_ALWAYS))
		r->io.want_sync(r->io.ctx);
}

/* ---- status ---- */

const char *rp_abd_status(struct replica *r)
{
	struct rp_abd *x = X(r);
	const struct abd_stats *st;
	struct msg_regidx reg;
	size_t inflight = 0;

	if (x == NULL || x->a == NULL)
		return "";
	st = abd_stats(x->a);
	reg = abd_registration(x->a);
	for (size_t i = 0; i < x->n_reqs; i++)
		inflight += x->reqs[i].used;
	snprintf(x->status, sizeof(x->status),
		 "abd_state:%s\r\nabd_suspicious:%d\r\nabd_recovering:%d\r\nabd_halted:%d\r\n"
		 "abd_registration:%" PRIu64 ".%" PRIu64 "\r\nabd_lease:%d\r\nabd_keys:%zu\r\n"
		 "abd_reads:%" PRIu64 "\r\nabd_writes:%" PRIu64 "\r\nabd_reads_stable:%" PRIu64
		 "\r\nabd_reads_unanimous:%" PRIu64 "\r\nabd_reads_write_back:%" PRIu64
		 "\r\nabd_abandoned:%" PRIu64 "\r\nabd_discarded:%" PRIu64
		 "\r\nabd_ranges_fetched:%" PRIu64 "\r\nabd_items_adopted:%" PRIu64
		 "\r\nabd_inflight:%zu\r\nabd_refused:%" PRIu64 "\r\nabd_retries:%" PRIu64
		 "\r\nabd_wal_records_restored:%" PRIu64 "\r\nabd_wal_appended:%" PRIu64
		 "\r\nabd_lease_renewals:%" PRIu64 "\r\nabd_lease_grants_given:%" PRIu64
		 "\r\nabd_lease_refused_stale:%" PRIu64 "\r\nabd_lease_refused_fenced:%" PRIu64
		 "\r\n",
		 abd_halted(x->a)	? "halted"
		 : abd_recovering(x->a) ? "recovering"
		 : abd_suspicious(x->a) ? "suspicious"
					: "fresh",
		 abd_suspicious(x->a) ? 1 : 0, abd_recovering(x->a) ? 1 : 0,
		 abd_halted(x->a) ? 1 : 0, reg.epoch, reg.slot,
		 x->lease_until > r->now.hi_ns ? 1 : 0, abd_keys(x->a), st->reads, st->writes,
		 st->reads_stable, st->reads_unanimous, st->reads_write_back, st->abandoned,
		 st->discarded, st->ranges_fetched, st->items_adopted, inflight, x->refused,
		 x->retries, x->restored, x->written_seq, x->lease.stats.renewals,
		 x->lease.stats.grants_given, x->lease.stats.refused_stale,
		 x->lease.stats.refused_fenced);
	return x->status;
}

/* ---- boot ---- */

struct restore_ctx {
	struct rp_abd *x;
	char *errbuf;
};

static int on_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct restore_ctx *c = arg;
	int rc = abd_restore(c->x->a, data, len);

	if (rc != TEEMS_OK)
		return teems_errf(c->errbuf, rc == TEEMS_ENOMEM ? TEEMS_ENOMEM : TEEMS_ECORRUPT,
				  "engine: ABD WAL record %" PRIu64 " does not restore: %s", index,
				  teems_strerror(rc));
	c->x->restored++;
	return 0;
}

int rp_abd_open(struct replica *r, char *errbuf)
{
	char dir[CONFIG_MAX_PATH + 16];
	uint8_t key[TEE_KEY_LEN];
	struct store_wal_opts wo;
	struct store_wal_info info;
	struct restore_ctx ctx;
	struct rp_abd *x;
	int rc;

	x = teems_malloc(sizeof(*x));
	if (x == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "engine: out of memory");
	memset(x, 0, sizeof(*x));
	abd_ready_init(&x->ar);
	r->abd = x;
	/* A genesis member (first boot) starts fresh; anything else is a new incarnation that
	 * registers, fences and recovers, as its Paxos core does. */
	rc = new_abd(r, !r->first_boot, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (snprintf(dir, sizeof(dir), "%s/abd", r->cfg.data_dir) >= (int)sizeof(dir))
		return teems_errf(errbuf, TEEMS_ECONFIG, "engine: data_dir too long");
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return teems_errf(errbuf, TEEMS_EIO, "engine: mkdir %s: %s", dir, strerror(errno));
	/* Its own sealing key: a record of one WAL never authenticates in the other. */
	rc = tee_seal_key(r->tee, "abd-wal", key);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "engine: ABD WAL key: %s", teems_strerror(rc));
	memset(&wo, 0, sizeof(wo));
	wo.replica_id = r->self;
	wo.root_key = key;
	wo.segment_size = r->cfg.wal_segment_bytes;
	ctx.x = x;
	ctx.errbuf = errbuf;
	wo.on_record = on_record;
	wo.arg = &ctx;
	rc = store_wal_open(r->vfs, dir, &wo, &x->wal, &info, errbuf);
	tee_wipe(key, sizeof(key));
	if (rc != TEEMS_OK)
		return rc;
	x->appended_index = x->prepared_index = info.end.index;
	if (x->restored > 0 && r->first_boot)
		return teems_errf(errbuf, TEEMS_ECORRUPT,
				  "engine: %s holds ABD records but the Paxos WAL and the boot "
				  "marker are gone: move %s aside to restart this replica empty",
				  dir, dir);
	x->restarted = abd_suspicious(x->a);
	rp_read_clock(r);
	x->last_group_sync_hi = r->now.hi_ns;
	if (!r->first_boot)
		rp_log(r, "abd: %" PRIu64 " ABD WAL records restored", x->restored);
	return TEEMS_OK;
}

void rp_abd_close(struct replica *r)
{
	struct rp_abd *x = X(r);

	if (x == NULL)
		return;
	for (size_t i = 0; i < x->n_reqs; i++)
		req_free(&x->reqs[i]);
	teems_free(x->reqs);
	store_wal_close(x->wal);
	abd_free(x->a);
	abd_ready_free(&x->ar);
	teems_free(x->buf);
	teems_free(x);
	r->abd = NULL;
}
