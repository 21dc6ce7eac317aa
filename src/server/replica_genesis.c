/* The genesis check: may a replica that finds no state on its disk start as a member of the
 * initial configuration?
 *
 * An empty data directory is what a replica has before the cluster's first start, and also
 * what the host can hand it at any later time: rolling a replica back to before its first start
 * (DESIGN.md section 2 allows rollback to "none"). A member of the initial configuration votes
 * at once as registration (0,0); a replica that did so after a rollback would vote with an empty
 * log and could, with one lagging peer, form a quorum that forgets acknowledged writes
 * (nemesis_rollback_empty reproduces it). Nothing on this disk can tell the two cases apart: the
 * "booted" marker is rolled back with everything else.
 *
 * So the first boot asks every peer, over the attested channels, whether it has ever run. A peer
 * is pristine while it is in this check itself, or booted as a genesis member and has not
 * appended a single WAL record since. Only if all N - 1 peers answer pristine to the same probe
 * does the replica start as a genesis member; one answer "not pristine" makes it a restarted
 * incarnation (register, fence, recover: DESIGN.md section 4), which is always safe and merely
 * slower. Until then the core gets no input and clients get TRYAGAIN.
 *
 * Why all peers pristine means no vote was ever counted: the first vote of the cluster's life is
 * a candidate's promise to itself, persisted (synced) before its PREPARE leaves, and a counted
 * vote quorum has W_Q > M_R members who persisted their promise. If anything was ever counted,
 * at least one of them is not rolled back, so it answers "not pristine". A probe answered before
 * that replica's first promise cannot be about a vote cast earlier either: the earlier
 * incarnation of this replica died before this check began, and a promise it sent answers a
 * PREPARE that was persisted, by its candidate, before it was sent.
 *
 * Wire: MSG_CLIENT_REQUEST whose command is the single flag byte RP_FWD_GENESIS, request_id a
 * nonce with the top bit set (never a client request's id); the answer is a MSG_CLIENT_REPLY with
 * the same ids, status OK and a one-byte result, 1 for pristine, 0 for not. */
#include <inttypes.h>
#include <string.h>

#include "server/replica_internal.h"
#include "teems/err.h"

#define GENESIS_PROBE_NS (100 * RP_MS)
#define GENESIS_NONCE_BIT (1ull << 63)

static bool pristine(const struct replica *r)
{
	return r->genesis.pending || (r->first_boot && r->appended_index == 0);
}

void rp_genesis_begin(struct replica *r)
{
	r->genesis.pending = true;
	r->genesis.answered = 0;
	r->genesis.nonce = 0;
	r->genesis.next_probe_ns = 0;
	rp_log(r, "first boot: asking every peer whether the cluster has run before (an empty "
		  "data directory may be a rollback to before this replica's first start)");
}

static void probe(struct replica *r)
{
	static const uint8_t flag = RP_FWD_GENESIS;
	struct msg m;

	r->genesis.nonce = (r->genesis.nonce + 1) | GENESIS_NONCE_BIT;
	r->genesis.answered = 0;
	r->genesis.rounds++;
	for (uint16_t to = 0; to < r->n; to++) {
		if (to == r->self)
			continue;
		memset(&m, 0, sizeof(m));
		rp_msg_header(r, &m);
		m.type = MSG_CLIENT_REQUEST;
		m.client_request.client_id = r->client_id;
		m.client_request.request_id = r->genesis.nonce;
		m.client_request.command.p = &flag;
		m.client_request.command.len = 1;
		rp_send_msg(r, to, &m);
	}
}

void rp_genesis_tick(struct replica *r)
{
	if (!r->genesis.pending)
		return;
	rp_read_clock(r);
	if (r->now.hi_ns < r->genesis.next_probe_ns)
		return;
	r->genesis.next_probe_ns = r->now.hi_ns + GENESIS_PROBE_NS;
	probe(r);
}

static void answer(struct replica *r, uint16_t from, const struct msg *q)
{
	uint8_t verdict = pristine(r) ? 1 : 0;
	struct msg m;

	memset(&m, 0, sizeof(m));
	rp_msg_header(r, &m);
	m.type = MSG_CLIENT_REPLY;
	m.client_reply.client_id = q->client_request.client_id;
	m.client_reply.request_id = q->client_request.request_id;
	m.client_reply.status = MSG_CLIENT_OK;
	m.client_reply.leader = MSG_NO_REPLICA;
	m.client_reply.result.p = &verdict;
	m.client_reply.result.len = 1;
	rp_send_msg(r, from, &m);
}

static void decide(struct replica *r, bool fresh, uint16_t witness)
{
	char errbuf[TEEMS_ERRBUF_LEN];
	int rc;

	r->genesis.pending = false;
	if (fresh) {
		rp_log(r,
		       "first boot confirmed by every peer (%" PRIu64 " probe rounds): a member "
		       "of the initial configuration",
		       r->genesis.rounds);
		return;
	}
	r->first_boot = false;
	rc = rp_new_core(r, true, errbuf);
	if (rc != TEEMS_OK) {
		rp_halt(r, "engine: %s", errbuf);
		return;
	}
	rp_log(r,
	       "r%u has run before: this empty data directory is not the cluster's first start "
	       "(a rollback, or a replaced disk); registering as a new incarnation",
	       (unsigned)witness);
}

bool rp_genesis_frame(struct replica *r, uint16_t from, const struct msg *m)
{
	if (m->type == MSG_CLIENT_REQUEST) {
		const struct msg_client_request *q = &m->client_request;

		if (q->command.len < 1 || q->command.p[0] != RP_FWD_GENESIS)
			return false;
		if (q->command.len != 1 || !(q->request_id & GENESIS_NONCE_BIT))
			r->stats.bad_frames++;
		else
			answer(r, from, m);
		return true;
	}
	if (m->type == MSG_CLIENT_REPLY) {
		const struct msg_client_reply *a = &m->client_reply;

		if (!(a->request_id & GENESIS_NONCE_BIT))
			return false;
		/* An answer to an older round, or after the decision: nothing to learn. */
		if (!r->genesis.pending || a->client_id != r->client_id ||
		    a->request_id != r->genesis.nonce)
			return true;
		if (a->status != MSG_CLIENT_OK || a->result.len != 1 || a->result.p[0] > 1) {
			r->stats.bad_frames++;
			return true;
		}
		if (a->result.p[0] == 0) {
			decide(r, false, from);
			return true;
		}
		r->genesis.answered |= 1ull << from;
		for (uint16_t i = 0; i < r->n; i++)
			if (i != r->self && !(r->genesis.answered & (1ull << i)))
				return true;
		decide(r, true, from);
		return true;
	}
	return false;
}

bool rp_genesis_pending(const struct replica *r)
{
	return r->genesis.pending;
}
