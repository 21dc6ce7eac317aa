/* The deterministic cluster simulator, Paxos engine (sim.h, sim_run; docs/TESTING.md,
 * "Simulator"). The world (events, network, clocks, disks, adversary, clients, checkers) is
 * sim_world.c; this file plugs the RR-Paxos core in as the one that orders client commands:
 * the key-value state machine (src/kv) applies what commits, clients issue GET, SET, CAS and
 * DEL as kv commands through the log (or the read index), and the checks that are the Paxos
 * engine's own (exactly-once commits, no lost acknowledged write, rounds per op). */
#include "sim.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "core/msg.h"
#include "core/paxos.h"
#include "history.h"
#include "kv/kv.h"
#include "sim_world.h"
#include "teems/err.h"

#define T_RESTART (5 * SEC) /* epoch restart: stuck after this long without W_Q fresh peers */
/* An --unsafe name for the adversary (not a core switch): a total crash plus rollbacks. */
#define SIM_UNSAFE_TOTAL_CRASH_ROLLBACK 0x10000u

/* The engine's part of an incarnation (instance.ext). */
struct pinst {
	struct kv *kv;
	/* Rounds per op (sim_rounds_*): per slot, the ACCEPT rounds (distinct nonces) this
	 * instance sent for it, and the nonce of the last one. */
	uint32_t *rnd_count;
	uint64_t *rnd_nonce;
	size_t cap_rnd;
};

struct pstate {
	struct pinst x[MAX_INSTANCES]; /* [instance index] */
};

static struct pinst *PX(const struct instance *in)
{
	return in->ext;
}

/* ---- rounds per client op (for the rounds table next to the ABD engine's) ----
 * A Paxos op's message rounds are the ACCEPT rounds its slot went through at the leader that
 * answered it: each ACCEPT with a new nonce covering the slot is one round (re-sends with the
 * same nonce are not). A read-index read is one READ_INDEX confirmation round by construction
 * (not measured). Redirects (NOT_LEADER) are client round trips, not counted. */
static void sim_rounds_on_send(struct sim *s, struct instance *ins, const struct msg *m)
{
	struct pinst *in = PX(ins);
	uint64_t last;

	if (m->type != MSG_ACCEPT || m->accept.values.count == 0)
		return;
	last = m->accept.first_slot + m->accept.values.count - 1;
	if (last >= in->cap_rnd) {
		size_t ncap = in->cap_rnd ? in->cap_rnd : 256;
		uint32_t *nc;
		uint64_t *nn;

		while (ncap <= last)
			ncap *= 2;
		nc = sim_xrealloc(s, in->rnd_count, ncap * sizeof(*nc));
		if (nc == NULL)
			return;
		in->rnd_count = nc;
		nn = sim_xrealloc(s, in->rnd_nonce, ncap * sizeof(*nn));
		if (nn == NULL)
			return;
		in->rnd_nonce = nn;
		memset(nc + in->cap_rnd, 0, (ncap - in->cap_rnd) * sizeof(*nc));
		memset(nn + in->cap_rnd, 0, (ncap - in->cap_rnd) * sizeof(*nn));
		in->cap_rnd = ncap;
	}
	for (uint64_t slot = m->accept.first_slot; slot <= last; slot++) {
		if (in->rnd_nonce[slot] != m->nonce || in->rnd_count[slot] == 0) {
			in->rnd_nonce[slot] = m->nonce;
			in->rnd_count[slot]++;
		}
	}
}

static void sim_rounds_on_note(struct sim *s, const struct instance *ins,
			       const struct paxos_note *n, bool write)
{
	const struct pinst *in = PX(ins);
	uint64_t rounds = 1;

	if (n->outcome == PAXOS_OUTCOME_APPLIED)
		rounds = n->slot < in->cap_rnd && in->rnd_count[n->slot] ? in->rnd_count[n->slot]
									 : 1;
	else if (n->outcome != PAXOS_OUTCOME_READ)
		return;
	if (write) {
		s->rep->writes_ok++;
		s->rep->write_rounds += rounds;
	} else {
		s->rep->reads_ok++;
		s->rep->read_rounds += rounds;
	}
}
/* ---- end of rounds per client op ---- */

/* The ordering rules of paxos.h, checked on every message a core sends: no PREPARE or
 * positive PROMISE before the promise of its ballot is durable, no synced ACCEPTED before the
 * records holding its slots are, and (DESIGN.md section 4) no vote from a suspicious replica
 * (reported at the end of the run, which goes on). */

/* Exactly once in the log: a client command (one attempt) is chosen in one slot; a command the
 * core declared NOT_LEADER or BUSY is never chosen. */
static void check_exactly_once(struct sim *s, const struct paxos_apply *a)
{
	struct paxos_command cmd;
	size_t off = 0;

	while (paxos_batch_next(a->value, a->len, &off, &cmd)) {
		struct attempt *at;

		if (cmd.request_id >= s->n_attempts)
			continue;
		at = &s->attempts[cmd.request_id];
		if (at->chosen_slot != 0 && at->chosen_slot != a->slot)
			sim_violation(s,
				      "client %d's request %" PRIu64
				      " was committed twice, in slots "
				      "%" PRIu64 " and %" PRIu64,
				      at->client, cmd.request_id, at->chosen_slot, a->slot);
		if (at->outcome == PAXOS_OUTCOME_NOT_LEADER || at->outcome == PAXOS_OUTCOME_BUSY)
			sim_violation(
				s,
				"client %d's request %" PRIu64 " was reported %s but committed "
				"in slot %" PRIu64,
				at->client, cmd.request_id,
				at->outcome == PAXOS_OUTCOME_BUSY ? "BUSY" : "NOT_LEADER", a->slot);
		at->chosen_slot = a->slot;
	}
}

static void apply_slot(struct sim *s, int idx, const struct paxos_apply *a)
{
	struct instance *in = &s->insts[idx];
	struct paxos_command cmd;
	size_t off = 0;

	if (sim_check_apply(s, in, a))
		check_exactly_once(s, a);
	while (paxos_batch_next(a->value, a->len, &off, &cmd)) {
		uint8_t *res = NULL;
		size_t res_len = 0;
		int rc = kv_apply_encoded(PX(in)->kv, cmd.command, cmd.len, &res, &res_len);

		if (rc == TEEMS_ENOMEM) {
			s->err = rc;
			s->done = true;
			return;
		}
		if (rc != TEEMS_OK) {
			sim_violation(s, "replica %d: slot %" PRIu64 " holds a command kv refuses",
				      in->replica, a->slot);
			free(res);
			return;
		}
		if (cmd.request_id < s->n_attempts) {
			struct attempt *at = &s->attempts[cmd.request_id];

			if (at->inst == idx && !at->have_result) {
				at->have_result = true;
				at->result = malloc(res_len);
				if (at->result != NULL) {
					memcpy(at->result, res, res_len);
					at->result_len = res_len;
				}
			}
		}
		teems_free(res);
	}
}

/* A read-index read the core answered: run it on this replica's state after the ready's
 * applies, which must have reached the read index. */
static bool serve_read(struct sim *s, struct instance *in, const struct paxos_note *n)
{
	struct attempt *at = &s->attempts[n->request_id];
	struct client *cl = &s->clients[at->client];
	struct kv_result kr;
	size_t len;

	if (in->applied < n->slot) {
		sim_violation(
			s, "replica %d served a read at index %" PRIu64 " having applied %" PRIu64,
			in->replica, n->slot, in->applied);
		return false;
	}
	kv_get(PX(in)->kv, cl->key, 3, &kr);
	len = kv_result_size(&kr);
	free(at->result);
	at->result = malloc(len);
	if (at->result == NULL || kv_result_encode(&kr, at->result, len, &len) != TEEMS_OK) {
		s->err = TEEMS_ENOMEM;
		s->done = true;
		return false;
	}
	at->result_len = len;
	at->have_result = true;
	return true;
}

/* The ready's notes: client outcomes (and read-index reads to serve). */
static bool take_notes(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	struct paxos_ready *r = &in->r;

	for (size_t k = 0; k < r->n_notes && !s->done; k++) {
		const struct paxos_note *n = &r->notes[k];

		if (n->request_id >= s->n_attempts || s->attempts[n->request_id].inst != idx)
			continue;
		if (n->outcome == PAXOS_OUTCOME_READ && !serve_read(s, in, n))
			return false;
		sim_rounds_on_note(s, in, n, /* rounds per client op */
				   s->clients[s->attempts[n->request_id].client].cmd.op != KV_GET);
		s->attempts[n->request_id].outcome = (int)n->outcome;
		s->attempts[n->request_id].leader = n->leader;
		if ((n->outcome == PAXOS_OUTCOME_NOT_LEADER || n->outcome == PAXOS_OUTCOME_BUSY) &&
		    s->attempts[n->request_id].chosen_slot != 0)
			sim_violation(s,
				      "request %" PRIu64
				      " reported %s after it was committed in slot %" PRIu64,
				      n->request_id,
				      n->outcome == PAXOS_OUTCOME_BUSY ? "BUSY" : "NOT_LEADER",
				      s->attempts[n->request_id].chosen_slot);
		sim_client_reply_later(s, n->request_id);
	}
	return true;
}

static unsigned paxos_unsafe(unsigned unsafe)
{
	return unsafe & ~SIM_UNSAFE_TOTAL_CRASH_ROLLBACK;
}

static void paxos_config(struct sim *s, struct paxos_config *cfg)
{
	cfg->t_restart_ns = T_RESTART;
}

static int inst_open(struct sim *s, int idx, struct store_wal_opts *wo, uint64_t paxos_records,
		     char *records, size_t len)
{
	struct instance *in = &s->insts[idx];
	struct pinst *x = &((struct pstate *)s->es)->x[idx];

	int rc;

	memset(x, 0, sizeof(*x));
	in->ext = x;
	rc = kv_new(&x->kv);
	if (rc != TEEMS_OK || in->restore_state == NULL)
		return rc;
	/* Restarted from a snapshot: its state machine, then the slots after it. */
	rc = kv_restore(x->kv, in->restore_state, in->restore_state_len);
	if (rc == TEEMS_ENOMEM)
		return rc;
	if (rc != TEEMS_OK) {
		sim_violation(s,
			      "replica %d: kv refuses the state of its snapshot of slot %" PRIu64,
			      in->replica, in->restore_slot);
		return 1;
	}
	return TEEMS_OK;
}

/* ---- snapshots (paxos.h "Snapshots and compaction") ---- */

static void install_snapshot(struct sim *s, int idx, const struct paxos_snapshot_out *snap)
{
	struct instance *in = &s->insts[idx];
	int rc = kv_restore(PX(in)->kv, snap->state, snap->state_len);

	if (rc == TEEMS_ENOMEM) {
		s->err = rc;
		s->done = true;
	} else if (rc != TEEMS_OK) {
		sim_violation(s,
			      "replica %d: kv refuses the state of the snapshot of slot %" PRIu64,
			      in->replica, snap->slot);
	}
}

/* Every snap_every applied slots, between two steps: serialize the kv, hand it to the core
 * (which compacts its log), persist what it returns. */
static void maybe_snapshot(struct sim *s, int idx)
{
	struct instance *in = &s->insts[idx];
	uint8_t *state = NULL;
	const uint8_t *blob;
	size_t len = 0, blob_len;
	int rc;

	if (!s->snap_every || in->applied < paxos_snapshot_index(in->p) + s->snap_every)
		return;
	rc = kv_snapshot(PX(in)->kv, &state, &len);
	if (rc == TEEMS_OK) {
		sim_check_state(s, in, in->applied, state, len);
		rc = paxos_snapshot_taken(in->p, in->applied, state, len, &blob, &blob_len);
	}
	teems_free(state);
	if (rc != TEEMS_OK) {
		s->err = rc;
		s->done = true;
		return;
	}
	sim_snapshot_persist(s, idx, blob, blob_len, in->applied);
}

static void inst_free(struct sim *s, struct instance *in)
{
	struct pinst *x = PX(in);

	if (x == NULL)
		return;
	free(x->rnd_count); /* rounds per client op */
	free(x->rnd_nonce);
	x->rnd_count = NULL;
	x->rnd_nonce = NULL;
	x->cap_rnd = 0;
	kv_free(x->kv);
	x->kv = NULL;
}

/* ---- clients ---- */

static bool client_op(struct sim *s, int c, uint64_t r, int n, struct history_op *op)
{
	struct client *cl = &s->clients[c];
	unsigned k = 10u * (unsigned)(cl->key[1] - '0') + (unsigned)(cl->key[2] - '0');

	memset(&cl->cmd, 0, sizeof(cl->cmd));
	cl->cmd.key = cl->key;
	cl->cmd.key_len = 3;
	if (r < 40) {
		cl->cmd.op = KV_GET;
	} else if (r < 70) {
		cl->cmd.op = KV_SET;
	} else if (r < 95) {
		cl->cmd.op = KV_CAS;
		cl->cmd.expected_version = cl->versions[k] + (rng_pct(&s->rng, 20) ? 1 : 0);
	} else {
		cl->cmd.op = KV_DEL;
	}
	if (cl->cmd.op == KV_SET || cl->cmd.op == KV_CAS) {
		cl->cmd.value = cl->value;
		cl->cmd.value_len = (uint32_t)n;
	}
	if (kv_cmd_encode(&cl->cmd, cl->enc, sizeof(cl->enc), &cl->enc_len) != TEEMS_OK) {
		sim_violation(s, "client %d: kv_cmd_encode failed", c);
		return false;
	}
	op->type = cl->cmd.op == KV_GET	  ? HISTORY_GET
		   : cl->cmd.op == KV_SET ? HISTORY_SET
		   : cl->cmd.op == KV_CAS ? HISTORY_CAS
					  : HISTORY_DEL;
	if (cl->cmd.value_len || cl->cmd.op == KV_SET || cl->cmd.op == KV_CAS) {
		op->value.data = cl->value;
		op->value.len = cl->cmd.value_len;
	}
	op->expected_version = cl->cmd.expected_version;
	return true;
}

static void reply(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct history_result hr;
	struct kv_result kr;

	switch ((enum paxos_outcome)at->outcome) {
	case PAXOS_OUTCOME_READ:
	case PAXOS_OUTCOME_APPLIED:
		if (!at->have_result || at->result == NULL ||
		    kv_result_decode(at->result, at->result_len, &kr) != TEEMS_OK) {
			sim_violation(s, "replica %d reported APPLIED without applying the command",
				      s->insts[at->inst].replica);
			return;
		}
		memset(&hr, 0, sizeof(hr));
		hr.version_known = true;
		hr.version = kr.version;
		hr.found = kr.found;
		hr.cas_ok = kr.status == KV_OK;
		hr.value.data = kr.value;
		hr.value.len = kr.value_len;
		{
			unsigned k =
				10u * (unsigned)(cl->key[1] - '0') + (unsigned)(cl->key[2] - '0');

			if (k < 16)
				cl->versions[k] = kr.version;
		}
		if (cl->final_reader && cl->cmd.op == KV_GET)
			cl->next_final++;
		sim_complete_op(s, at->client, HISTORY_OK, &hr);
		return;
	case PAXOS_OUTCOME_UNKNOWN:
		sim_complete_op(s, at->client, HISTORY_UNKNOWN, NULL);
		return;
	case PAXOS_OUTCOME_NOT_LEADER:
	case PAXOS_OUTCOME_BUSY:
		/* Definitely not applied: the same op tries again (the history sees one op). */
		if (at->outcome == PAXOS_OUTCOME_NOT_LEADER && at->leader != MSG_NO_REPLICA &&
		    at->leader < s->o.n && at->leader != s->insts[at->inst].replica)
			cl->hint = at->leader;
		sim_schedule(s,
			     s->now + (at->outcome == PAXOS_OUTCOME_BUSY
					       ? rng_range(&s->rng, 10 * MS, 50 * MS)
					       : rng_range(&s->rng, 1 * MS, 20 * MS)),
			     EV_RETRY, (uint64_t)at->client, a, NULL, 0);
		return;
	default:
		/* An outcome of a kind of request the simulator never makes (the optimized
		 * read's, for now). */
		sim_violation(s, "replica %d answered client %d with unexpected outcome %d",
			      s->insts[at->inst].replica, at->client, at->outcome);
		return;
	}
}

static void propose(struct sim *s, size_t a)
{
	struct attempt *at = &s->attempts[a];
	struct client *cl = &s->clients[at->client];
	struct paxos_input pi;

	memset(&pi, 0, sizeof(pi));
	pi.type = PAXOS_IN_PROPOSE;
	pi.propose.client_id = (uint64_t)at->client + 1;
	pi.propose.request_id = a;
	pi.propose.command = cl->enc;
	pi.propose.len = (uint32_t)cl->enc_len;
	if (s->o.reads == SIM_READS_LOCAL && cl->cmd.op == KV_GET && !cl->final_reader) {
		/* Negative control for the linearizability checker: a stale replica answers. */
		struct paxos_note n = {0};

		n.client_id = (uint64_t)at->client + 1;
		n.request_id = a;
		n.outcome = PAXOS_OUTCOME_READ;
		n.slot = s->insts[at->inst].applied;
		at->outcome = PAXOS_OUTCOME_READ;
		if (serve_read(s, &s->insts[at->inst], &n))
			sim_client_reply_later(s, a);
		return;
	}
	if (s->o.reads == SIM_READS_INDEX && cl->cmd.op == KV_GET && !cl->final_reader) {
		/* The read-index path (paxos.h PAXOS_IN_READ) instead of the log. */
		memset(&pi, 0, sizeof(pi));
		pi.type = PAXOS_IN_READ;
		pi.read.client_id = (uint64_t)at->client + 1;
		pi.read.request_id = a;
	}
	sim_step(s, at->inst, &pi);
}

/* No lost acknowledged write, directly: after the heal, the final read of each key must see
 * at least the highest version any acknowledged write of that key produced (versions only
 * grow). Linearizability implies it; this names the loss plainly. */
static void check_lost_writes(struct sim *s)
{
	for (unsigned k = 0; k < s->o.keys; k++) {
		uint8_t key[3];
		uint64_t acked = 0, final = 0;
		const struct history_op *ack_op = NULL;
		bool have_final = false;

		sim_encode_key(key, k);
		for (size_t i = 0; i < s->hist.n; i++) {
			const struct history_op *op = &s->hist.ops[i];

			if (op->outcome != HISTORY_OK || op->key.len != 3 ||
			    memcmp(op->key.data, key, 3) != 0)
				continue;
			if (op->client == 1 && op->type == HISTORY_GET &&
			    op->invoke >= s->final_time) {
				final = op->result.version;
				have_final = true;
			} else if ((op->type == HISTORY_SET || op->type == HISTORY_DEL ||
				    (op->type == HISTORY_CAS && op->result.cas_ok)) &&
				   op->result.version > acked) {
				acked = op->result.version;
				ack_op = op;
			}
		}
		if (have_final && final < acked)
			sim_violation(s,
				      "lost acknowledged write: key k%02u: client %" PRIu64
				      " op %" PRIu64 " was acknowledged with version %" PRIu64
				      ", the final read after the heal returns version %" PRIu64,
				      k, ack_op->client, ack_op->op_id, acked, final);
	}
}

static const struct {
	const char *name;
	unsigned bits;
} unsafe_names[] = {
	{"no-fence", PAXOS_UNSAFE_NO_FENCE},
	{"cft-quorums", PAXOS_UNSAFE_CFT_QUORUMS},
	{"no-incarnation-check", PAXOS_UNSAFE_NO_INCARNATION_CHECK},
	{"no-recovery", PAXOS_UNSAFE_NO_RECOVERY},
	{"skip-adopt", PAXOS_UNSAFE_SKIP_ADOPT},
	{"short-promise", PAXOS_UNSAFE_SHORT_PROMISE},
	/* the adversary, not the core: rollbacks and forks on top of a total crash under rr */
	{"total-crash-rollback", SIM_UNSAFE_TOTAL_CRASH_ROLLBACK},
};

bool sim_parse_unsafe(const char *name, unsigned *out)
{
	for (size_t i = 0; i < sizeof(unsafe_names) / sizeof(unsafe_names[0]); i++) {
		if (strcmp(name, unsafe_names[i].name) == 0) {
			*out |= unsafe_names[i].bits;
			return true;
		}
	}
	return false;
}

const char *sim_unsafe_names(void)
{
	return "no-fence, cft-quorums, no-incarnation-check, no-recovery, skip-adopt, "
	       "short-promise, total-crash-rollback";
}

static const struct sim_engine paxos_engine = {
	.paxos_unsafe = paxos_unsafe,
	.unsafe_total_crash_rollback = SIM_UNSAFE_TOTAL_CRASH_ROLLBACK,
	.paxos_config = paxos_config,
	.inst_open = inst_open,
	.inst_free = inst_free,
	.apply = apply_slot,
	.install = install_snapshot,
	.after_ready = maybe_snapshot,
	.notes = take_notes,
	.on_send = sim_rounds_on_send,
	.client_op = client_op,
	.propose = propose,
	.reply = reply,
	.end_checks = check_lost_writes,
	.state_size = sizeof(struct pstate),
};

int sim_run(const struct sim_options *opt, struct sim_report *report)
{
	return sim_world_run(&paxos_engine, opt, report);
}
