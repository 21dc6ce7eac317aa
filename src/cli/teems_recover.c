/* `teems init` and `teems recover`: the operator's side of recovery = operator (DESIGN.md
 * section 6, "Authorization"; docs/PROTOCOL.md "Operator-authorized restart";
 * docs/OPERATIONS.md "Operator-authorized recovery").
 *
 *   teems [--dir DIR] init [--force]
 *       an Ed25519 key pair: DIR/operator.key (private, 0600: the operator keeps it, the
 *       replicas never see it) and DIR/operator.pub; every DIR/r<i>/teemsd.conf gets
 *       recovery = operator and operator_key = DIR/operator.pub (read at the next start)
 *   teems [TARGET] recover [--status]
 *       each replica's epoch, role, stuck flag and restart state, and the proposal that waits
 *       for the operator, decoded: what exactly a signature would authorize
 *   teems [TARGET] recover --authorize [--key FILE]
 *       signs that proposal (default key DIR/operator.key) and sends the signature to the
 *       replica that waits for it (TEEMS.RECOVER AUTHORIZE); the replicas verify it again
 *
 * The message signed is the core's (paxos_restart_auth_bytes): this tool decodes the one the
 * replica shows, rebuilds it from the decoded fields and signs only if the two are identical,
 * so the operator signs exactly what was displayed. */
#include "cli/teems_recover.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "core/paxos.h"
#include "teems/err.h"

#define STATUS_LEN 8192

/* ---- teems init ---- */

static int write_pem(const char *path, EVP_PKEY *k, bool private_key, bool force)
{
	int fd, flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (force ? 0 : O_EXCL);
	FILE *f;
	int ok;

	fd = open(path, flags, private_key ? 0600 : 0644);
	if (fd < 0) {
		cli_msg("%s: %s%s", path, strerror(errno),
			errno == EEXIST
				? " (an operator key exists already: keep it, or replace it "
				  "with init --force)"
				: "");
		return -1;
	}
	if (private_key && fchmod(fd, 0600) != 0) {
		cli_msg("%s: chmod: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		cli_msg("%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	ok = private_key ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL)
			 : PEM_write_PUBKEY(f, k);
	if (ok != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		cli_msg("%s: cannot write the key", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}

static bool conf_key_is(const char *line, const char *key)
{
	size_t n = strlen(key);

	while (*line == ' ' || *line == '\t')
		line++;
	if (strncmp(line, key, n) != 0)
		return false;
	line += n;
	while (*line == ' ' || *line == '\t')
		line++;
	return *line == '=';
}

/* Rewrites a teemsd.conf with recovery = operator and operator_key = pub (other lines kept). */
static int conf_set_operator(const char *conf, const char *pub)
{
	char tmp[CLI_PATH_LEN + 8], line[8192];
	FILE *in, *out;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", conf) >= (int)sizeof(tmp))
		return -1;
	in = fopen(conf, "r");
	if (in == NULL) {
		cli_msg("%s: %s", conf, strerror(errno));
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	out = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (out == NULL) {
		cli_msg("%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		fclose(in);
		return -1;
	}
	while (fgets(line, sizeof(line), in) != NULL)
		if (!conf_key_is(line, "recovery") && !conf_key_is(line, "operator_key"))
			fputs(line, out);
	fprintf(out,
		"# teems init: a full-system restart waits for `teems recover --authorize`\n"
		"recovery = operator\noperator_key = %s\n",
		pub);
	fclose(in);
	if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
		cli_msg("%s: %s", tmp, strerror(errno));
		fclose(out);
		return -1;
	}
	fclose(out);
	if (rename(tmp, conf) != 0) {
		cli_msg("%s: %s", conf, strerror(errno));
		return -1;
	}
	return 0;
}

int cli_init_operator(const char *dir_arg, bool force)
{
	char dir[PATH_MAX], key[CLI_PATH_LEN], pub[CLI_PATH_LEN], conf[CLI_PATH_LEN];
	uint8_t raw[32];
	size_t raw_len = sizeof(raw);
	unsigned n_conf = 0;
	EVP_PKEY *k;
	int rv = CLI_FAILED;

	if (mkdir(dir_arg, 0700) != 0 && errno != EEXIST) {
		cli_msg("%s: %s", dir_arg, strerror(errno));
		return CLI_FAILED;
	}
	if (realpath(dir_arg, dir) == NULL) {
		cli_msg("%s: %s", dir_arg, strerror(errno));
		return CLI_FAILED;
	}
	if (snprintf(key, sizeof(key), "%s/operator.key", dir) >= (int)sizeof(key) ||
	    snprintf(pub, sizeof(pub), "%s/operator.pub", dir) >= (int)sizeof(pub)) {
		cli_msg("%s: path too long", dir);
		return CLI_FAILED;
	}
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (k == NULL || EVP_PKEY_get_raw_public_key(k, raw, &raw_len) != 1) {
		cli_msg("cannot generate an Ed25519 key");
		goto out;
	}
	if (write_pem(key, k, true, force) != 0 || write_pem(pub, k, false, true) != 0)
		goto out;
	for (unsigned i = 0; i < CLI_MAX_REPLICAS; i++) {
		if (snprintf(conf, sizeof(conf), "%s/r%u/teemsd.conf", dir, i) >= (int)sizeof(conf))
			goto out;
		if (access(conf, F_OK) != 0)
			break;
		if (conf_set_operator(conf, pub) != 0)
			goto out;
		n_conf++;
	}
	printf("teems: operator key %02x%02x%02x%02x%02x%02x%02x%02x...\n", raw[0], raw[1], raw[2],
	       raw[3], raw[4], raw[5], raw[6], raw[7]);
	printf("  private: %s (keep it safe; `teems recover --authorize --key` reads it)\n", key);
	printf("  public:  %s\n", pub);
	if (n_conf > 0)
		printf("  %u replica configurations now say recovery = operator; replicas that "
		       "are running\n  read it at their next start\n",
		       n_conf);
	else
		printf("  give every replica: recovery = operator, operator_key = %s\n", pub);
	rv = CLI_OK;
out:
	EVP_PKEY_free(k);
	return rv;
}

int cli_init_main(int argc, char **argv, const struct cli_globals *g)
{
	const char *dir_arg = g->dir != NULL ? g->dir : CLI_DEFAULT_DIR;
	bool force = false;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0) {
			force = true;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir_arg = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: teems [--dir DIR] init [--force]\n\n"
			       "Creates the operator key of recovery = operator: DIR/operator.key "
			       "(private,\n0600; keep it with the operator, not on the replicas' "
			       "hosts) and\nDIR/operator.pub, and sets recovery = operator and "
			       "operator_key in every\nDIR/r<i>/teemsd.conf (replicas read it when "
			       "they start). A full-system\nrestart then waits for `teems recover "
			       "--authorize`. --force replaces an\nexisting key.\n");
			return CLI_OK;
		} else {
			cli_msg("init: unknown argument %s (teems init --help)", argv[i]);
			return CLI_USAGE;
		}
	}
	if (g->host != NULL) {
		cli_msg("init works on a directory (--dir), not --host");
		return CLI_USAGE;
	}
	return cli_init_operator(dir_arg, force);
}

/* ---- teems recover ---- */

struct rstatus {
	bool answered;
	char err[TEEMS_ERRBUF_LEN];
	char role[32], lifecycle[32], recovery[16], epoch[24], stuck[4], phase[32];
	char proposal[96], members[2048], refused[24];
	char *authorize; /* hex of the message to sign, or NULL (owned) */
};

/* The message a replica shows, decoded. */
struct pending {
	uint8_t msg[PAXOS_RESTART_AUTH_MSG_MAX];
	size_t len;
	uint8_t cluster_id[PAXOS_RESTART_CLUSTER_ID_LEN];
	uint64_t epoch;
	struct msg_ballot proposal;
	uint32_t n;
	struct msg_incarnation members[QUORUM_MAX_REPLICAS];
	uint8_t digest[MSG_DIGEST_SIZE];
};

static bool hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(s);

	if (n % 2 || n / 2 > cap)
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_digit_value(s[2 * i]), lo = hex_digit_value(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return true;
}

/* Decodes the hex of a message and checks that rebuilding it from its fields gives the very
 * same bytes (nothing signed that was not shown). */
static bool pending_decode(const char *hex, struct pending *p)
{
	static const char domain[] = PAXOS_RESTART_AUTH_DOMAIN;
	uint8_t again[PAXOS_RESTART_AUTH_MSG_MAX];
	size_t off = sizeof(domain);

	if (!hex_decode(hex, p->msg, sizeof(p->msg), &p->len) ||
	    p->len < off + PAXOS_RESTART_CLUSTER_ID_LEN + 46 ||
	    memcmp(p->msg, domain, sizeof(domain)) != 0)
		return false;
	memcpy(p->cluster_id, p->msg + off, PAXOS_RESTART_CLUSTER_ID_LEN);
	off += PAXOS_RESTART_CLUSTER_ID_LEN;
	p->epoch = get_le64(p->msg + off);
	p->proposal.round = get_le64(p->msg + off + 8);
	p->proposal.replica = get_le16(p->msg + off + 16);
	p->proposal.reg.epoch = get_le64(p->msg + off + 18);
	p->proposal.reg.slot = get_le64(p->msg + off + 26);
	p->n = get_le32(p->msg + off + 34);
	off += 38;
	if (p->n == 0 || p->n > QUORUM_MAX_REPLICAS ||
	    p->len != off + 18 * (size_t)p->n + MSG_DIGEST_SIZE)
		return false;
	for (uint32_t i = 0; i < p->n; i++) {
		p->members[i].replica = get_le16(p->msg + off);
		p->members[i].reg.epoch = get_le64(p->msg + off + 2);
		p->members[i].reg.slot = get_le64(p->msg + off + 10);
		off += 18;
	}
	memcpy(p->digest, p->msg + off, MSG_DIGEST_SIZE);
	return paxos_restart_auth_bytes(p->cluster_id, p->epoch, &p->proposal, p->members, p->n,
					p->digest, again) == p->len &&
	       memcmp(again, p->msg, p->len) == 0;
}

static void info(const struct conn_reply *r, const char *key, char *out, size_t cap)
{
	if (!conn_info_field(r->str, r->len, key, out, cap))
		snprintf(out, cap, "?");
}

static void probe(const struct cli_target *t, unsigned i, struct rstatus *s)
{
	struct conn_reply *r = NULL;
	struct conn_options o;
	struct conn *c;

	memset(s, 0, sizeof(*s));
	cli_target_options(t, i, &o);
	if (conn_open(&o, &c, s->err) != 0)
		return;
	if (conn_commandv(c, &r, s->err, "TEEMS.STATUS", NULL) == 0 &&
	    r->type == CONN_REPLY_STRING) {
		info(r, "role", s->role, sizeof(s->role));
		info(r, "lifecycle", s->lifecycle, sizeof(s->lifecycle));
	}
	conn_reply_free(r);
	r = NULL;
	if (conn_commandv(c, &r, s->err, "TEEMS.RECOVER", "STATUS", NULL) != 0) {
		conn_close(c);
		return;
	}
	s->answered = true;
	if (r->type != CONN_REPLY_STRING) {
		snprintf(s->err, sizeof(s->err), "%s",
			 r->type == CONN_REPLY_ERROR ? r->str : "unexpected reply");
		s->answered = false;
	} else {
		char *hex = teems_malloc(2 * PAXOS_RESTART_AUTH_MSG_MAX + 1);

		info(r, "recovery", s->recovery, sizeof(s->recovery));
		info(r, "restart_epoch", s->epoch, sizeof(s->epoch));
		info(r, "restart_stuck", s->stuck, sizeof(s->stuck));
		info(r, "restart_phase", s->phase, sizeof(s->phase));
		info(r, "restart_proposal", s->proposal, sizeof(s->proposal));
		info(r, "restart_members", s->members, sizeof(s->members));
		info(r, "restart_auth_refused", s->refused, sizeof(s->refused));
		if (hex != NULL && conn_info_field(r->str, r->len, "restart_authorize", hex,
						   2 * PAXOS_RESTART_AUTH_MSG_MAX + 1))
			s->authorize = hex;
		else
			teems_free(hex);
	}
	conn_reply_free(r);
	conn_close(c);
}

static void print_pending(const struct pending *p, unsigned from)
{
	printf("pending epoch restart (proposed by r%u, waiting for the operator):\n", from);
	printf("  cluster    ");
	for (int i = 0; i < PAXOS_RESTART_CLUSTER_ID_LEN; i++)
		printf("%02x", p->cluster_id[i]);
	printf("\n  epoch      %" PRIu64 " -> %" PRIu64 "\n", p->epoch, p->epoch + 1);
	printf("  proposal   %" PRIu64 ".%u.%" PRIu64 ".%" PRIu64 "\n", p->proposal.round,
	       p->proposal.replica, p->proposal.reg.epoch, p->proposal.reg.slot);
	printf("  members    ");
	for (uint32_t i = 0; i < p->n; i++)
		printf("%sr%u (incarnation tag %016" PRIx64 ")", i ? ", " : "",
		       p->members[i].replica, p->members[i].reg.slot);
	printf("\n  (every member answered the proposal with its durable state; the first "
	       "election\n   of epoch %" PRIu64 " recovers every committed write from them)\n",
	       p->epoch + 1);
}

/* cluster_id of DIR/r0/teemsd.conf; false if not found. */
static bool dir_cluster_id(const char *dir, uint8_t out[PAXOS_RESTART_CLUSTER_ID_LEN])
{
	char path[CLI_PATH_LEN], line[512];
	bool found = false;
	FILE *f;

	if (snprintf(path, sizeof(path), "%s/r0/teemsd.conf", dir) >= (int)sizeof(path) ||
	    (f = fopen(path, "r")) == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char hex[64];
		size_t n;

		if (sscanf(line, " cluster_id = %63s", hex) == 1)
			found = hex_decode(hex, out, PAXOS_RESTART_CLUSTER_ID_LEN, &n) &&
				n == PAXOS_RESTART_CLUSTER_ID_LEN;
	}
	fclose(f);
	return found;
}

static int sign_file(const char *key_path, const uint8_t *msg, size_t len, uint8_t sig[64])
{
	EVP_PKEY *k;
	EVP_MD_CTX *md = NULL;
	size_t sig_len = 64;
	int rv = -1;
	FILE *f = fopen(key_path, "r");

	if (f == NULL) {
		cli_msg("--key %s: %s", key_path, strerror(errno));
		return -1;
	}
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
		cli_msg("--key %s: not a PEM Ed25519 private key (teems init writes one)",
			key_path);
		goto out;
	}
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestSignInit(md, NULL, NULL, NULL, k) != 1 ||
	    EVP_DigestSign(md, sig, &sig_len, msg, len) != 1 || sig_len != 64) {
		cli_msg("cannot sign with %s", key_path);
		goto out;
	}
	rv = 0;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	return rv;
}

static int authorize(const struct cli_target *t, const char *dir, const char *key_path,
		     const struct pending *p, unsigned to)
{
	char epoch[24], prop[96], hex[129], err[TEEMS_ERRBUF_LEN];
	struct conn_reply *r = NULL;
	struct conn_options o;
	struct conn *c;
	uint8_t sig[64], cid[PAXOS_RESTART_CLUSTER_ID_LEN];
	int rv;

	if (dir != NULL && dir_cluster_id(dir, cid) &&
	    memcmp(cid, p->cluster_id, sizeof(cid)) != 0) {
		cli_msg("refusing: the proposal names another cluster id than %s/r0/teemsd.conf",
			dir);
		return CLI_FAILED;
	}
	if (sign_file(key_path, p->msg, p->len, sig) != 0)
		return CLI_FAILED;
	for (int i = 0; i < 64; i++)
		snprintf(hex + 2 * i, 3, "%02x", sig[i]);
	snprintf(epoch, sizeof(epoch), "%" PRIu64, p->epoch);
	snprintf(prop, sizeof(prop), "%" PRIu64 ".%u.%" PRIu64 ".%" PRIu64, p->proposal.round,
		 p->proposal.replica, p->proposal.reg.epoch, p->proposal.reg.slot);
	cli_target_options(t, to, &o);
	if (conn_open(&o, &c, err) != 0) {
		cli_msg("r%u: %s", to, err);
		return CLI_UNREACHABLE;
	}
	if (conn_commandv(c, &r, err, "TEEMS.RECOVER", "AUTHORIZE", epoch, prop, hex, NULL) != 0) {
		cli_msg("r%u: %s", to, err);
		conn_close(c);
		return CLI_UNREACHABLE;
	}
	if (r->type == CONN_REPLY_ERROR) {
		cli_msg("r%u refused the authorization: %s", to, r->str);
		rv = CLI_FAILED;
	} else {
		printf("authorized: epoch %" PRIu64 " with proposal %s. The members install it, "
		       "wait T_fence,\nrecover and elect a leader (`teems status` shows when).\n",
		       p->epoch + 1, prop);
		rv = CLI_OK;
	}
	conn_reply_free(r);
	conn_close(c);
	return rv;
}

int cli_recover_main(int argc, char **argv, const struct cli_globals *g)
{
	const char *dir = g->dir, *key_path = NULL;
	char key_buf[CLI_PATH_LEN], err[TEEMS_ERRBUF_LEN];
	bool do_authorize = false;
	struct cli_target *t;
	struct rstatus *st;
	struct pending *best = NULL, *cur = NULL;
	int best_from = -1, rv = CLI_OK;
	unsigned n, answered = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--status") == 0) {
			do_authorize = false;
		} else if (strcmp(argv[i], "--authorize") == 0) {
			do_authorize = true;
		} else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
			key_path = argv[++i];
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc && g->host == NULL) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: teems [TARGET] recover [--status]\n"
			       "       teems [TARGET] recover --authorize [--key FILE]\n\n"
			       "With recovery = operator a full-system restart waits for the "
			       "operator.\n--status (the default) shows each replica's epoch, "
			       "role, "
			       "stuck flag and\nrestart phase, and the proposal that waits, "
			       "decoded. "
			       "--authorize signs\nthat proposal with the operator key (default "
			       "DIR/operator.key, made by\n`teems init`) and sends the signature "
			       "to "
			       "the replica that proposed it.\nExit status: 0 ok, 1 nothing to "
			       "authorize or refused, 2 usage, 3 unreachable.\n");
			return CLI_OK;
		} else {
			cli_msg("recover: unknown argument %s (teems recover --help)", argv[i]);
			return CLI_USAGE;
		}
	}
	if (dir == NULL && g->host == NULL)
		dir = CLI_DEFAULT_DIR;
	if (do_authorize && key_path == NULL) {
		if (dir == NULL) {
			cli_msg("recover --authorize with --host needs --key FILE");
			return CLI_USAGE;
		}
		snprintf(key_buf, sizeof(key_buf), "%s/operator.key", dir);
		key_path = key_buf;
	}
	t = teems_calloc(1, sizeof(*t));
	st = teems_calloc(CLI_MAX_REPLICAS, sizeof(*st));
	best = teems_malloc(sizeof(*best));
	cur = teems_malloc(sizeof(*cur));
	if (t == NULL || st == NULL || best == NULL || cur == NULL) {
		cli_msg("out of memory");
		rv = CLI_FAILED;
		goto out;
	}
	t->timeout_ms = (unsigned)(g->timeout_ms ? g->timeout_ms : 3000);
	if (g->host != NULL) {
		if (g->port == 0 || (g->cacert == NULL) != g->plaintext) {
			cli_msg("--host needs --port, and either --cacert FILE or --plaintext");
			rv = CLI_USAGE;
			goto out;
		}
		snprintf(t->host, sizeof(t->host), "%s", g->host);
		t->port = (uint16_t)g->port;
		t->cacert = g->cacert;
	} else {
		t->from_dir = true;
		if (cli_cluster_load(dir, &t->cluster, err) != 0) {
			cli_msg("%s", err);
			rv = CLI_UNREACHABLE;
			goto out;
		}
	}
	n = cli_target_count(t);
	for (unsigned i = 0; i < n && i < CLI_MAX_REPLICAS; i++) {
		struct rstatus *s = &st[i];

		probe(t, i, s);
		if (!s->answered) {
			printf("r%u  unreachable: %s\n", i, s->err);
			continue;
		}
		answered++;
		printf("r%u  recovery %s  epoch %s  role %s  lifecycle %s  stuck %s  restart %s", i,
		       s->recovery, s->epoch, s->role[0] ? s->role : "?",
		       s->lifecycle[0] ? s->lifecycle : "?", s->stuck, s->phase);
		if (strcmp(s->phase, "idle") != 0)
			printf("  proposal %s", s->proposal);
		if (strcmp(s->refused, "0") != 0 && strcmp(s->refused, "?") != 0)
			printf("  refused %s", s->refused);
		printf("\n");
		if (s->authorize == NULL)
			continue;
		if (!pending_decode(s->authorize, cur)) {
			printf("r%u shows a proposal this tool cannot decode: not signing it\n", i);
			continue;
		}
		if (best_from < 0 || msg_ballot_cmp(&cur->proposal, &best->proposal) > 0) {
			struct pending *x = best;

			best = cur;
			cur = x;
			best_from = (int)i;
		}
	}
	if (answered == 0) {
		cli_msg("no replica answered");
		rv = CLI_UNREACHABLE;
		goto out;
	}
	if (best_from < 0) {
		printf("no epoch restart waits for the operator%s\n",
		       do_authorize ? ": nothing to authorize" : "");
		rv = do_authorize ? CLI_FAILED : CLI_OK;
		goto out;
	}
	print_pending(best, (unsigned)best_from);
	if (!do_authorize) {
		printf("authorize it with: teems%s%s recover --authorize\n", dir ? " --dir " : "",
		       dir ? dir : "");
		goto out;
	}
	rv = authorize(t, t->from_dir ? dir : NULL, key_path, best, (unsigned)best_from);
out:
	if (st != NULL)
		for (unsigned i = 0; i < CLI_MAX_REPLICAS; i++)
			teems_free(st[i].authorize);
	teems_free(st);
	teems_free(best);
	teems_free(cur);
	teems_free(t);
	return rv;
}
