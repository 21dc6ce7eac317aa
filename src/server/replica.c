/* The replica engine (replica.h): boot (platform, incarnation, quote, WAL, restore), the core's
 * ready batches carried out in the order paxos.h prescribes, the fsync job, peer frames and
 * timers. Client commands and forwarding are replica_client.c.
 *
 * The shell loop is the same one the simulator runs around the core (tests/sim/sim_world.c:
 * persist, snapshot, send, apply, notes, the group fsync and PAXOS_IN_SYNCED), here on a real
 * sealed WAL over the posix VFS, the sim platform's trusted clock and real peers.
 *
 * Snapshots (taking, sealing, compacting, installing) are replica_snap.c; this file calls it
 * at boot, from the ready (an installed snapshot), on every tick and in the sync job. */
#include "server/replica_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "server/replica_abd.h"
#include "server/replica_recover.h"
#include "server/replica_snap.h"
#include "store/snapshot.h"
#include "teems/err.h"

#define MARKER_NAME "booted"

static const char *const role_names[] = {"follower", "candidate", "leader"};
static const char *const lc_names[] = {"fresh", "registering", "fencing", "recovering", "halted"};

void rp_log(struct replica *r, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (r->io.log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	r->io.log(r->io.ctx, line);
}

void rp_halt(struct replica *r, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	if (r->halted)
		return;
	r->halted = true;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	r->io.halt(r->io.ctx, why);
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void rp_report_data(uint16_t replica, const uint8_t key[TEE_PUBLIC_KEY_LEN],
		    const uint8_t cluster_id[CONFIG_CLUSTER_ID_LEN],
		    uint8_t out[TEE_REPORT_DATA_LEN])
{
	static const char domain[] = "teems register v1"; /* with its NUL */
	uint8_t in[sizeof(domain) + 2 + TEE_PUBLIC_KEY_LEN + CONFIG_CLUSTER_ID_LEN];
	size_t off = 0;

	memcpy(in, domain, sizeof(domain));
	off += sizeof(domain);
	in[off++] = (uint8_t)(replica & 0xff);
	in[off++] = (uint8_t)(replica >> 8);
	memcpy(in + off, key, TEE_PUBLIC_KEY_LEN);
	off += TEE_PUBLIC_KEY_LEN;
	memcpy(in + off, cluster_id, CONFIG_CLUSTER_ID_LEN);
	off += CONFIG_CLUSTER_ID_LEN;
	memset(out, 0, TEE_REPORT_DATA_LEN);
	tee_sha256(in, off, out);
}

void rp_read_clock(struct replica *r)
{
	struct tee_clock_reading c;

	if (tee_clock_now(r->clock, &c) != TEEMS_OK)
		return; /* keep the last reading: the core keeps time monotonic */
	r->now.lo_ns = c.lo_ns;
	r->now.hi_ns = c.hi_ns;
	r->now.epoch = c.epoch;
}

static int grow_buf(struct replica *r, size_t need)
{
	size_t ncap = r->cap_buf ? r->cap_buf : 4096;
	uint8_t *nb;

	if (need <= r->cap_buf)
		return TEEMS_OK;
	while (ncap < need)
		ncap *= 2;
	nb = teems_realloc(r->buf, ncap);
	if (nb == NULL)
		return TEEMS_ENOMEM;
	r->buf = nb;
	r->cap_buf = ncap;
	return TEEMS_OK;
}

void rp_msg_header(struct replica *r, struct msg *m)
{
	m->from.replica = r->self;
	m->from.reg = paxos_registration(r->p);
	m->suspicious = paxos_suspicious(r->p);
	m->nonce = 0;
}

static int defer(struct replica *r, bool exec, uint16_t to, uint64_t nonce, uint64_t applied,
		 const uint8_t *bytes, size_t len)
{
	struct rp_deferred *d;

	if (r->n_deferred == r->cap_deferred) {
		size_t ncap = r->cap_deferred ? 2 * r->cap_deferred : 8;
		struct rp_deferred *nd = teems_realloc(r->deferred, ncap * sizeof(*nd));

		if (nd == NULL)
			return TEEMS_ENOMEM;
		r->deferred = nd;
		r->cap_deferred = ncap;
	}
	d = &r->deferred[r->n_deferred];
	memset(d, 0, sizeof(*d));
	d->exec = exec;
	d->to = to;
	d->nonce = nonce;
	d->applied = applied;
	if (len > 0) {
		d->bytes = teems_malloc(len);
		if (d->bytes == NULL)
			return TEEMS_ENOMEM;
		memcpy(d->bytes, bytes, len);
	}
	d->len = len;
	r->n_deferred++;
	return TEEMS_OK;
}

int rp_send_msg(struct replica *r, uint16_t to, const struct msg *m)
{
	size_t len = 0;
	int rc = msg_encode(m, NULL, 0, &len);

	if (rc != TEEMS_EFULL)
		return rc == TEEMS_OK ? TEEMS_EINVAL : rc;
	if (grow_buf(r, len) != TEEMS_OK)
		return TEEMS_ENOMEM;
	rc = msg_encode(m, r->buf, r->cap_buf, &len);
	if (rc != TEEMS_OK)
		return rc;
	if (to == r->self) {
		/* The core never addresses itself today; if it does, loop the frame back after
		 * this step (the ready must not be reused while we walk it). */
		r->stats.self_frames++;
		return defer(r, false, to, 0, 0, r->buf, len);
	}
	r->io.send(r->io.ctx, to, r->buf, len);
	return TEEMS_OK;
}

/* A message the core produced: one msg_encode refuses is a bug, not an input. */
static void send_core(struct replica *r, uint16_t to, const struct msg *m)
{
	int rc = rp_send_msg(r, to, m);

	if (rc != TEEMS_OK)
		rp_halt(r, "engine: cannot send the core's %s: %s", msg_type_name(m->type),
			teems_strerror(rc));
}

/* ---- carrying out a ready (paxos.h: persist, send, apply, notes, execs) ---- */

static void persist(struct replica *r, const struct paxos_persist *rec)
{
	size_t len = 0;
	uint64_t index = 0;
	int rc = paxos_persist_encode(rec, NULL, 0, &len);

	if (rc == TEEMS_EFULL) {
		if (grow_buf(r, len) != TEEMS_OK) {
			rp_halt(r, "engine: out of memory encoding a WAL record");
			return;
		}
		rc = paxos_persist_encode(rec, r->buf, r->cap_buf, &len);
	}
	if (rc != TEEMS_OK) {
		rp_halt(r, "engine: paxos_persist_encode refused record %" PRIu64 ": %s", rec->seq,
			teems_strerror(rc));
		return;
	}
	rc = store_wal_append(r->wal, r->buf, len, &index);
	if (rc != TEEMS_OK) {
		rp_halt(r, "engine: WAL append failed: %s", teems_strerror(rc));
		return;
	}
	r->appended_index = index;
	r->appended_seq = rec->seq;
	r->snap.wal_bytes += len + STORE_WAL_RECORD_OVERHEAD;
	if (rec->sync)
		r->urgent = true;
}

static void apply_slot(struct replica *r, const struct paxos_apply *a)
{
	struct paxos_register_entry reg;
	struct paxos_command cmd;
	size_t off = 0;

	if (a->slot > r->applied_index)
		r->applied_index = a->slot;
	/* Configuration entries are the core's own business (registrations). */
	if (a->config || paxos_config_entry(a->value, a->len, &reg))
		return;
	while (!r->halted && paxos_batch_next(a->value, a->len, &off, &cmd)) {
		uint8_t *res = NULL;
		size_t res_len = 0;
		int rc = kv_apply_encoded(r->kv, cmd.command, cmd.len, &res, &res_len);

		if (rc == TEEMS_ENOMEM) {
			/* The state machine would diverge from the other replicas: stop. */
			teems_free(res);
			rp_halt(r, "engine: out of memory applying slot %" PRIu64, a->slot);
			return;
		}
		r->stats.applied_cmds++;
		if (rc == TEEMS_OK) /* the leader's client-lease timers */
			rp_lease_applied(r, cmd.command, cmd.len, res, res_len);
		rp_client_applied(r, cmd.client_id, cmd.request_id, rc, res, res_len);
	}
}

static void run_exec(struct replica *r, const struct paxos_exec *e)
{
	uint8_t *res = NULL;
	size_t len = 0;
	int rc = kv_apply_encoded(r->kv, e->command, e->len, &res, &len);

	if (rc == TEEMS_ENOMEM) {
		rp_halt(r, "engine: out of memory");
		return;
	}
	/* A command kv refuses answers with an empty result (every replica refuses it alike). */
	if (defer(r, true, e->to, e->nonce, r->applied_index, res, rc == TEEMS_OK ? len : 0) !=
	    TEEMS_OK)
		rp_halt(r, "engine: out of memory");
	teems_free(res);
}

static void want_sync_check(struct replica *r, bool group_due)
{
	bool dirty = r->appended_index > r->prepared_index;

	if (r->halted || r->sync_running || (!dirty && !rp_snap_waiting(r)))
		return;
	if (r->urgent || r->cfg.sync == CONFIG_SYNC_ALWAYS || rp_snap_waiting(r) ||
	    (group_due && r->cfg.sync == CONFIG_SYNC_RR))
		r->io.want_sync(r->io.ctx);
}

static void log_changes(struct replica *r)
{
	int role = (int)paxos_role(r->p), lc = (int)paxos_lifecycle(r->p);

	if (lc != r->last_lc) {
		struct msg_regidx reg = paxos_registration(r->p);

		rp_log(r, "lifecycle %s (registration %" PRIu64 ".%" PRIu64 ", epoch %" PRIu64 ")",
		       lc >= 0 && lc <= 4 ? lc_names[lc] : "?", reg.epoch, reg.slot,
		       paxos_epoch(r->p));
		r->last_lc = lc;
	}
	if (role != r->last_role) {
		struct msg_ballot b = paxos_promised(r->p);

		rp_log(r, "role %s, ballot %" PRIu64 ".%u, commit index %" PRIu64,
		       role >= 0 && role <= 2 ? role_names[role] : "?", b.round, b.replica,
		       paxos_commit_index(r->p));
		r->last_role = role;
	}
}

static void execute_ready(struct replica *r)
{
	struct paxos_ready *rd = &r->rd;

	for (size_t k = 0; k < rd->n_persist && !r->halted; k++)
		persist(r, &rd->persist[k]);
	/* paxos.h 1b: an installed snapshot replaces the state machine (and is queued to be
	 * persisted) after the records and before the sends and the applies from its slot + 1. */
	if (rd->snapshot.blob != NULL && !r->halted)
		rp_snap_from_ready(r, &rd->snapshot);
	for (size_t k = 0; k < rd->n_sends && !r->halted; k++)
		send_core(r, rd->sends[k].to, &rd->sends[k].msg);
	for (size_t k = 0; k < rd->n_applies && !r->halted; k++)
		apply_slot(r, &rd->applies[k]);
	for (size_t k = 0; k < rd->n_notes && !r->halted; k++)
		rp_client_note(r, &rd->notes[k]);
	for (size_t k = 0; k < rd->n_execs && !r->halted; k++)
		run_exec(r, &rd->execs[k]);
	/* ready.opt_reads: this engine never starts an optimized read (PAXOS_IN_OPT_READ). */
	if (r->halted)
		return;
	log_changes(r);
	rp_lease_office(r);
	if (rd->halted) {
		rp_halt(r, "a newer incarnation of replica %u is registered: this one stops",
			r->self);
		return;
	}
	want_sync_check(r, false);
}

static int step_once(struct replica *r, struct paxos_input *in)
{
	int rc;

	rp_read_clock(r);
	in->now = r->now;
	rc = paxos_step(r->p, in, &r->rd);
	if (rc == TEEMS_ENOMEM) {
		rp_halt(r, "engine: out of memory in the protocol core");
		return rc;
	}
	/* On TEEMS_EINVAL (an input the core refuses) the ready still holds what the step did
	 * before it (a taint's abandonments, say): carry it out, or persist seqs would skip. */
	execute_ready(r);
	return rc;
}

static void deliver_frame(struct replica *r, uint16_t from, const uint8_t *frame, size_t len);

int rp_step(struct replica *r, struct paxos_input *in)
{
	int rc;

	if (r->halted || r->genesis.pending)
		return TEEMS_OK;
	rc = step_once(r, in);
	if (r->draining)
		return rc;
	/* Inputs the ready produced for the core itself, in order, until none is left. */
	r->draining = true;
	while (r->n_deferred > 0 && !r->halted) {
		struct rp_deferred d = r->deferred[0];

		memmove(r->deferred, r->deferred + 1, (r->n_deferred - 1) * sizeof(*r->deferred));
		r->n_deferred--;
		if (d.exec) {
			struct paxos_input x;

			memset(&x, 0, sizeof(x));
			x.type = PAXOS_IN_EXEC_RESULT;
			x.exec_result.to = d.to;
			x.exec_result.nonce = d.nonce;
			x.exec_result.applied = d.applied;
			x.exec_result.result = d.bytes;
			x.exec_result.len = (uint32_t)d.len;
			step_once(r, &x);
		} else {
			deliver_frame(r, r->self, d.bytes, d.len);
		}
		teems_free(d.bytes);
	}
	r->draining = false;
	return rc;
}

/* ---- peer frames ---- */

/* DESIGN.md section 4, step 2: a REGISTER reaches the core only with a quote that verifies
 * against this platform's root and our own measurement (every replica runs the same code) and
 * binds exactly (replica, key, cluster). */
static bool register_quote_ok(struct replica *r, uint16_t from, const struct msg *m)
{
	uint8_t got[TEE_REPORT_DATA_LEN], want[TEE_REPORT_DATA_LEN];
	const struct msg_register *rg = &m->register_;
	int rc;

	if (rg->replica != from) {
		rp_log(r, "refused REGISTER from replica %u for replica %u", from, rg->replica);
		return false;
	}
	rc = tee_quote_verify(r->root_pub, r->measurement, rg->quote.p, rg->quote.len, got);
	if (rc != TEEMS_OK) {
		rp_log(r, "refused REGISTER from replica %u: quote: %s", from, teems_strerror(rc));
		return false;
	}
	rp_report_data(rg->replica, rg->public_key, r->cfg.cluster_id, want);
	if (tee_memcmp_ct(got, want, sizeof(want)) != 0) {
		rp_log(r,
		       "refused REGISTER from replica %u: the quote binds another key, replica or "
		       "cluster",
		       from);
		return false;
	}
	return true;
}

static void deliver_frame(struct replica *r, uint16_t from, const uint8_t *frame, size_t len)
{
	struct paxos_input in;
	struct msg m;

	if (from >= r->n || msg_decode(frame, len, &m) != TEEMS_OK || m.from.replica != from) {
		r->stats.bad_frames++;
		return;
	}
	if (rp_genesis_frame(r, from, &m))
		return;
	if (r->genesis.pending) /* nothing reaches the core before the check decides */
		return;
	if (r->abd != NULL && rp_abd_frame(r, &m)) /* engine = abd: the data plane's */
		return;
	switch (m.type) {
	case MSG_CLIENT_REQUEST:
		rp_client_request_frame(r, from, &m);
		return;
	case MSG_CLIENT_REPLY:
		rp_client_reply_frame(r, from, &m);
		return;
	case MSG_REGISTER:
		if (!register_quote_ok(r, from, &m)) {
			r->stats.bad_quotes++;
			return;
		}
		break;
	default:
		break;
	}
	memset(&in, 0, sizeof(in));
	in.type = PAXOS_IN_MESSAGE;
	in.message = &m;
	rp_step(r, &in);
	if (r->abd != NULL) /* engine = abd: the lease stand-in, the control plane's news */
		rp_abd_after_paxos(r, &m);
}

void replica_peer_frame(struct replica *r, uint16_t from, const uint8_t *frame, size_t len)
{
	if (r->halted)
		return;
	if (from == r->self) { /* the channel proved an identity that is ours: not a peer */
		r->stats.bad_frames++;
		return;
	}
	deliver_frame(r, from, frame, len);
}

/* ---- timers ---- */

void replica_tick(struct replica *r)
{
	struct paxos_input in;

	if (r->halted)
		return;
	if (r->genesis.pending) {
		rp_genesis_tick(r);
		rp_client_timers(r);
		return;
	}
	memset(&in, 0, sizeof(in));
	in.type = PAXOS_IN_TICK;
	in.tick.random = splitmix64(&r->rng);
	rp_step(r, &in);
	if (r->halted)
		return;
	rp_client_timers(r);
	if (r->halted)
		return;
	rp_lease_tick(r); /* the leader's due client-lease EXPIREs */
	if (r->halted)
		return;
	/* Between two steps, every ready carried out in full (paxos.h, "Taking one"). */
	rp_snap_tick(r);
	if (r->now.hi_ns - r->last_group_sync_hi >= RP_GROUP_SYNC_NS) {
		r->last_group_sync_hi = r->now.hi_ns;
		want_sync_check(r, true);
	}
	if (r->abd != NULL && !r->halted) /* engine = abd */
		rp_abd_tick(r);
}

/* ---- the fsync job ---- */

bool replica_sync_prepare(struct replica *r, struct replica_sync *job)
{
	uint64_t upto = 0;
	int rc;

	memset(job, 0, sizeof(*job));
	if (r->halted || r->sync_running ||
	    (r->appended_index == r->prepared_index && !rp_snap_waiting(r) &&
	     !rp_abd_sync_wanted(r)))
		return false;
	/* Closes every group appended so far (none may be left: a waiting snapshot is bound to
	 * the position after the last record appended before it was queued). */
	rc = store_wal_sync_prepare(r->wal, &upto);
	if (rc != TEEMS_OK) {
		if (rc != TEEMS_ENOMEM)
			rp_halt(r, "engine: WAL: %s", teems_strerror(rc));
		return false;
	}
	if (upto != r->appended_index) {
		rp_halt(r,
			"engine: WAL group ends at record %" PRIu64 ", expected %" PRIu64
			" (records appended behind the engine's back)",
			upto, r->appended_index);
		return false;
	}
	job->r = r;
	job->upto = r->appended_seq; /* the persist seq PAXOS_IN_SYNCED wants, not the index */
	r->prepared_index = r->appended_index;
	r->urgent = false;
	rp_snap_job_prepare(r);
	if (r->abd != NULL) /* engine = abd: its WAL's group too */
		rp_abd_sync_prepare(r);
	r->sync_running = true;
	return true;
}

/* The worker's side: the fsync, then the snapshot the job carries, if any (replica_snap.c). */
void replica_sync_run(struct replica_sync *job)
{
	struct store_wal_pos synced;

	job->rc = store_wal_sync_run(job->r->wal, &synced, job->err);
	if (job->rc == TEEMS_OK)
		rp_snap_job_run(job->r, &synced);
	if (job->r->abd != NULL) /* engine = abd */
		rp_abd_sync_run(job->r);
}

void replica_sync_done(struct replica *r, struct replica_sync *job)
{
	struct paxos_input in;

	r->sync_running = false;
	rp_snap_job_done(r);
	if (r->halted)
		return;
	if (job->rc != TEEMS_OK) {
		rp_halt(r,
			"engine: WAL fsync failed (%s): nothing is known about the file any more",
			job->err[0] ? job->err : teems_strerror(job->rc));
		return;
	}
	/* A job that only carried a snapshot synced no new record: nothing to tell the core. */
	if (job->upto > r->synced_seq) {
		r->stats.fsyncs++;
		r->synced_seq = job->upto;
		memset(&in, 0, sizeof(in));
		in.type = PAXOS_IN_SYNCED;
		in.synced.seq = job->upto;
		rp_step(r, &in);
	}
	if (r->abd != NULL) /* engine = abd */
		rp_abd_sync_done(r);
	want_sync_check(r, false);
}

void replica_set_net_stats(struct replica *r, const struct replica_net_stats *s)
{
	r->net = *s;
}

struct tee *replica_tee(struct replica *r)
{
	return r->tee;
}

_Static_assert(TEE_PUBLIC_KEY_LEN == 32, "replica.h says 32");

void replica_incarnation_key(struct replica *r, uint8_t out[32])
{
	memcpy(out, r->pub, TEE_PUBLIC_KEY_LEN);
}

/* ---- boot ---- */

struct restore_ctx {
	struct replica *r;
	uint64_t n;
	char *errbuf;
};

static int on_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct restore_ctx *c = arg;
	int rc = paxos_restore(c->r->p, data, len);

	if (rc != TEEMS_OK)
		return teems_errf(c->errbuf, rc == TEEMS_ENOMEM ? TEEMS_ENOMEM : TEEMS_ECORRUPT,
				  "engine: WAL record %" PRIu64 " does not restore: %s", index,
				  teems_strerror(rc));
	c->n++;
	c->r->snap.wal_bytes += len + STORE_WAL_RECORD_OVERHEAD;
	return 0;
}

/* Stops a read-only open at the first record: the WAL holds record 1. */
/* mkdir -p for the data directory (0700: sealed files only, but nobody else's business). */
static int make_dirs(const char *path, char *errbuf)
{
	char tmp[CONFIG_MAX_PATH + 8];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return teems_errf(errbuf, TEEMS_ECONFIG, "engine: data_dir \"%s\": bad path", path);
	memcpy(tmp, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return teems_errf(errbuf, TEEMS_EIO, "engine: mkdir %s: %s", tmp,
					  strerror(errno));
		tmp[i] = i == len ? '\0' : '/';
	}
	return TEEMS_OK;
}

/* The first-boot marker: once it exists, an empty WAL means a replica whose state was lost or
 * rolled back to nothing, which must register like any restarted incarnation, not a member of
 * the initial configuration. Written and made durable before the core takes any input. */
static int write_marker(const char *dir, const char *path, uint16_t id, char *errbuf)
{
	char text[64];
	int fd, n = snprintf(text, sizeof(text), "teems replica %u\n", id);

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return teems_errf(errbuf, TEEMS_EIO, "engine: %s: %s", path, strerror(errno));
	if (write(fd, text, (size_t)n) != n || fsync(fd) != 0) {
		int e = errno;

		close(fd);
		return teems_errf(errbuf, TEEMS_EIO, "engine: %s: %s", path, strerror(e));
	}
	close(fd);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return teems_errf(errbuf, TEEMS_EIO, "engine: sync %s: %s", dir, strerror(e));
	}
	close(fd);
	return TEEMS_OK;
}

static const char *stop_name(enum store_wal_stop stop)
{
	switch (stop) {
	case STORE_WAL_STOP_CLEAN:
		return "clean";
	case STORE_WAL_STOP_TORN:
		return "torn record (a crash mid-write)";
	case STORE_WAL_STOP_AUTH:
		return "a record does not authenticate";
	case STORE_WAL_STOP_SPLICE:
		return "later segments do not continue the chain";
	case STORE_WAL_STOP_ANCHOR:
		return "no segment continues the anchor";
	}
	return "?";
}

static enum paxos_sync_policy sync_policy(enum config_sync s)
{
	switch (s) {
	case CONFIG_SYNC_ALWAYS:
		return PAXOS_SYNC_ALWAYS;
	case CONFIG_SYNC_NONE:
		return PAXOS_SYNC_NONE;
	case CONFIG_SYNC_RR:
	default:
		return PAXOS_SYNC_RR;
	}
}

static int open_platform(struct replica *r, char *errbuf)
{
	struct tee_options to;
	struct tee_quote q;
	uint8_t report[TEE_REPORT_DATA_LEN];
	int rc;

	memset(&to, 0, sizeof(to));
	to.platform_dir = r->cfg.platform_dir[0] ? r->cfg.platform_dir : NULL;
	to.replica_id = r->self;
	to.cluster_id = r->cfg.cluster_id;
	to.cluster_id_len = CONFIG_CLUSTER_ID_LEN;
	/* The clock's bounds use the same rate bound the protocol's T_fence assumes. */
	to.clock.rho = r->cfg.rho;
	to.clock.verify = r->cfg.clock_verify == CONFIG_CLOCK_VERIFY_COUNTER
				  ? TEE_CLOCK_VERIFY_COUNTER
				  : TEE_CLOCK_VERIFY_MONOTONIC;
	to.clock.counter_margin = r->cfg.clock_counter_margin;
	rc = tee_open(&to, &r->tee, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (!tee_clock_rate_trusted(r->tee))
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "engine: the platform does not trust its clock rate; leases and "
				  "T_fence would not be safe");
	r->clock = tee_clock(r->tee);
	tee_measurement(r->tee, r->measurement);
	rc = tee_root_public_key(r->tee, r->root_pub);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "engine: platform root key: %s", teems_strerror(rc));
	/* DESIGN.md section 4, Boot: a fresh key pair, quoted with (replica, key, cluster). */
	rc = tee_incarnation_new(&r->inc, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	tee_incarnation_public_key(r->inc, r->pub);
	rp_report_data(r->self, r->pub, r->cfg.cluster_id, report);
	rc = tee_quote(r->tee, report, &q);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "engine: quote: %s", teems_strerror(rc));
	tee_quote_encode(&q, r->quote);
	rc = tee_random(&r->rng, sizeof(r->rng));
	if (rc == TEEMS_OK)
		rc = tee_random(&r->client_id, sizeof(r->client_id));
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "engine: random: %s", teems_strerror(rc));
	/* Random per incarnation: request ids never collide across replicas and restarts.
	 * UINT64_MAX is the core's configuration client (PAXOS_CONFIG_CLIENT). */
	if (r->client_id == PAXOS_CONFIG_CLIENT || r->client_id == 0)
		r->client_id = 1;
	return TEEMS_OK;
}

/* A new core and an empty kv (again, after a snapshot that did not restore left them half
 * restored). */
static int new_core(struct replica *r, bool restarted, char *errbuf)
{
	struct paxos_config pc;
	int rc;

	if (r->p != NULL) {
		paxos_free(r->p);
		paxos_ready_free(&r->rd);
		r->p = NULL;
	}
	kv_free(r->kv);
	r->kv = NULL;
	r->applied_index = 0;
	paxos_config_default(&pc);
	pc.quorum = r->cfg.quorum;
	pc.self = r->self;
	pc.reg.epoch = 0;
	pc.reg.slot = 0;
	memcpy(pc.public_key, r->pub, MSG_PUBLIC_KEY_SIZE);
	pc.restarted = restarted; /* paxos_restore sets it too, for every WAL record */
	pc.quote = r->quote;
	pc.quote_len = TEE_QUOTE_LEN;
	pc.sync = sync_policy(r->cfg.sync);
	pc.election_timeout_ns = RP_ELECTION_NS;
	pc.heartbeat_ns = RP_HEARTBEAT_NS;
	pc.t_op_ns = r->cfg.t_op_us * 1000;
	pc.t_lease_ns = r->cfg.t_lease_us * 1000;
	pc.t_cfg_ns = r->cfg.t_cfg_us * 1000;
	pc.rho_ppm = (uint32_t)(r->cfg.rho * 1e6 + 0.5);
	pc.max_slot_bytes = RP_MAX_SLOT_BYTES;
	pc.max_accept_slots = RP_MAX_ACCEPT_SLOTS;
	/* Both recovery modes notice a stuck cluster; with recovery = operator the accept step
	 * waits for the operator's signature (replica_recover.h). */
	pc.t_restart_ns = 5 * pc.t_op_ns > RP_RESTART_NS ? 5 * pc.t_op_ns : RP_RESTART_NS;
	rc = rp_recover_configure(&r->cfg, &pc, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	rc = paxos_new(&r->p, &pc, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	paxos_ready_init(&r->rd);
	rc = kv_new(&r->kv);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "engine: out of memory");
	return TEEMS_OK;
}

int rp_new_core(struct replica *r, bool restarted, char *errbuf)
{
	return new_core(r, restarted, errbuf);
}

/* A snapshot that cannot be used (`why`): the WAL alone is a state this replica really had
 * only if it still starts at its first record (no compaction ever removed a segment; a read
 * from genesis then delivers the whole history). Otherwise the records before the WAL's first
 * segment exist nowhere else on this disk, and starting would silently drop them (or, were the
 * WAL empty, everything): refuse, and say what the operator can do. Nothing on disk changes. */
static int wal_alone_or_refuse(struct replica *r, const char *wal_dir, const uint8_t *key,
			       const char *why, char *errbuf)
{
	bool from_start;
	int rc;

	rc = store_wal_starts_at_genesis(r->vfs, wal_dir, r->self, key, &from_start, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (from_start) {
		rp_log(r,
		       "the sealed snapshot %s: restoring from the WAL alone, which still starts "
		       "at its first record",
		       why);
		return TEEMS_OK;
	}
	/* errbuf is short (TEEMS_ERRBUF_LEN): the verdict first, the path last. */
	rp_log(r,
	       "the sealed snapshot %s and the WAL in %s no longer starts at its first record: "
	       "put the right snapshot file back, or move %s/%s and %s aside to restart this "
	       "replica empty (it registers as a new incarnation and recovers from its peers)",
	       why, wal_dir, r->cfg.data_dir, STORE_SNAPSHOT_NAME, wal_dir);
	return teems_errf(errbuf, TEEMS_ECORRUPT,
			  "engine: the sealed snapshot %s and the WAL no longer starts at its "
			  "first record (compacted): the state cannot be restored; to restart "
			  "empty, move snapshot and wal/ out of %s",
			  why, r->cfg.data_dir);
}

static int open_core(struct replica *r, char *errbuf)
{
	char wal_dir[CONFIG_MAX_PATH + 16], marker[CONFIG_MAX_PATH + 16], why[TEEMS_ERRBUF_LEN];
	uint8_t key[TEE_KEY_LEN];
	struct store_wal_opts wo;
	struct store_wal_info info;
	struct store_wal_pos anchor;
	struct restore_ctx rc_ctx;
	struct stat st;
	bool marker_exists, from_snapshot = false;
	int rc;

	rc = make_dirs(r->cfg.data_dir, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	if (snprintf(wal_dir, sizeof(wal_dir), "%s/wal", r->cfg.data_dir) >= (int)sizeof(wal_dir) ||
	    snprintf(marker, sizeof(marker), "%s/" MARKER_NAME, r->cfg.data_dir) >=
		    (int)sizeof(marker))
		return teems_errf(errbuf, TEEMS_ECONFIG, "engine: data_dir too long");
	if (mkdir(wal_dir, 0700) != 0 && errno != EEXIST)
		return teems_errf(errbuf, TEEMS_EIO, "engine: mkdir %s: %s", wal_dir,
				  strerror(errno));
	marker_exists = stat(marker, &st) == 0;

	rc = new_core(r, marker_exists, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	r->vfs = store_vfs_posix();
	if (r->vfs == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "engine: out of memory");
	rc = tee_seal_key(r->tee, "wal", key);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "engine: WAL key: %s", teems_strerror(rc));

	/* paxos.h "Restart": the sealed snapshot first, then the WAL records after the position
	 * it covers. */
	rc = rp_snap_load(r, &anchor, &from_snapshot, why, sizeof(why), errbuf);
	if (rc == TEEMS_OK && !from_snapshot && why[0] != '\0') {
		rc = new_core(r, marker_exists, errbuf);
		if (rc == TEEMS_OK)
			rc = wal_alone_or_refuse(r, wal_dir, key, why, errbuf);
	}
	if (rc != TEEMS_OK) {
		tee_wipe(key, sizeof(key));
		return rc;
	}
	memset(&wo, 0, sizeof(wo));
	wo.replica_id = r->self;
	wo.root_key = key;
	wo.anchor = from_snapshot ? &anchor : NULL;
	wo.segment_size = r->cfg.wal_segment_bytes;
	rc_ctx.r = r;
	rc_ctx.n = 0;
	rc_ctx.errbuf = errbuf;
	wo.on_record = on_record;
	wo.arg = &rc_ctx;
	rc = store_wal_open(r->vfs, wal_dir, &wo, &r->wal, &info, errbuf);
	tee_wipe(key, sizeof(key));
	if (rc != TEEMS_OK)
		return rc;
	r->restored_records = rc_ctx.n;
	r->appended_index = r->prepared_index = info.end.index;
	r->first_boot = !marker_exists && rc_ctx.n == 0 && !from_snapshot;
	if (!marker_exists) {
		rc = write_marker(r->cfg.data_dir, marker, r->self, errbuf);
		if (rc != TEEMS_OK)
			return rc;
	}
	if (from_snapshot && info.stop == STORE_WAL_STOP_ANCHOR)
		/* store/wal.h: the WAL's segments belong to another history than the snapshot (a
		 * rollback of one of the two files). The snapshot is a state this replica really
		 * had, and the new segment continues its history. */
		rp_log(r, "the WAL does not continue the snapshot (a rollback of one of them): "
			  "starting from the snapshot alone");
	if (r->first_boot)
		rp_genesis_begin(r);
	else
		rp_log(r,
		       "restart: %s%" PRIu64
		       " WAL records restored (the valid prefix ends: %s; %" PRIu64
		       " ignored segments, %" PRIu64 " bytes after it): registering as a new "
		       "incarnation",
		       from_snapshot ? "a snapshot and " : "", rc_ctx.n, stop_name(info.stop),
		       info.ignored_segments, info.tail_bytes);
	return TEEMS_OK;
}

int replica_open(const struct teems_config *cfg, const struct replica_io *io, struct replica **out,
		 char *errbuf)
{
	struct replica *r;
	int rc;

	*out = NULL;
	if (io == NULL || io->send == NULL || io->reply == NULL || io->want_sync == NULL ||
	    io->halt == NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "engine: replica_io lacks a callback");
	r = teems_malloc(sizeof(*r));
	if (r == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "engine: out of memory");
	memset(r, 0, sizeof(*r));
	r->cfg = *cfg;
	r->io = *io;
	r->last_role = -1;
	r->last_lc = -1;
	rc = config_validate(&r->cfg, errbuf);
	if (rc != TEEMS_OK)
		goto fail;
	r->self = (uint16_t)r->cfg.replica_id;
	r->n = (uint16_t)r->cfg.quorum.n;
	rp_clients_init(r);
	rc = open_platform(r, errbuf);
	if (rc != TEEMS_OK)
		goto fail;
	rc = open_core(r, errbuf);
	if (rc == TEEMS_OK && r->cfg.engine == CONFIG_ENGINE_ABD) /* replica_abd.c */
		rc = rp_abd_open(r, errbuf);
	if (rc != TEEMS_OK)
		goto fail;
	rp_read_clock(r);
	r->start_lo_ns = r->now.lo_ns;
	r->last_group_sync_hi = r->now.hi_ns;
	*out = r;
	return TEEMS_OK;
fail:
	replica_close(r);
	return rc;
}

void replica_close(struct replica *r)
{
	if (r == NULL)
		return;
	rp_clients_free(r);
	rp_snap_free(r);
	for (size_t i = 0; i < r->n_deferred; i++)
		teems_free(r->deferred[i].bytes);
	teems_free(r->deferred);
	rp_abd_close(r); /* engine = abd; before the VFS its WAL uses */
	store_wal_close(r->wal);
	if (r->vfs != NULL)
		store_vfs_destroy(r->vfs);
	if (r->p != NULL) {
		paxos_free(r->p);
		paxos_ready_free(&r->rd);
	}
	kv_free(r->kv);
	tee_incarnation_free(r->inc);
	tee_close(r->tee);
	teems_free(r->buf);
	teems_free(r);
}
