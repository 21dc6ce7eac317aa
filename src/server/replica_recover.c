/* recovery = operator in teemsd: the operator key, the restart status and TEEMS.RECOVER
 * (replica_recover.h). The core decides and verifies (paxos_restart.c); this file only loads
 * the key, shows what waits, and carries the operator's signature in. */
#include "server/replica_recover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "server/replica_internal.h"
#include "teems/err.h"

int rp_operator_key_load(const char *path, uint8_t pub[MSG_PUBLIC_KEY_SIZE], char *errbuf)
{
	EVP_PKEY *k;
	size_t n = MSG_PUBLIC_KEY_SIZE;
	FILE *f = fopen(path, "r");
	int rc = TEEMS_OK;

	if (f == NULL)
		return teems_errf(errbuf, TEEMS_EIO, "config: operator_key \"%s\": %s", path,
				  strerror(errno));
	k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519 ||
	    EVP_PKEY_get_raw_public_key(k, pub, &n) != 1 || n != MSG_PUBLIC_KEY_SIZE)
		rc = teems_errf(errbuf, TEEMS_ECONFIG,
				"config: operator_key \"%s\": not a PEM Ed25519 public key (teems "
				"init writes one; or: openssl pkey -in operator.key -pubout)",
				path);
	EVP_PKEY_free(k);
	return rc;
}

/* paxos_config.restart_verify: a pure function of its arguments. */
static bool verify(const uint8_t key[MSG_PUBLIC_KEY_SIZE], const uint8_t *msg, size_t len,
		   const uint8_t *sig, size_t sig_len)
{
	return sig_len == TEE_SIGNATURE_LEN &&
	       tee_incarnation_verify(key, msg, len, sig) == TEEMS_OK;
}

int rp_recover_configure(const struct teems_config *cfg, struct paxos_config *pc, char *errbuf)
{
	int rc;

	_Static_assert(CONFIG_CLUSTER_ID_LEN == PAXOS_RESTART_CLUSTER_ID_LEN,
		       "the cluster id the operator signs");
	if (cfg->recovery != CONFIG_RECOVERY_OPERATOR)
		return TEEMS_OK;
	rc = rp_operator_key_load(cfg->operator_key, pc->restart_operator_key, errbuf);
	if (rc != TEEMS_OK)
		return rc;
	pc->restart_operator = true;
	memcpy(pc->restart_cluster_id, cfg->cluster_id, CONFIG_CLUSTER_ID_LEN);
	pc->restart_verify = verify;
	return TEEMS_OK;
}

struct out {
	char *p;
	size_t cap, len;
};

static void addf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void addf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->len + 1 >= o->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

static void add_ballot(struct out *o, const char *key, const struct msg_ballot *b)
{
	addf(o, "%s:%" PRIu64 ".%u.%" PRIu64 ".%" PRIu64 "\r\n", key, b->round, b->replica,
	     b->reg.epoch, b->reg.slot);
}

static const char *phase_name(enum paxos_restart_phase ph)
{
	switch (ph) {
	case PAXOS_RESTART_ANSWERS:
		return "answers";
	case PAXOS_RESTART_ACCEPTS:
		return "accepts";
	case PAXOS_RESTART_WAITING:
		return "waiting_operator";
	case PAXOS_RESTART_IDLE:
	default:
		return "idle";
	}
}

size_t replica_restart_status(struct replica *r, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	struct paxos_restart_view v;
	uint8_t msg[PAXOS_RESTART_AUTH_MSG_MAX];
	struct out o = {buf, cap, 0};
	size_t len;

	if (cap == 0)
		return 0;
	buf[0] = '\0';
	paxos_restart_view(r->p, &v);
	addf(&o, "recovery:%s\r\n",
	     r->cfg.recovery == CONFIG_RECOVERY_OPERATOR ? "operator" : "auto");
	addf(&o, "restart_epoch:%" PRIu64 "\r\n", v.epoch);
	addf(&o, "restart_stuck:%d\r\nrestart_answered:%d\r\n", v.stuck ? 1 : 0,
	     v.answered ? 1 : 0);
	add_ballot(&o, "restart_promised", &v.promised);
	addf(&o, "restart_phase:%s\r\n", phase_name(v.phase));
	if (v.phase != PAXOS_RESTART_IDLE)
		add_ballot(&o, "restart_proposal", &v.proposal);
	if (v.n_members > 0) {
		addf(&o, "restart_members:");
		for (uint32_t i = 0; i < v.n_members; i++)
			addf(&o, "%s%u@%" PRIu64 ".%" PRIu64, i ? "," : "", v.members[i].replica,
			     v.members[i].reg.epoch, v.members[i].reg.slot);
		addf(&o, "\r\n");
	}
	addf(&o, "restart_auth_refused:%" PRIu64 "\r\n", v.auth_refused);
	if (paxos_restart_auth_message(r->p, msg, sizeof(msg), &len) == TEEMS_OK &&
	    o.len + 2 * len + 24 < o.cap) {
		addf(&o, "restart_authorize:");
		for (size_t i = 0; i < len; i++) {
			o.p[o.len++] = hex[msg[i] >> 4];
			o.p[o.len++] = hex[msg[i] & 15];
		}
		o.p[o.len] = '\0';
		addf(&o, "\r\n");
	}
	return o.len;
}

/* ---- TEEMS.RECOVER ---- */

static void reply(struct replica *r, uint64_t conn, uint64_t req, int proto, const char *err,
		  const char *bulk, size_t bulk_len)
{
	struct resp_out o;

	resp_out_init(&o, proto);
	if (err != NULL)
		resp_add_error(&o, err);
	else if (bulk != NULL)
		resp_add_bulk(&o, bulk, bulk_len);
	else
		resp_add_simple(&o, "OK");
	if (o.err != TEEMS_OK) {
		static const char oom[] = "-ERR teems: out of memory\r\n";

		r->io.reply(r->io.ctx, conn, req, (const uint8_t *)oom, sizeof(oom) - 1);
	} else {
		r->io.reply(r->io.ctx, conn, req, o.buf, o.len);
	}
	resp_out_free(&o);
}

static bool arg_is(const struct resp_arg *a, const char *s)
{
	size_t n = strlen(s);

	return a->len == n && strncasecmp((const char *)a->p, s, n) == 0;
}

/* Copies a bounded argument into a NUL-terminated string; false if it does not fit. */
static bool arg_str(const struct resp_arg *a, char *out, size_t cap)
{
	if (a->len >= cap || memchr(a->p, '\0', a->len) != NULL)
		return false;
	memcpy(out, a->p, a->len);
	out[a->len] = '\0';
	return true;
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static bool parse_ballot(const char *s, struct msg_ballot *b)
{
	char tmp[96], *parts[4], *save = NULL;
	uint64_t replica;
	int n = 0;

	if (strlen(s) >= sizeof(tmp))
		return false;
	strcpy(tmp, s);
	for (char *t = strtok_r(tmp, ".", &save); t != NULL && n < 5;
	     t = strtok_r(NULL, ".", &save))
		if (n++ < 4)
			parts[n - 1] = t;
	if (n != 4 || !parse_u64(parts[0], &b->round) || !parse_u64(parts[1], &replica) ||
	    replica >= MSG_NO_REPLICA || !parse_u64(parts[2], &b->reg.epoch) ||
	    !parse_u64(parts[3], &b->reg.slot))
		return false;
	b->replica = (uint16_t)replica;
	return true;
}

static bool parse_hex(const struct resp_arg *a, uint8_t *out, size_t n)
{
	if (a->len != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit_value(a->p[2 * i]), lo = hex_digit_value(a->p[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static void authorize(struct replica *r, uint64_t conn, uint64_t req, const struct resp_arg *argv,
		      int proto)
{
	struct paxos_restart_view v;
	struct msg_ballot b;
	uint8_t sig[TEE_SIGNATURE_LEN];
	char es[32], bs[96], err[512];
	uint64_t epoch;
	int rc;

	if (r->cfg.recovery != CONFIG_RECOVERY_OPERATOR) {
		reply(r, conn, req, proto,
		      "ERR teems: this replica runs with recovery = auto: there is nothing to "
		      "authorize",
		      NULL, 0);
		return;
	}
	if (!arg_str(&argv[2], es, sizeof(es)) || !parse_u64(es, &epoch) ||
	    !arg_str(&argv[3], bs, sizeof(bs)) || !parse_ballot(bs, &b)) {
		reply(r, conn, req, proto,
		      "ERR teems: usage: TEEMS.RECOVER AUTHORIZE <epoch> "
		      "<round.replica.epoch.tag> <128 hex digits of signature>",
		      NULL, 0);
		return;
	}
	if (!parse_hex(&argv[4], sig, sizeof(sig))) {
		reply(r, conn, req, proto,
		      "ERR teems: the signature must be 128 hex digits (an Ed25519 signature)",
		      NULL, 0);
		return;
	}
	paxos_restart_view(r->p, &v);
	if (v.phase != PAXOS_RESTART_WAITING) {
		rp_log(r, "restart: an operator authorization arrived, but no proposal of this "
			  "replica waits for one (refused)");
		reply(r, conn, req, proto,
		      "ERR teems: no restart proposal of this replica waits for an authorization "
		      "(another replica's may: see teems recover --status)",
		      NULL, 0);
		return;
	}
	if (epoch != v.epoch || msg_ballot_cmp(&b, &v.proposal) != 0) {
		snprintf(err, sizeof(err),
			 "ERR teems: stale authorization: it is for epoch %" PRIu64
			 " proposal %s, this replica waits with epoch %" PRIu64 " proposal %" PRIu64
			 ".%u.%" PRIu64 ".%" PRIu64 " (run teems recover --status again)",
			 epoch, bs, v.epoch, v.proposal.round, v.proposal.replica,
			 v.proposal.reg.epoch, v.proposal.reg.slot);
		rp_log(r,
		       "restart: operator authorization refused: stale (epoch %" PRIu64
		       " proposal %s)",
		       epoch, bs);
		reply(r, conn, req, proto, err, NULL, 0);
		return;
	}
	rc = paxos_restart_authorize(r->p, sig, sizeof(sig));
	if (rc == TEEMS_EAUTH) {
		rp_log(r,
		       "restart: operator authorization refused: the signature does not verify "
		       "with operator_key %s for epoch %" PRIu64 " proposal %s",
		       r->cfg.operator_key, epoch, bs);
		reply(r, conn, req, proto,
		      "ERR teems: the authorization does not verify with this replica's operator "
		      "key (another key, or signed over another cluster or configuration)",
		      NULL, 0);
		return;
	}
	if (rc != TEEMS_OK) {
		snprintf(err, sizeof(err), "ERR teems: authorization refused: %s",
			 teems_strerror(rc));
		reply(r, conn, req, proto, err, NULL, 0);
		return;
	}
	rp_log(r, "restart: the operator authorized epoch %" PRIu64 " with proposal %s", epoch + 1,
	       bs);
	reply(r, conn, req, proto, NULL, NULL, 0);
}

void replica_recover_command(struct replica *r, uint64_t conn, uint64_t req,
			     const struct resp_arg *argv, size_t argc, int proto)
{
	if (argc == 2 && arg_is(&argv[1], "status")) {
		char *buf = teems_malloc(REPLICA_RESTART_STATUS_MAX);
		size_t len;

		if (buf == NULL) {
			reply(r, conn, req, proto, "ERR teems: out of memory", NULL, 0);
			return;
		}
		len = replica_restart_status(r, buf, REPLICA_RESTART_STATUS_MAX);
		reply(r, conn, req, proto, NULL, buf, len);
		teems_free(buf);
		return;
	}
	if (argc == 5 && arg_is(&argv[1], "authorize")) {
		authorize(r, conn, req, argv, proto);
		return;
	}
	reply(r, conn, req, proto,
	      "ERR teems: usage: TEEMS.RECOVER STATUS | TEEMS.RECOVER AUTHORIZE <epoch> "
	      "<round.replica.epoch.tag> <hex signature>",
	      NULL, 0);
}
