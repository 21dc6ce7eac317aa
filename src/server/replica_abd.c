/* engine = abd: the RR-ABD data plane of the replica engine (replica_abd.h; the simulator's
 * shell, tests/sim/sim_abd.c, is the model this follows step for step). */
#include "server/replica_abd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/abd.h"
#include "core/abd_lease.h"
#include "core/quorum.h"
#include "server/replica_internal.h"
#include "store/snapshot.h"
#include "teems/err.h"

#define ABD_RETRY_NS (10 * RP_MS) /* a refused request (not fresh, no lease, busy) again */
#define ABD_MAX_REPLICAS QUORUM_MAX_REPLICAS
#define ABD_SNAP_RETRY_NS (1000 * RP_MS) /* after a snapshot that could not be built */
#define ABD_SNAP_VERSION 1

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
	/* WAL compaction (docs/ABD.md "WAL compaction"; replica_snap.c's order). pend: built on
	 * the loop, waiting for a sync job; job: carried by the running one (worker side). */
	char dir[CONFIG_MAX_PATH + 16];
	uint8_t snap_key[TEE_KEY_LEN];
	uint64_t since_records, since_bytes; /* appended since the last snapshot was taken */
	uint8_t *snap_pend, *snap_job;
	size_t snap_pend_len, snap_job_len;
	uint64_t snap_pend_records, snap_job_records;
	struct store_wal_pos snap_pend_covers, snap_job_covers;
	int snap_job_rc;
	bool snap_job_written;
	char snap_job_err[TEEMS_ERRBUF_LEN];
	uint64_t snap_next_try_ns;
	uint64_t snaps_taken, snaps_persisted, snaps_failed;
	uint64_t snap_index, snap_records, snap_bytes; /* the last one persisted */
	uint64_t snap_restored;			       /* records restored from one at open */
	char status[2048];
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
static void snap_maybe_take(struct replica *r);

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
	x->since_records++;
	x->since_bytes += len + STORE_WAL_RECORD_OVERHEAD;
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
	snap_maybe_take(r);
}

/* ---- WAL compaction (docs/ABD.md "WAL compaction") ----
 *
 * The snapshot payload, sealed by store_snapshot_write (so authenticated, and bound to the WAL
 * position it covers), little-endian:
 *   u8 ABD_SNAP_VERSION, u64 record count n,
 *   n times: u32 length, one record in abd_persist_encode's encoding (abd_snapshot_records).
 * The order is replica_snap.c's: built on the loop between two steps and bound to the position
 * after the last appended record; the sync job that carries it first makes the WAL durable at
 * least to that position (a prepare closes every group appended before it), then seals it,
 * then compacts. A crash before the seal restarts on the old snapshot and the whole WAL after
 * it; after it, on the new one and the WAL that continues it. */

#define SNAP_HEAD (1 + 8)

struct snap_build {
	uint8_t *buf; /* NULL: the sizing pass */
	size_t cap, len;
	uint64_t n;
};

static int snap_add(void *arg, const struct abd_persist *rec)
{
	struct snap_build *b = arg;
	size_t len = 0;
	int rc = abd_persist_encode(rec, NULL, 0, &len);

	if (rc != TEEMS_EFULL && rc != TEEMS_OK)
		return rc;
	if (b->buf != NULL) {
		if (b->cap - b->len < 4 + len)
			return TEEMS_EINVAL; /* the table changed between the two passes: a bug */
		put_le32(b->buf + b->len, (uint32_t)len);
		rc = abd_persist_encode(rec, b->buf + b->len + 4, len, &len);
		if (rc != TEEMS_OK)
			return rc;
	}
	b->len += 4 + len;
	b->n++;
	return 0;
}

int rp_abd_snap_build(const struct abd *a, uint8_t **payload, size_t *len, uint64_t *records)
{
	struct snap_build b;
	int rc;

	*payload = NULL;
	*len = 0;
	*records = 0;
	memset(&b, 0, sizeof(b));
	b.len = SNAP_HEAD;
	rc = abd_snapshot_records(a, snap_add, &b);
	if (rc != TEEMS_OK)
		return rc;
	b.cap = b.len;
	b.buf = teems_malloc(b.cap);
	if (b.buf == NULL)
		return TEEMS_ENOMEM;
	b.len = SNAP_HEAD;
	b.n = 0;
	rc = abd_snapshot_records(a, snap_add, &b);
	if (rc != TEEMS_OK || b.len != b.cap) {
		tee_wipe(b.buf, b.cap);
		teems_free(b.buf);
		return rc != TEEMS_OK ? rc : TEEMS_EINVAL;
	}
	b.buf[0] = ABD_SNAP_VERSION;
	put_le64(b.buf + 1, b.n);
	*payload = b.buf;
	*len = b.len;
	*records = b.n;
	return TEEMS_OK;
}

/* Every record of payload, decoded (apply == NULL: only checked) or fed to abd_restore. */
static int snap_walk(const uint8_t *p, size_t len, struct abd *apply, uint64_t *records)
{
	uint64_t n, k;
	size_t off = SNAP_HEAD;
	int rc;

	*records = 0;
	if (len < SNAP_HEAD)
		return TEEMS_ECORRUPT;
	if (p[0] != ABD_SNAP_VERSION)
		return p[0] > ABD_SNAP_VERSION ? TEEMS_EVERSION : TEEMS_ECORRUPT;
	n = get_le64(p + 1);
	for (k = 0; k < n; k++) {
		struct abd_persist d;
		size_t rl;

		if (len - off < 4)
			return TEEMS_ECORRUPT;
		rl = (size_t)get_le32(p + off);
		off += 4;
		if (len - off < rl)
			return TEEMS_ECORRUPT;
		rc = apply != NULL ? abd_restore(apply, p + off, rl)
				   : abd_persist_decode(p + off, rl, &d);
		if (rc != TEEMS_OK)
			return rc;
		off += rl;
	}
	if (off != len)
		return TEEMS_ECORRUPT;
	*records = n;
	return TEEMS_OK;
}

int rp_abd_snap_persist(const struct rp_abd_disk *d, struct store_wal *wal,
			const struct store_wal_pos *synced, const struct store_wal_pos *covers,
			const void *payload, size_t len, bool *written, char *errbuf)
{
	int rc;

	*written = false;
	/* Step 3: the WAL durable up to the position the snapshot is bound to. */
	if (synced->index < covers->index)
		return teems_errf(errbuf, TEEMS_EIO,
				  "the ABD WAL is durable to record %" PRIu64
				  " only, the snapshot needs %" PRIu64,
				  synced->index, covers->index);
	rc = store_snapshot_write(d->vfs, d->dir, d->replica_id, d->snap_key, covers, payload, len,
				  errbuf);
	if (rc != TEEMS_OK)
		return rc;
	*written = true;
	/* Step 4, only now: the records up to `covers` are in a durable snapshot. */
	return store_wal_compact(wal, covers->index, errbuf);
}

struct restore_ctx {
	struct abd *a;
	uint64_t n;
	char *errbuf;
};

static int on_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct restore_ctx *c = arg;
	int rc = abd_restore(c->a, data, len);

	if (rc != TEEMS_OK)
		return teems_errf(c->errbuf, rc == TEEMS_ENOMEM ? TEEMS_ENOMEM : TEEMS_ECORRUPT,
				  "engine: ABD WAL record %" PRIu64 " does not restore: %s", index,
				  teems_strerror(rc));
	c->n++;
	return 0;
}

/* The snapshot into a, checked in full first (never half-restored). out->why filled: there is
 * one and it cannot be used. */
static int snap_load(const struct rp_abd_disk *d, struct abd *a, struct rp_abd_opened *out,
		     char *errbuf)
{
	char lerr[TEEMS_ERRBUF_LEN] = "";
	void *payload = NULL;
	size_t len = 0;
	uint64_t n = 0;
	bool applied = false;
	int rc;

	rc = store_snapshot_load(d->vfs, d->dir, d->replica_id, d->snap_key, &payload, &len,
				 &out->anchor, lerr);
	switch (rc) {
	case TEEMS_OK:
		break;
	case TEEMS_ENOTFOUND:
		return TEEMS_OK;
	case TEEMS_EAUTH:
	case TEEMS_ECORRUPT:
	case TEEMS_EVERSION:
		/* The host altered, truncated or swapped the file (or it is another replica's,
		 * or sealed under another key). */
		snprintf(out->why, sizeof(out->why), "does not authenticate (%.200s)",
			 lerr[0] ? lerr : teems_strerror(rc));
		return TEEMS_OK;
	default:
		return teems_errf(errbuf, rc, "engine: ABD snapshot: %s",
				  lerr[0] ? lerr : teems_strerror(rc));
	}
	rc = snap_walk(payload, len, NULL, &n);
	if (rc == TEEMS_OK) {
		applied = true;
		rc = snap_walk(payload, len, a, &n);
	}
	tee_wipe(payload, len);
	teems_free(payload);
	if (rc == TEEMS_ENOMEM)
		return teems_errf(errbuf, rc, "engine: out of memory loading the ABD snapshot");
	if (rc != TEEMS_OK && applied)
		/* Every record was checked first: a core refusing one afterwards is a bug, and
		 * the core is no longer the one the files describe. */
		return teems_errf(errbuf, TEEMS_ECORRUPT,
				  "engine: the ABD core refused a checked snapshot record: %s",
				  teems_strerror(rc));
	if (rc != TEEMS_OK) {
		snprintf(out->why, sizeof(out->why), "does not decode (%s)", teems_strerror(rc));
		return TEEMS_OK;
	}
	out->snapshot = true;
	out->snapshot_records = n;
	return TEEMS_OK;
}

int rp_abd_disk_open(const struct rp_abd_disk *d, struct abd *a, struct store_wal **wal,
		     struct rp_abd_opened *out, char *errbuf)
{
	struct store_wal_opts wo;
	struct restore_ctx ctx;
	int rc;

	*wal = NULL;
	memset(out, 0, sizeof(*out));
	rc = snap_load(d, a, out, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	memset(&wo, 0, sizeof(wo));
	wo.replica_id = d->replica_id;
	wo.root_key = d->wal_key;
	wo.segment_size = d->segment_size;
	if (out->why[0] != '\0') {
		/* The WAL alone is a state this replica really had only if it still starts at
		 * its first record (replica.c wal_alone_or_refuse: the same rule as the Paxos
		 * snapshot's). Nothing on disk changes here. */
		bool from_start;

		rc = store_wal_starts_at_genesis(d->vfs, d->dir, d->replica_id, d->wal_key,
						 &from_start, errbuf);
		if (rc != TEEMS_OK)
			return rc;
		if (!from_start)
			return teems_errf(errbuf, TEEMS_ECORRUPT,
					  "engine: the sealed ABD snapshot %.80s and the ABD WAL "
					  "no longer starts at its first record: put the right "
					  "snapshot back, or move %.60s aside (the data plane then "
					  "restarts empty and recovers from its peers)",
					  out->why, d->dir);
	}
	ctx.a = a;
	ctx.n = 0;
	ctx.errbuf = errbuf;
	wo.on_record = on_record;
	wo.arg = &ctx;
	wo.anchor = out->snapshot ? &out->anchor : NULL;
	rc = store_wal_open(d->vfs, d->dir, &wo, wal, &out->info, errbuf);
	out->wal_records = ctx.n;
	return rc;
}

/* Between two steps (the end of a tick), every persist record of the core appended: builds a
 * snapshot when one is due and queues it for the next sync job. */
static void snap_maybe_take(struct replica *r)
{
	struct rp_abd *x = X(r);
	struct store_wal_pos covers;
	uint8_t *payload = NULL;
	size_t len = 0;
	uint64_t n = 0;
	int rc;

	if (r->halted || r->genesis.pending || x->wal == NULL || x->stepping ||
	    x->snap_pend != NULL || x->snap_job != NULL || r->now.hi_ns < x->snap_next_try_ns)
		return;
	if (!(r->cfg.snapshot_every && x->since_records >= r->cfg.snapshot_every) &&
	    !(r->cfg.snapshot_bytes && x->since_bytes >= r->cfg.snapshot_bytes))
		return;
	store_wal_position(x->wal, &covers, NULL);
	if (covers.index != x->appended_index || covers.index <= x->snap_index)
		return;
	rc = rp_abd_snap_build(x->a, &payload, &len, &n);
	if (rc != TEEMS_OK) {
		/* Nothing changed: the previous snapshot and the whole WAL stay a pair. */
		x->snaps_failed++;
		x->snap_next_try_ns = r->now.hi_ns + ABD_SNAP_RETRY_NS;
		rp_log(r, "abd: snapshot at WAL record %" PRIu64 " not taken: %s", covers.index,
		       teems_strerror(rc));
		return;
	}
	x->snap_pend = payload;
	x->snap_pend_len = len;
	x->snap_pend_records = n;
	x->snap_pend_covers = covers;
	x->since_records = x->since_bytes = 0;
	x->snaps_taken++;
	r->io.want_sync(r->io.ctx);
}

static void snap_job_free(struct rp_abd *x)
{
	if (x->snap_job != NULL) {
		tee_wipe(x->snap_job, x->snap_job_len);
		teems_free(x->snap_job);
	}
	x->snap_job = NULL;
	x->snap_job_len = 0;
}

/* The sync job's end, for the snapshot it carried (loop thread). */
static void snap_job_done(struct replica *r)
{
	struct rp_abd *x = X(r);

	if (x->snap_job == NULL)
		return;
	if (x->snap_job_written) {
		x->snaps_persisted++;
		x->snap_index = x->snap_job_covers.index;
		x->snap_records = x->snap_job_records;
		x->snap_bytes = x->snap_job_len;
		rp_log(r,
		       "abd: snapshot sealed (%" PRIu64 " records, %zu bytes), WAL compacted up to "
		       "record %" PRIu64,
		       x->snap_job_records, x->snap_job_len, x->snap_job_covers.index);
		if (x->snap_job_rc != TEEMS_OK)
			rp_log(r, "abd: WAL compaction failed (the WAL stays usable): %s",
			       x->snap_job_err);
	} else if (x->snap_job_rc != TEEMS_OK) {
		x->snaps_failed++;
		rp_log(r,
		       "abd: snapshot at WAL record %" PRIu64 " not persisted (the previous "
		       "snapshot and the whole WAL remain): %s",
		       x->snap_job_covers.index, x->snap_job_err);
	}
	snap_job_free(x);
}

/* ---- the fsync job ---- */

bool rp_abd_sync_wanted(const struct replica *r)
{
	const struct rp_abd *x = X(r);

	return x != NULL && x->wal != NULL &&
	       (x->appended_index > x->prepared_index || x->snap_pend != NULL);
}

void rp_abd_sync_prepare(struct replica *r)
{
	struct rp_abd *x = X(r);
	uint64_t upto = 0;
	int rc;

	x->in_job = false;
	x->job_rc = TEEMS_OK;
	x->job_err[0] = '\0';
	x->job_seq = 0;
	if (x->wal == NULL)
		return;
	if (x->appended_index != x->prepared_index) {
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
	/* Only once every record it covers is in a closed group: this job's WAL sync (or an
	 * earlier one, jobs run one at a time) makes them durable before the seal. */
	if (x->snap_pend != NULL && x->snap_job == NULL &&
	    x->prepared_index >= x->snap_pend_covers.index) {
		x->snap_job = x->snap_pend;
		x->snap_job_len = x->snap_pend_len;
		x->snap_job_records = x->snap_pend_records;
		x->snap_job_covers = x->snap_pend_covers;
		x->snap_pend = NULL;
		x->snap_job_rc = TEEMS_OK;
		x->snap_job_written = false;
		x->snap_job_err[0] = '\0';
		x->in_job = true;
	}
}

void rp_abd_sync_run(struct replica *r)
{
	struct rp_abd *x = X(r);
	struct store_wal_pos synced;
	struct rp_abd_disk d;

	if (x == NULL || !x->in_job)
		return;
	/* With no group closed (a job for the snapshot alone) this does no I/O and tells the
	 * durable position. */
	x->job_rc = store_wal_sync_run(x->wal, &synced, x->job_err);
	if (x->job_rc != TEEMS_OK || x->snap_job == NULL)
		return;
	memset(&d, 0, sizeof(d));
	d.vfs = r->vfs;
	d.dir = x->dir;
	d.replica_id = r->self;
	d.snap_key = x->snap_key;
	x->snap_job_rc =
		rp_abd_snap_persist(&d, x->wal, &synced, &x->snap_job_covers, x->snap_job,
				    x->snap_job_len, &x->snap_job_written, x->snap_job_err);
}

void rp_abd_sync_done(struct replica *r)
{
	struct rp_abd *x = X(r);
	struct abd_input in;

	if (x == NULL || !x->in_job)
		return;
	x->in_job = false;
	if (x->job_rc == TEEMS_OK)
		snap_job_done(r);
	else
		snap_job_free(x); /* never written: the WAL failed first */
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
	if (!r->halted && rp_abd_sync_wanted(r) &&
	    (x->urgent || r->cfg.sync == CONFIG_SYNC_ALWAYS || x->snap_pend != NULL))
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
		 "\r\nabd_wal_since_snapshot:%" PRIu64 "\r\nabd_snapshots_taken:%" PRIu64
		 "\r\nabd_snapshots_persisted:%" PRIu64 "\r\nabd_snapshots_failed:%" PRIu64
		 "\r\nabd_snapshot_index:%" PRIu64 "\r\nabd_snapshot_records:%" PRIu64
		 "\r\nabd_snapshot_bytes:%" PRIu64 "\r\nabd_snapshot_restored:%" PRIu64 "\r\n",
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
		 x->lease.stats.refused_fenced, x->since_records, x->snaps_taken,
		 x->snaps_persisted, x->snaps_failed, x->snap_index, x->snap_records, x->snap_bytes,
		 x->snap_restored);
	return x->status;
}

/* ---- boot ---- */

int rp_abd_open(struct replica *r, char *errbuf)
{
	uint8_t key[TEE_KEY_LEN];
	struct rp_abd_disk d;
	struct rp_abd_opened o;
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
	if (snprintf(x->dir, sizeof(x->dir), "%s/abd", r->cfg.data_dir) >= (int)sizeof(x->dir))
		return teems_errf(errbuf, TEEMS_ECONFIG, "engine: data_dir too long");
	if (mkdir(x->dir, 0700) != 0 && errno != EEXIST)
		return teems_errf(errbuf, TEEMS_EIO, "engine: mkdir %s: %s", x->dir,
				  strerror(errno));
	/* Keys of their own: a record of one WAL never authenticates in the other, nor a
	 * snapshot of one plane in the other's place. */
	rc = tee_seal_key(r->tee, "abd-wal", key);
	if (rc == TEEMS_OK)
		rc = tee_seal_key(r->tee, "abd-snap", x->snap_key);
	if (rc != TEEMS_OK) {
		tee_wipe(key, sizeof(key));
		return teems_errf(errbuf, rc, "engine: ABD sealing keys: %s", teems_strerror(rc));
	}
	memset(&d, 0, sizeof(d));
	d.vfs = r->vfs;
	d.dir = x->dir;
	d.replica_id = r->self;
	d.wal_key = key;
	d.snap_key = x->snap_key;
	d.segment_size = r->cfg.wal_segment_bytes;
	rc = rp_abd_disk_open(&d, x->a, &x->wal, &o, errbuf);
	tee_wipe(key, sizeof(key));
	if (rc != TEEMS_OK) {
		if (rc == TEEMS_ECORRUPT)
			rp_log(r, "abd: %s", errbuf);
		return rc;
	}
	x->restored = o.wal_records;
	x->snap_restored = o.snapshot_records;
	x->since_records = o.wal_records; /* a long tail is compacted soon */
	x->appended_index = x->prepared_index = o.info.end.index;
	if (o.snapshot)
		x->snap_index = o.anchor.index;
	if ((x->restored > 0 || o.snapshot) && r->first_boot)
		return teems_errf(errbuf, TEEMS_ECORRUPT,
				  "engine: %s holds ABD records but the Paxos WAL and the boot "
				  "marker are gone: move %s aside to restart this replica empty",
				  x->dir, x->dir);
	if (o.why[0] != '\0')
		rp_log(r,
		       "abd: the sealed snapshot in %s %s: restoring from the ABD WAL alone, which "
		       "still starts at its first record",
		       x->dir, o.why);
	if (o.snapshot && o.info.stop == STORE_WAL_STOP_ANCHOR)
		/* The WAL's segments belong to another history than the snapshot (a rollback of
		 * one of the two): the snapshot is a state this replica really had, and the new
		 * segment continues its history. */
		rp_log(r, "abd: the ABD WAL does not continue the snapshot (a rollback of one of "
			  "them): starting from the snapshot alone");
	x->restarted = abd_suspicious(x->a);
	rp_read_clock(r);
	x->last_group_sync_hi = r->now.hi_ns;
	if (!r->first_boot)
		rp_log(r,
		       "abd: %s%" PRIu64 " snapshot records and %" PRIu64
		       " ABD WAL records restored",
		       o.snapshot ? "" : "no snapshot, ", x->snap_restored, x->restored);
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
	if (x->snap_pend != NULL) {
		tee_wipe(x->snap_pend, x->snap_pend_len);
		teems_free(x->snap_pend);
	}
	snap_job_free(x);
	tee_wipe(x->snap_key, sizeof(x->snap_key));
	abd_free(x->a);
	abd_ready_free(&x->ar);
	teems_free(x->buf);
	teems_free(x);
	r->abd = NULL;
}
