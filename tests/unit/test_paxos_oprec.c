/* RR-Paxos: the operator-authorized epoch restart (recovery = operator; DESIGN.md section 6,
 * "Authorization"; docs/PROTOCOL.md "Operator-authorized restart").
 *
 * Reuses test_paxos_rr.c's deterministic cluster (it is included below, its main renamed, and
 * every core it creates goes through oprec_paxos_new, which turns restart_operator on with a
 * real Ed25519 operator key while g_oprec is set).
 *
 * Tests:
 *   waits        after a total crash nobody leads, nothing is accepted, the epoch stays, for
 *                many T_restart; exactly one proposer waits with a configuration naming one
 *                incarnation per replica; its answerers do not take the floor from it
 *   refused      a signature by another key, or by the operator over another cluster,
 *                epoch, proposal or configuration, is refused (TEEMS_EAUTH); a core that is
 *                not waiting says TEEMS_ENOTFOUND; bad lengths TEEMS_EINVAL; still no leader
 *   authorized   the operator's signature of the waiting proposal: epoch 1, every
 *                acknowledged write kept, the cluster commits again; then a second total
 *                crash: the first authorization replayed is refused, a new one brings epoch 2
 *   acceptor     a RESTART_ACCEPT with a bad authorization (forged, or the proposer's valid
 *                one for a different configuration) is refused by an answerer, counted, and
 *                nothing is persisted or sent for it
 *   no verifier  restart_operator without a verifier: nothing ever completes */
#include <openssl/evp.h>

#include "core/paxos.h"

static int oprec_paxos_new(struct paxos **out, const struct paxos_config *cfg, char *errbuf);
int test_paxos_rr_main(void);

#define paxos_new oprec_paxos_new
#define main test_paxos_rr_main
#include "test_paxos_rr.c"
#undef main
#undef paxos_new

static bool g_oprec;
static bool g_no_verifier;
static EVP_PKEY *g_op_key;    /* the operator's key */
static EVP_PKEY *g_other_key; /* somebody else's */
static uint8_t g_op_pub[32];
static const uint8_t g_cluster[PAXOS_RESTART_CLUSTER_ID_LEN] = {
	0xc1, 0x05, 0x7e, 0x12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static bool verify_ed25519(const uint8_t key[MSG_PUBLIC_KEY_SIZE], const uint8_t *msg, size_t len,
			   const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = false;

	if (pk && md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1)
		ok = EVP_DigestVerify(md, sig, sig_len, msg, len) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	return ok;
}

static int oprec_paxos_new(struct paxos **out, const struct paxos_config *cfg, char *errbuf)
{
	struct paxos_config c = *cfg;

	if (g_oprec) {
		c.restart_operator = true;
		memcpy(c.restart_cluster_id, g_cluster, sizeof(g_cluster));
		memcpy(c.restart_operator_key, g_op_pub, sizeof(g_op_pub));
		c.restart_verify = g_no_verifier ? NULL : verify_ed25519;
	}
	return paxos_new(out, &c, errbuf);
}

static void sign(EVP_PKEY *key, const uint8_t *msg, size_t len, uint8_t sig[64])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t sig_len = 64;

	assert_non_null(md);
	assert_int_equal(EVP_DigestSignInit(md, NULL, NULL, NULL, key), 1);
	assert_int_equal(EVP_DigestSign(md, sig, &sig_len, msg, len), 1);
	assert_int_equal(sig_len, 64);
	EVP_MD_CTX_free(md);
}

static int op_setup(void **state)
{
	size_t n = 32;

	(void)state;
	g_op_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	g_other_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!g_op_key || !g_other_key || EVP_PKEY_get_raw_public_key(g_op_key, g_op_pub, &n) != 1)
		return -1;
	return 0;
}

static int op_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(g_op_key);
	EVP_PKEY_free(g_other_key);
	return 0;
}

/* The one node waiting for the operator (-1: none; fails on two). */
static int waiting_node(struct cluster *c)
{
	int w = -1;

	for (int i = 0; i < c->nn; i++) {
		struct paxos_restart_view v;

		if (!c->nodes[i].up || c->nodes[i].halted)
			continue;
		paxos_restart_view(c->nodes[i].p, &v);
		if (v.phase == PAXOS_RESTART_WAITING) {
			assert_int_equal(w, -1);
			w = i;
		}
	}
	return w;
}

static bool someone_waits(struct cluster *c, int unused)
{
	(void)unused;
	return waiting_node(c) >= 0;
}

/* A 3,1,1 cluster with 10 acknowledged writes, then a total crash; runs until one proposer
 * waits. Returns the commit index before the crash. */
static uint64_t crash_and_wait(struct cluster *c)
{
	uint64_t top;

	g_oprec = true;
	restart_cluster(c, 3, 1, 1, 10);
	top = paxos_commit_index(c->nodes[0].p);
	total_crash(c);
	assert_true(run_until(c, 20 * T_RESTART, someone_waits, 0));
	return top;
}

/* Nobody leads, nobody is fresh, everyone is still in `epoch`. */
static void check_stalled(struct cluster *c, uint64_t epoch)
{
	for (int i = 0; i < c->nn; i++) {
		if (!c->nodes[i].up || c->nodes[i].halted)
			continue;
		assert_int_not_equal(paxos_role(c->nodes[i].p), PAXOS_LEADER);
		assert_true(paxos_suspicious(c->nodes[i].p));
		assert_int_equal(paxos_epoch(c->nodes[i].p), epoch);
	}
}

static void sign_waiting(struct cluster *c, int w, EVP_PKEY *key, uint8_t sig[64])
{
	uint8_t msg[PAXOS_RESTART_AUTH_MSG_MAX];
	size_t len;

	assert_int_equal(paxos_restart_auth_message(c->nodes[w].p, msg, sizeof(msg), &len),
			 TEEMS_OK);
	sign(key, msg, len, sig);
}

static void test_waits(void **state)
{
	struct cluster c;
	struct paxos_restart_view v, v2;
	int w;

	(void)state;
	crash_and_wait(&c);
	w = waiting_node(&c);
	paxos_restart_view(c.nodes[w].p, &v);
	assert_int_equal(v.epoch, 0);
	assert_true(v.stuck);
	assert_true(v.answered);
	assert_int_equal(v.proposal.replica, c.nodes[w].id);
	assert_true(v.n_members >= 2 && v.n_members <= 3);
	for (uint32_t k = 0; k < v.n_members; k++) {
		assert_int_equal(v.members[k].reg.epoch, 1);
		assert_true(v.members[k].reg.slot != 0);
		if (k)
			assert_true(v.members[k].replica > v.members[k - 1].replica);
	}
	/* Waiting is stable: the same proposal, for a long time, and nothing completes. */
	run(&c, 30 * T_RESTART);
	check_stalled(&c, 0);
	assert_int_equal(waiting_node(&c), w);
	paxos_restart_view(c.nodes[w].p, &v2);
	assert_int_equal(msg_ballot_cmp(&v.proposal, &v2.proposal), 0);
	assert_int_equal(v2.n_members, v.n_members);
	assert_memory_equal(v2.members, v.members, v.n_members * sizeof(v.members[0]));
	assert_false(c.violation);
	cluster_free(&c);
	g_t_restart = 0;
	g_oprec = false;
}

static void test_refused(void **state)
{
	struct cluster c;
	struct paxos_restart_view v;
	uint8_t msg[PAXOS_RESTART_AUTH_MSG_MAX], sig[64], other[PAXOS_RESTART_CLUSTER_ID_LEN];
	struct msg_ballot b;
	size_t len;
	int w;

	(void)state;
	crash_and_wait(&c);
	w = waiting_node(&c);
	paxos_restart_view(c.nodes[w].p, &v);
	/* another key over the right message */
	sign_waiting(&c, w, g_other_key, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_EAUTH);
	/* the right key over another cluster */
	memcpy(other, g_cluster, sizeof(other));
	other[0] ^= 1;
	len = paxos_restart_auth_bytes(other, 0, &v.proposal, v.members, v.n_members,
				       (const uint8_t[MSG_DIGEST_SIZE]){0}, msg);
	sign(g_op_key, msg, len, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_EAUTH);
	/* ... another epoch */
	len = paxos_restart_auth_bytes(g_cluster, 1, &v.proposal, v.members, v.n_members,
				       (const uint8_t[MSG_DIGEST_SIZE]){0}, msg);
	sign(g_op_key, msg, len, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_EAUTH);
	/* ... another proposal number */
	b = v.proposal;
	b.round++;
	len = paxos_restart_auth_bytes(g_cluster, 0, &b, v.members, v.n_members,
				       (const uint8_t[MSG_DIGEST_SIZE]){0}, msg);
	sign(g_op_key, msg, len, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_EAUTH);
	/* ... another configuration (one member fewer) */
	len = paxos_restart_auth_bytes(g_cluster, 0, &v.proposal, v.members, v.n_members - 1,
				       (const uint8_t[MSG_DIGEST_SIZE]){0}, msg);
	sign(g_op_key, msg, len, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_EAUTH);
	/* lengths; a node that does not wait */
	sign_waiting(&c, w, g_op_key, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 0), TEEMS_EINVAL);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, MSG_MAX_AUTH + 1),
			 TEEMS_EINVAL);
	assert_int_equal(paxos_restart_auth_message(c.nodes[w].p, msg, 10, &len), TEEMS_EFULL);
	for (int i = 0; i < c.nn; i++) {
		if (i == w)
			continue;
		assert_int_equal(paxos_restart_authorize(c.nodes[i].p, sig, 64), TEEMS_ENOTFOUND);
		assert_int_equal(paxos_restart_auth_message(c.nodes[i].p, msg, sizeof(msg), &len),
				 TEEMS_ENOTFOUND);
	}
	run(&c, 10 * T_RESTART);
	check_stalled(&c, 0);
	cluster_free(&c);
	g_t_restart = 0;
	g_oprec = false;
}

static void test_authorized(void **state)
{
	struct cluster c;
	uint8_t sig[64], old_sig[64];
	uint64_t top;
	int w;

	(void)state;
	top = crash_and_wait(&c);
	w = waiting_node(&c);
	sign_waiting(&c, w, g_op_key, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_OK);
	memcpy(old_sig, sig, sizeof(sig));
	check_after_restart(&c, top, 1);

	/* A second total crash: the first authorization, replayed, authorizes nothing. */
	top = paxos_commit_index(c.nodes[leader_of(&c)].p);
	total_crash(&c);
	assert_true(run_until(&c, 20 * T_RESTART, someone_waits, 0));
	w = waiting_node(&c);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, old_sig, 64), TEEMS_EAUTH);
	run(&c, 5 * T_RESTART);
	check_stalled(&c, 1);
	w = waiting_node(&c);
	assert_true(w >= 0);
	sign_waiting(&c, w, g_op_key, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_OK);
	check_after_restart(&c, top, 2);
	cluster_free(&c);
	g_t_restart = 0;
	g_oprec = false;
}

/* Delivers `m` (from node `from`) to node `to` alone; returns the messages it queued. */
static size_t deliver_one(struct cluster *c, int from, int to, struct msg *m)
{
	struct paxos_input in = {.type = PAXOS_IN_MESSAGE};
	size_t before = c->nq, recs = c->nodes[to].n_wal;

	m->from.replica = (uint16_t)c->nodes[from].id;
	in.message = m;
	step(c, to, &in);
	assert_int_equal(c->nodes[to].n_wal, recs); /* nothing persisted */
	return c->nq - before;
}

static void test_acceptor_verifies(void **state)
{
	struct cluster c;
	struct paxos_restart_view v, va;
	uint8_t sig[64];
	struct msg m;
	int w, a = -1;

	(void)state;
	crash_and_wait(&c);
	w = waiting_node(&c);
	paxos_restart_view(c.nodes[w].p, &v);
	for (int i = 0; i < c.nn && a < 0; i++) {
		struct paxos_restart_view x;

		paxos_restart_view(c.nodes[i].p, &x);
		if (i != w && x.answered && msg_ballot_cmp(&x.promised, &v.proposal) == 0)
			a = i;
	}
	assert_true(a >= 0);
	drain(&c);

	memset(&m, 0, sizeof(m));
	m.type = MSG_RESTART_ACCEPT;
	m.from.reg.epoch = 0;
	m.suspicious = true;
	m.nonce = 1;
	m.restart_accept.epoch = 0;
	m.restart_accept.proposal = v.proposal;
	m.restart_accept.members.count = v.n_members;
	m.restart_accept.members.items = v.members;
	/* no authorization, then a forged one */
	assert_int_equal(deliver_one(&c, w, a, &m), 0);
	memset(sig, 0x5a, sizeof(sig));
	m.restart_accept.authorization.p = sig;
	m.restart_accept.authorization.len = 64;
	assert_int_equal(deliver_one(&c, w, a, &m), 0);
	/* the operator's signature of the proposal, attached to another configuration */
	sign_waiting(&c, w, g_op_key, sig);
	m.restart_accept.members.count = v.n_members - 1;
	assert_int_equal(deliver_one(&c, w, a, &m), 0);
	paxos_restart_view(c.nodes[a].p, &va);
	assert_int_equal(va.auth_refused, 3);
	/* ... and to the configuration it names: accepted (persisted, then answered) */
	m.restart_accept.members.count = v.n_members;
	{
		struct paxos_input in = {.type = PAXOS_IN_MESSAGE};
		size_t recs = c.nodes[a].n_wal;

		in.message = &m;
		step(&c, a, &in);
		assert_true(c.nodes[a].n_wal > recs);
	}
	paxos_restart_view(c.nodes[a].p, &va);
	assert_int_equal(va.auth_refused, 3);
	cluster_free(&c);
	g_t_restart = 0;
	g_oprec = false;
}

static void test_no_verifier(void **state)
{
	struct cluster c;
	uint8_t sig[64];
	int w;

	(void)state;
	g_no_verifier = true;
	crash_and_wait(&c);
	w = waiting_node(&c);
	sign_waiting(&c, w, g_op_key, sig);
	assert_int_equal(paxos_restart_authorize(c.nodes[w].p, sig, 64), TEEMS_EAUTH);
	run(&c, 5 * T_RESTART);
	check_stalled(&c, 0);
	cluster_free(&c);
	g_t_restart = 0;
	g_oprec = false;
	g_no_verifier = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_waits),	    cmocka_unit_test(test_refused),
		cmocka_unit_test(test_authorized),  cmocka_unit_test(test_acceptor_verifies),
		cmocka_unit_test(test_no_verifier),
	};

	return cmocka_run_group_tests(tests, op_setup, op_teardown);
}
