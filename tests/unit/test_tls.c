/* The TLS engine (src/net/tls*.c) over memory: attested peer channels between replicas and the
 * checks that reject each broken link (root, measurement, cluster, key binding, tampering), the
 * service CA sealed per replica, the service and client contexts with host and IP checks, and
 * the RA-TLS extension codec. Connections talk through tls_conn_take/tls_conn_feed only, as
 * teemsd's loop does. Real clients over loopback sockets: test_tls_socket.c. */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "net/tls.h"
#include "net/tls_int.h"
#include "tee/tee.h"
#include "teems/err.h"

static const uint8_t meas_a[TEE_MEASUREMENT_LEN] = {0xa1, 0xa2, 0xa3};
static const uint8_t meas_b[TEE_MEASUREMENT_LEN] = {0xb1, 0xb2, 0xb3};
static const uint8_t cluster_x[TLS_CLUSTER_ID_LEN] = {0x11, 0x22, 0x33, 0x44};
static const uint8_t cluster_y[TLS_CLUSTER_ID_LEN] = {0x11, 0x22, 0x33, 0x45};
static const char *const svc_names[] = {"127.0.0.1", "localhost", "::1", "db.example.test"};

struct fixture {
	char dir[PATH_MAX];
	char plat_a[PATH_MAX], plat_b[PATH_MAX];
	char ca_pem[PATH_MAX], sealed1[PATH_MAX], sealed2[PATH_MAX];
	char ca2_pem[PATH_MAX], sealed1_ca2[PATH_MAX];
	struct tee *a1, *a2; /* replicas 1 and 2 on platform A */
	struct tee *b2;	     /* replica 2 on platform B: another root */
	uint8_t ik1[TEE_PUBLIC_KEY_LEN], ik2[TEE_PUBLIC_KEY_LEN];
};

static struct fixture *fx;

static void join(char *out, const char *a, const char *b)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", a, b);

	assert_true(n > 0 && n < PATH_MAX);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static struct tee *open_sim(const char *dir, uint32_t replica, const uint8_t *meas)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tee_options o;
	struct tee *tee = NULL;
	int rv;

	memset(&o, 0, sizeof(o));
	o.platform_dir = dir;
	o.replica_id = replica;
	o.measurement = meas;
	o.no_clock = true;
	rv = tee_open(&o, &tee, errbuf);
	if (rv != TEEMS_OK)
		print_error("tee_open: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
	return tee;
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tee *tees[2];
	const char *paths[2];
	int rv;

	(void)state;
	fx = calloc(1, sizeof(*fx));
	if (fx == NULL)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "%s/teems-tls-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	join(fx->plat_a, fx->dir, "plat-a");
	join(fx->plat_b, fx->dir, "plat-b");
	join(fx->ca_pem, fx->dir, "ca.pem");
	join(fx->sealed1, fx->dir, "r1-service-ca.sealed");
	join(fx->sealed2, fx->dir, "r2-service-ca.sealed");
	join(fx->ca2_pem, fx->dir, "ca2.pem");
	join(fx->sealed1_ca2, fx->dir, "r1-ca2.sealed");
	fx->a1 = open_sim(fx->plat_a, 1, meas_a);
	fx->a2 = open_sim(fx->plat_a, 2, meas_a);
	fx->b2 = open_sim(fx->plat_b, 2, meas_a);
	if (tee_random(fx->ik1, sizeof(fx->ik1)) != 0 || tee_random(fx->ik2, sizeof(fx->ik2)) != 0)
		return -1;

	tees[0] = fx->a1;
	tees[1] = fx->a2;
	paths[0] = fx->sealed1;
	paths[1] = fx->sealed2;
	rv = tls_ca_create(fx->ca_pem, tees, paths, 2, errbuf);
	if (rv != TEEMS_OK) {
		print_error("tls_ca_create: %s\n", errbuf);
		return -1;
	}
	/* A second, unrelated CA, also sealed for replica 1. */
	paths[0] = fx->sealed1_ca2;
	rv = tls_ca_create(fx->ca2_pem, tees, paths, 1, errbuf);
	if (rv != TEEMS_OK) {
		print_error("tls_ca_create: %s\n", errbuf);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tee_close(fx->a1);
	tee_close(fx->a2);
	tee_close(fx->b2);
	nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Two connection ends joined by the test instead of a socket
 * ------------------------------------------------------------------------------------------- */

struct end {
	struct tls_conn *c;
	int rv; /* first error tls_conn_read returned */
	uint8_t *got;
	size_t got_len, got_cap;
};

static void end_init(struct end *e, struct tls_ctx *ctx, bool server)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	int rv;

	memset(e, 0, sizeof(*e));
	rv = tls_conn_new(ctx, server, &e->c, errbuf);
	if (rv != TEEMS_OK)
		print_error("tls_conn_new: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
}

static void end_free(struct end *e)
{
	tls_conn_free(e->c);
	free(e->got);
	memset(e, 0, sizeof(*e));
}

static void drain(struct end *e)
{
	uint8_t buf[5000];
	size_t n;
	int rv;

	while (e->rv == TEEMS_OK) {
		rv = tls_conn_read(e->c, buf, sizeof(buf), &n);
		if (rv != TEEMS_OK) {
			e->rv = rv;
			break;
		}
		if (n == 0)
			break;
		if (e->got_len + n > e->got_cap) {
			e->got_cap = (e->got_len + n) * 2;
			e->got = realloc(e->got, e->got_cap);
			assert_non_null(e->got);
		}
		memcpy(e->got + e->got_len, buf, n);
		e->got_len += n;
	}
}

/* Moves ciphertext in small pieces, so records arrive split across feeds. */
static bool carry(struct end *from, struct end *to)
{
	uint8_t buf[1000];
	bool moved = false;
	size_t n;

	while ((n = tls_conn_take(from->c, buf, sizeof(buf))) > 0) {
		assert_int_equal(tls_conn_feed(to->c, buf, n), TEEMS_OK);
		moved = true;
	}
	return moved;
}

static void pump(struct end *a, struct end *b)
{
	for (int i = 0; i < 1000; i++) {
		bool moved;

		drain(a);
		drain(b);
		moved = carry(a, b);
		moved = carry(b, a) || moved;
		if (!moved && tls_conn_pending(a->c) == 0 && tls_conn_pending(b->c) == 0)
			return;
	}
	fail_msg("pump: the two ends never went quiet");
}

static struct tls_ctx *peer_ctx(struct tee *tee, uint16_t replica, const uint8_t *ik,
				const uint8_t *cluster, const uint8_t *meas)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tls_ctx *ctx = NULL;
	int rv;

	rv = tls_ctx_peer(tee, replica, ik, cluster, meas, &ctx, errbuf);
	if (rv != TEEMS_OK)
		print_error("tls_ctx_peer: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
	return ctx;
}

static struct tls_ctx *service_ctx(struct tee *tee, const char *sealed)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tls_ctx *ctx = NULL;
	int rv;

	rv = tls_ctx_service(tee, sealed, svc_names, 4, &ctx, errbuf);
	if (rv != TEEMS_OK)
		print_error("tls_ctx_service: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
	return ctx;
}

static struct tls_ctx *client_ctx(const char *ca, const char *host)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tls_ctx *ctx = NULL;
	int rv;

	rv = tls_ctx_client(ca, host, &ctx, errbuf);
	if (rv != TEEMS_OK)
		print_error("tls_ctx_client: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
	return ctx;
}

/* Handshake, then a message each way (the client's written before the handshake finished, so
 * it exercises the queue), then a clean close. */
static void expect_talk(struct tls_ctx *cctx, struct tls_ctx *sctx)
{
	static const char ping[] = "PING from the client", pong[] = "+PONG from the server";
	struct end cl, sv;

	end_init(&cl, cctx, false);
	end_init(&sv, sctx, true);
	assert_true(tls_conn_pending(cl.c) > 0); /* the ClientHello */
	assert_int_equal(tls_conn_write(cl.c, ping, sizeof(ping)), TEEMS_OK);
	pump(&cl, &sv);
	if (cl.rv != TEEMS_OK || sv.rv != TEEMS_OK)
		print_error("client: %s / server: %s\n", tls_conn_error(cl.c),
			    tls_conn_error(sv.c));
	assert_int_equal(cl.rv, TEEMS_OK);
	assert_int_equal(sv.rv, TEEMS_OK);
	assert_true(tls_conn_established(cl.c));
	assert_true(tls_conn_established(sv.c));
	assert_int_equal(sv.got_len, sizeof(ping));
	assert_memory_equal(sv.got, ping, sizeof(ping));
	assert_int_equal(tls_conn_write(sv.c, pong, sizeof(pong)), TEEMS_OK);
	pump(&cl, &sv);
	assert_int_equal(cl.got_len, sizeof(pong));
	assert_memory_equal(cl.got, pong, sizeof(pong));

	tls_conn_shutdown(cl.c);
	assert_int_equal(tls_conn_write(cl.c, "x", 1), TEEMS_EPROTO);
	pump(&cl, &sv);
	assert_int_equal(sv.rv, TEEMS_EEOF);
	assert_int_equal(tls_conn_write(sv.c, "x", 1), TEEMS_EPROTO);
	end_free(&cl);
	end_free(&sv);
}

/* The verifier end must fail with TEEMS_EAUTH naming `why`; the other end learns of it from
 * the alert (TEEMS_EPROTO) and neither exposes a peer identity. */
static void expect_rejected(struct tls_ctx *verifier, struct tls_ctx *other, bool verifier_server,
			    const char *why)
{
	struct end v, o;
	struct tls_peer p;

	end_init(&v, verifier, verifier_server);
	end_init(&o, other, !verifier_server);
	pump(&v, &o);
	if (v.rv != TEEMS_EAUTH || strstr(tls_conn_error(v.c), why) == NULL)
		print_error("verifier: %d %s / other: %d %s\n", v.rv, tls_conn_error(v.c), o.rv,
			    tls_conn_error(o.c));
	assert_int_equal(v.rv, TEEMS_EAUTH);
	assert_non_null(strstr(tls_conn_error(v.c), why));
	assert_int_equal(o.rv, TEEMS_EPROTO);
	assert_true(strlen(tls_conn_error(o.c)) > 0);
	assert_false(tls_conn_established(v.c));
	assert_false(tls_conn_established(o.c));
	assert_false(tls_conn_peer(v.c, &p));
	assert_false(tls_conn_peer(o.c, &p));
	/* Sticky: the connection stays failed. */
	assert_int_equal(tls_conn_write(v.c, "x", 1), TEEMS_EPROTO);
	end_free(&v);
	end_free(&o);
}

/* ---------------------------------------------------------------------------------------------
 * Peer (RA-TLS) contexts
 * ------------------------------------------------------------------------------------------- */

static void test_peer_handshake(void **state)
{
	struct tls_ctx *c1 = peer_ctx(fx->a1, 1, fx->ik1, cluster_x, meas_a);
	struct tls_ctx *c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);
	struct end cl, sv;
	struct tls_peer p;
	uint8_t *big;
	size_t big_len = 300000;

	(void)state;
	end_init(&cl, c1, false);
	end_init(&sv, c2, true);
	assert_false(tls_conn_peer(cl.c, &p));
	assert_int_equal(tls_conn_write(cl.c, "hello 2", 7), TEEMS_OK);
	pump(&cl, &sv);
	assert_int_equal(cl.rv, TEEMS_OK);
	assert_int_equal(sv.rv, TEEMS_OK);
	assert_true(tls_conn_established(cl.c));
	assert_true(tls_conn_established(sv.c));
	assert_int_equal(sv.got_len, 7);
	assert_memory_equal(sv.got, "hello 2", 7);

	/* What each side proved to the other. */
	assert_true(tls_conn_peer(cl.c, &p));
	assert_int_equal(p.replica, 2);
	assert_memory_equal(p.incarnation_key, fx->ik2, TEE_PUBLIC_KEY_LEN);
	assert_memory_equal(p.measurement, meas_a, TEE_MEASUREMENT_LEN);
	assert_true(tls_conn_peer(sv.c, &p));
	assert_int_equal(p.replica, 1);
	assert_memory_equal(p.incarnation_key, fx->ik1, TEE_PUBLIC_KEY_LEN);
	assert_memory_equal(p.measurement, meas_a, TEE_MEASUREMENT_LEN);

	/* Bulk both ways, many records, fed in 1000-byte pieces. */
	big = malloc(big_len);
	assert_non_null(big);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (uint8_t)(i * 31 + (i >> 9));
	assert_int_equal(tls_conn_write(sv.c, big, big_len), TEEMS_OK);
	assert_int_equal(tls_conn_write(cl.c, big, big_len), TEEMS_OK);
	pump(&cl, &sv);
	assert_int_equal(cl.got_len, big_len);
	assert_memory_equal(cl.got, big, big_len);
	assert_int_equal(sv.got_len, 7 + big_len);
	assert_memory_equal(sv.got + 7, big, big_len);
	free(big);

	/* The server closes; the client sees a clean end. */
	tls_conn_shutdown(sv.c);
	pump(&cl, &sv);
	assert_int_equal(cl.rv, TEEMS_EEOF);
	assert_int_equal(sv.rv, TEEMS_OK);
	end_free(&cl);
	end_free(&sv);

	/* The same contexts serve further connections, in either role, and may be freed before
	 * their connections. */
	end_init(&cl, c2, false);
	end_init(&sv, c1, true);
	tls_ctx_free(c1);
	tls_ctx_free(c2);
	pump(&cl, &sv);
	assert_true(tls_conn_established(cl.c));
	assert_true(tls_conn_peer(cl.c, &p));
	assert_int_equal(p.replica, 1);
	end_free(&cl);
	end_free(&sv);
}

static void test_peer_wrong_measurement(void **state)
{
	/* Replica 1 expects other code (meas_b) than replica 2 runs (meas_a). */
	struct tls_ctx *c1 = peer_ctx(fx->a1, 1, fx->ik1, cluster_x, meas_b);
	struct tls_ctx *c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);

	(void)state;
	expect_rejected(c1, c2, false, "wrong measurement"); /* client checks the server */
	expect_rejected(c1, c2, true, "wrong measurement");  /* server checks the client */
	tls_ctx_free(c1);
	tls_ctx_free(c2);
}

static void test_peer_wrong_root(void **state)
{
	struct tls_ctx *c1 = peer_ctx(fx->a1, 1, fx->ik1, cluster_x, meas_a);
	struct tls_ctx *cb = peer_ctx(fx->b2, 2, fx->ik2, cluster_x, meas_a);

	(void)state;
	expect_rejected(c1, cb, false, "wrong root");
	expect_rejected(cb, c1, false, "wrong root");
	tls_ctx_free(c1);
	tls_ctx_free(cb);
}

static void test_peer_cluster_mismatch(void **state)
{
	struct tls_ctx *c1 = peer_ctx(fx->a1, 1, fx->ik1, cluster_x, meas_a);
	struct tls_ctx *c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_y, meas_a);

	(void)state;
	/* Each rejects the other; the client sees the server's certificate first. */
	expect_rejected(c1, c2, false, "cluster id mismatch");
	expect_rejected(c2, c1, false, "cluster id mismatch");
	tls_ctx_free(c1);
	tls_ctx_free(c2);
}

/* The attestation extension's value in ctx's certificate. */
static void ext_of(struct tls_ctx *ctx, uint8_t out[TLS_RATLS_EXT_LEN])
{
	X509 *x = SSL_CTX_get0_certificate(tls_ctx_ssl(ctx));
	ASN1_OBJECT *oid = OBJ_txt2obj(TLS_RATLS_OID, 1);
	const ASN1_OCTET_STRING *v;
	int idx;

	assert_non_null(x);
	assert_non_null(oid);
	idx = X509_get_ext_by_OBJ(x, oid, -1);
	assert_true(idx >= 0);
	v = X509_EXTENSION_get_data(X509_get_ext(x, idx));
	assert_int_equal(ASN1_STRING_length(v), TLS_RATLS_EXT_LEN);
	memcpy(out, ASN1_STRING_get0_data(v), TLS_RATLS_EXT_LEN);
	ASN1_OBJECT_free(oid);
}

/* Replaces ctx's certificate (same key) by a copy carrying `ext` (NULL: no extension) in place
 * of its own attestation extension, signed again with ctx's key: what an attacker holding a
 * TLS key but no matching quote could present. */
static void forge(struct tls_ctx *ctx, const uint8_t *ext)
{
	SSL_CTX *s = tls_ctx_ssl(ctx);
	X509 *x = X509_dup(SSL_CTX_get0_certificate(s));
	ASN1_OBJECT *oid = OBJ_txt2obj(TLS_RATLS_OID, 1);
	ASN1_OCTET_STRING *os;
	X509_EXTENSION *e;
	int idx;

	assert_non_null(x);
	idx = X509_get_ext_by_OBJ(x, oid, -1);
	assert_true(idx >= 0);
	X509_EXTENSION_free(X509_delete_ext(x, idx));
	if (ext != NULL) {
		os = ASN1_OCTET_STRING_new();
		assert_non_null(os);
		assert_int_equal(ASN1_OCTET_STRING_set(os, ext, TLS_RATLS_EXT_LEN), 1);
		e = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os);
		assert_non_null(e);
		assert_int_equal(X509_add_ext(x, e, -1), 1);
		X509_EXTENSION_free(e);
		ASN1_OCTET_STRING_free(os);
	}
	assert_true(X509_sign(x, SSL_CTX_get0_privatekey(s), EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(s, x), 1);
	X509_free(x);
	ASN1_OBJECT_free(oid);
}

static void test_peer_key_not_bound(void **state)
{
	struct tls_ctx *c1 = peer_ctx(fx->a1, 1, fx->ik1, cluster_x, meas_a);
	struct tls_ctx *c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);
	struct tls_ctx *other = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);
	uint8_t ext[TLS_RATLS_EXT_LEN];

	(void)state;
	/* c2 presents a genuine quote, but one that binds another incarnation's TLS key. */
	ext_of(other, ext);
	forge(c2, ext);
	expect_rejected(c1, c2, false, "key not bound");
	expect_rejected(c1, c2, true, "key not bound");
	/* A certificate re-signed with its own genuine extension is accepted, so the swapped
	 * extension was the cause. */
	tls_ctx_free(other);
	tls_ctx_free(c2);
	c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);
	ext_of(c2, ext);
	forge(c2, ext);
	{
		struct end a, b;

		end_init(&a, c1, false);
		end_init(&b, c2, true);
		pump(&a, &b);
		assert_true(tls_conn_established(a.c) && tls_conn_established(b.c));
		end_free(&a);
		end_free(&b);
	}
	tls_ctx_free(c1);
	tls_ctx_free(c2);
}

static void test_peer_forged_extension(void **state)
{
	struct tls_ctx *c1 = peer_ctx(fx->a1, 1, fx->ik1, cluster_x, meas_a);
	struct tls_ctx *c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);
	uint8_t ext[TLS_RATLS_EXT_LEN], orig[TLS_RATLS_EXT_LEN];

	(void)state;
	ext_of(c2, orig);

	/* A byte of the quote's signed part (its measurement) altered: tampered. */
	memcpy(ext, orig, sizeof(ext));
	ext[4 + 4 + TEE_PUBLIC_KEY_LEN + TLS_CLUSTER_ID_LEN + 44] ^= 1;
	forge(c2, ext);
	expect_rejected(c1, c2, false, "tampered");

	/* The replica id outside the quote changed: the quote no longer binds it. */
	memcpy(ext, orig, sizeof(ext));
	ext[4 + 2] = 7;
	forge(c2, ext);
	expect_rejected(c1, c2, false, "key not bound");

	/* The incarnation key changed: likewise. */
	memcpy(ext, orig, sizeof(ext));
	ext[4 + 4] ^= 0x80;
	forge(c2, ext);
	expect_rejected(c1, c2, false, "key not bound");

	/* A future version, and garbage. */
	memcpy(ext, orig, sizeof(ext));
	ext[4] = 2;
	forge(c2, ext);
	expect_rejected(c1, c2, false, "malformed extension");
	memset(ext, 0xee, sizeof(ext));
	forge(c2, ext);
	expect_rejected(c1, c2, false, "malformed extension");

	/* No extension at all: a plain self-signed certificate. */
	forge(c2, NULL);
	expect_rejected(c1, c2, false, "no teems attestation extension");
	expect_rejected(c1, c2, true, "no teems attestation extension");
	tls_ctx_free(c1);
	tls_ctx_free(c2);
}

static void test_peer_requires_certificate(void **state)
{
	struct tls_ctx *c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);
	struct tls_ctx *anon = client_ctx(fx->ca_pem, "localhost");

	(void)state;
	/* A client with no certificate that accepts any server. */
	SSL_CTX_set_verify(tls_ctx_ssl(anon), SSL_VERIFY_NONE, NULL);
	expect_rejected(c2, anon, true, "peer sent no certificate");
	tls_ctx_free(c2);
	tls_ctx_free(anon);
}

static void test_peer_garbage_input(void **state)
{
	struct tls_ctx *c2 = peer_ctx(fx->a2, 2, fx->ik2, cluster_x, meas_a);
	struct tls_conn *c = NULL;
	uint8_t junk[3000], out[256];
	size_t got;

	(void)state;
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 13 + 5);
	assert_int_equal(tls_conn_new(c2, true, &c, NULL), TEEMS_OK);
	assert_int_equal(tls_conn_feed(c, junk, sizeof(junk)), TEEMS_OK);
	assert_int_equal(tls_conn_read(c, out, sizeof(out), &got), TEEMS_EPROTO);
	assert_int_equal(got, 0);
	assert_true(strlen(tls_conn_error(c)) > 0);
	assert_int_equal(tls_conn_read(c, out, sizeof(out), &got), TEEMS_EPROTO);
	assert_int_equal(tls_conn_feed(c, junk, sizeof(junk)), TEEMS_OK);
	tls_conn_free(c);
	tls_ctx_free(c2);
}

static void test_peer_bad_arguments(void **state)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tls_ctx *ctx = (struct tls_ctx *)1;
	struct tls_ctx *cctx = client_ctx(fx->ca_pem, "localhost");
	struct tls_ctx *sctx = service_ctx(fx->a1, fx->sealed1);
	struct tls_conn *c = (struct tls_conn *)1;

	(void)state;
	assert_int_equal(tls_ctx_peer(fx->a1, 1, NULL, cluster_x, meas_a, &ctx, errbuf),
			 TEEMS_EINVAL);
	assert_null(ctx);
	/* A client context cannot accept, a service context cannot connect. */
	assert_int_equal(tls_conn_new(cctx, true, &c, errbuf), TEEMS_EINVAL);
	assert_null(c);
	assert_int_equal(tls_conn_new(sctx, false, &c, errbuf), TEEMS_EINVAL);
	tls_ctx_free(cctx);
	tls_ctx_free(sctx);
	tls_ctx_free(NULL);
	tls_conn_free(NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Service CA, service and client contexts
 * ------------------------------------------------------------------------------------------- */

static void test_ca_files(void **state)
{
	struct stat st;
	X509 *ca;
	FILE *f;
	char *cn;

	(void)state;
	assert_int_equal(stat(fx->ca_pem, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(stat(fx->sealed1, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(fx->sealed2, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	f = fopen(fx->ca_pem, "r");
	assert_non_null(f);
	ca = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(ca);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
	assert_true(X509_get_extension_flags(ca) & EXFLAG_CA);
	assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(
				 ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1))),
			 1);
	cn = X509_NAME_oneline(X509_get_subject_name(ca), NULL, 0);
	assert_string_equal(cn, "/CN=teems service CA");
	OPENSSL_free(cn);
	X509_free(ca);
}

static void test_service_and_client(void **state)
{
	struct tls_ctx *s1 = service_ctx(fx->a1, fx->sealed1);
	struct tls_ctx *s2 = service_ctx(fx->a2, fx->sealed2);
	const char *hosts[] = {"localhost", "127.0.0.1", "::1", "db.example.test",
			       "DB.Example.Test"};

	(void)state;
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct tls_ctx *c = client_ctx(fx->ca_pem, hosts[i]);

		expect_talk(c, s1);
		expect_talk(c, s2);
		tls_ctx_free(c);
	}
	tls_ctx_free(s1);
	tls_ctx_free(s2);
}

static void test_client_rejects(void **state)
{
	struct tls_ctx *s1 = service_ctx(fx->a1, fx->sealed1);
	struct tls_ctx *c;

	(void)state;
	c = client_ctx(fx->ca2_pem, "localhost"); /* another CA */
	expect_rejected(c, s1, false, "server certificate rejected");
	tls_ctx_free(c);
	c = client_ctx(fx->ca_pem, "example.com");
	expect_rejected(c, s1, false, "mismatch");
	tls_ctx_free(c);
	c = client_ctx(fx->ca_pem, "127.0.0.2");
	expect_rejected(c, s1, false, "mismatch");
	tls_ctx_free(c);
	c = client_ctx(fx->ca_pem, "local"); /* no partial matches */
	expect_rejected(c, s1, false, "mismatch");
	tls_ctx_free(c);
	/* A peer context is no service: its self-signed certificate does not chain to ca.pem. */
	c = client_ctx(fx->ca_pem, "localhost");
	{
		struct tls_ctx *p = peer_ctx(fx->a1, 1, fx->ik1, cluster_x, meas_a);

		expect_rejected(c, p, false, "server certificate rejected");
		tls_ctx_free(p);
	}
	tls_ctx_free(c);
	tls_ctx_free(s1);
}

static void write_bytes(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static size_t read_bytes(const char *path, uint8_t *p, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	assert_non_null(f);
	n = fread(p, 1, cap, f);
	fclose(f);
	assert_true(n > 0 && n < cap);
	return n;
}

static void expect_service_fails(struct tee *tee, const char *path, int want)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tls_ctx *ctx = (struct tls_ctx *)1;

	assert_int_equal(tls_ctx_service(tee, path, svc_names, 4, &ctx, errbuf), want);
	assert_null(ctx);
	assert_true(strlen(errbuf) > 0);
}

static void test_sealed_ca_binding(void **state)
{
	static uint8_t a[8192], b[8192], mix[16384];
	char path[PATH_MAX];
	size_t na, nb, cert_a, cert_b;

	(void)state;
	/* Sealed for replica 1: replica 2 (same platform and code) cannot open it, nor can a
	 * replica 2 on another platform open replica 2's. */
	expect_service_fails(fx->a2, fx->sealed1, TEEMS_EAUTH);
	expect_service_fails(fx->a1, fx->sealed2, TEEMS_EAUTH);
	expect_service_fails(fx->b2, fx->sealed2, TEEMS_EAUTH);
	{
		struct tee *other_code = open_sim(fx->plat_a, 1, meas_b);

		expect_service_fails(other_code, fx->sealed1, TEEMS_EAUTH);
		tee_close(other_code);
	}

	/* A swapped file: CA 2's certificate with CA 1's sealed key. */
	na = read_bytes(fx->sealed1, a, sizeof(a));
	nb = read_bytes(fx->sealed1_ca2, b, sizeof(b));
	cert_a = (size_t)a[8] | (size_t)a[9] << 8;
	cert_b = (size_t)b[8] | (size_t)b[9] << 8;
	assert_true(12 + cert_b < nb);
	memcpy(mix, b, 12 + cert_b);
	memcpy(mix + 12 + cert_b, a + 12 + cert_a, na - 12 - cert_a);
	join(path, fx->dir, "swapped.sealed");
	write_bytes(path, mix, 12 + cert_b + na - 12 - cert_a);
	expect_service_fails(fx->a1, path, TEEMS_EAUTH);

	/* One byte of the certificate's signature changed: still parses, no longer unseals. */
	memcpy(mix, a, na);
	mix[12 + cert_a - 3] ^= 0x01;
	write_bytes(path, mix, na);
	expect_service_fails(fx->a1, path, TEEMS_EAUTH);
	/* One byte of the blob, and a truncated blob. */
	memcpy(mix, a, na);
	mix[na - 20] ^= 0x40;
	write_bytes(path, mix, na);
	expect_service_fails(fx->a1, path, TEEMS_EAUTH);
	write_bytes(path, a, na - 1);
	expect_service_fails(fx->a1, path, TEEMS_EAUTH);
	/* Not a sealed CA at all, and no file. */
	write_bytes(path, (const uint8_t *)"hello", 5);
	expect_service_fails(fx->a1, path, TEEMS_ECORRUPT);
	memcpy(mix, a, na);
	mix[9] = 0x7f; /* certificate length beyond the file */
	write_bytes(path, mix, na);
	expect_service_fails(fx->a1, path, TEEMS_ECORRUPT);
	join(path, fx->dir, "missing.sealed");
	expect_service_fails(fx->a1, path, TEEMS_EIO);
	/* The original still works. */
	tls_ctx_free(service_ctx(fx->a1, fx->sealed1));
}

static void test_service_bad_names(void **state)
{
	static const char *const bad[] = {"localhost", "evil.example,DNS:bank.example"};
	static const char *const empty[] = {""};
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tls_ctx *ctx = NULL;

	(void)state;
	assert_int_equal(tls_ctx_service(fx->a1, fx->sealed1, bad, 2, &ctx, errbuf), TEEMS_EINVAL);
	assert_int_equal(tls_ctx_service(fx->a1, fx->sealed1, empty, 1, &ctx, errbuf),
			 TEEMS_EINVAL);
	assert_int_equal(tls_ctx_service(fx->a1, fx->sealed1, bad, 0, &ctx, errbuf), TEEMS_EINVAL);
	assert_null(ctx);
}

static void test_ca_create_errors(void **state)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	char ca[PATH_MAX], sealed[PATH_MAX];
	struct tee *tees[1] = {fx->a1};
	const char *paths[1] = {sealed};
	struct stat st;

	(void)state;
	/* Unwritable CA path. */
	join(ca, fx->dir, "no-such-dir/ca.pem");
	join(sealed, fx->dir, "ok.sealed");
	assert_int_equal(tls_ca_create(ca, tees, paths, 1, errbuf), TEEMS_EIO);
	assert_non_null(strstr(errbuf, "no-such-dir"));
	/* Unwritable sealed path: nothing is left claiming a CA exists. */
	join(ca, fx->dir, "ca-partial.pem");
	join(sealed, fx->dir, "no-such-dir/r1.sealed");
	assert_int_equal(tls_ca_create(ca, tees, paths, 1, errbuf), TEEMS_EIO);
	assert_int_equal(stat(ca, &st), -1);
	assert_int_equal(tls_ca_create(NULL, tees, paths, 1, errbuf), TEEMS_EINVAL);
	assert_int_equal(tls_ca_create(ca, NULL, paths, 1, errbuf), TEEMS_EINVAL);
}

static void test_client_ctx_errors(void **state)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	char path[PATH_MAX];
	struct tls_ctx *ctx = NULL;

	(void)state;
	join(path, fx->dir, "missing.pem");
	assert_int_equal(tls_ctx_client(path, "localhost", &ctx, errbuf), TEEMS_EIO);
	join(path, fx->dir, "not-a-cert.pem");
	write_bytes(path, (const uint8_t *)"not a certificate\n", 18);
	assert_int_equal(tls_ctx_client(path, "localhost", &ctx, errbuf), TEEMS_ECRYPTO);
	assert_int_equal(tls_ctx_client(fx->ca_pem, "", &ctx, errbuf), TEEMS_EINVAL);
	assert_null(ctx);
}

/* ---------------------------------------------------------------------------------------------
 * The extension codec
 * ------------------------------------------------------------------------------------------- */

static void test_ext_codec(void **state)
{
	struct tls_ratls_ext e, d;
	uint8_t enc[TLS_RATLS_EXT_LEN], buf[TLS_RATLS_EXT_LEN + 8];

	(void)state;
	memset(&e, 0, sizeof(e));
	e.replica = 0x1234;
	for (int i = 0; i < TEE_PUBLIC_KEY_LEN; i++)
		e.incarnation_key[i] = (uint8_t)i;
	memcpy(e.cluster_id, cluster_x, sizeof(e.cluster_id));
	for (int i = 0; i < TEE_QUOTE_LEN; i++)
		e.quote[i] = (uint8_t)(255 - i);
	tls_ratls_ext_encode(&e, enc);
	assert_memory_equal(enc, "\x04\x82\x01\x00\x01\x00\x34\x12", 8);
	assert_int_equal(tls_ratls_ext_decode(enc, sizeof(enc), &d), TEEMS_OK);
	assert_int_equal(d.replica, 0x1234);
	assert_memory_equal(d.incarnation_key, e.incarnation_key, TEE_PUBLIC_KEY_LEN);
	assert_memory_equal(d.cluster_id, e.cluster_id, TLS_CLUSTER_ID_LEN);
	assert_memory_equal(d.quote, e.quote, TEE_QUOTE_LEN);

	for (size_t n = 0; n < sizeof(enc); n++)
		assert_int_equal(tls_ratls_ext_decode(enc, n, &d), TEEMS_ECORRUPT);
	memcpy(buf, enc, sizeof(enc));
	buf[sizeof(enc)] = 0;
	assert_int_equal(tls_ratls_ext_decode(buf, sizeof(enc) + 1, &d), TEEMS_ECORRUPT);
	memcpy(buf, enc, sizeof(enc));
	buf[0] = 0x30; /* a SEQUENCE */
	assert_int_equal(tls_ratls_ext_decode(buf, sizeof(enc), &d), TEEMS_ECORRUPT);
	memcpy(buf, enc, sizeof(enc));
	buf[4] = 2;
	assert_int_equal(tls_ratls_ext_decode(buf, sizeof(enc), &d), TEEMS_EVERSION);
	buf[4] = 0;
	assert_int_equal(tls_ratls_ext_decode(buf, sizeof(enc), &d), TEEMS_ECORRUPT);
	memcpy(buf, enc, sizeof(enc));
	buf[5] = 1; /* reserved */
	assert_int_equal(tls_ratls_ext_decode(buf, sizeof(enc), &d), TEEMS_ECORRUPT);
	/* Non-minimal length: 0x83 00 01 00. */
	buf[0] = 0x04;
	buf[1] = 0x83;
	buf[2] = 0x00;
	buf[3] = 0x01;
	buf[4] = 0x00;
	memcpy(buf + 5, enc + 4, TLS_RATLS_PAYLOAD_LEN);
	assert_int_equal(tls_ratls_ext_decode(buf, 5 + TLS_RATLS_PAYLOAD_LEN, &d), TEEMS_ECORRUPT);
	/* A short-form version-2 payload is a version this build does not speak. */
	buf[0] = 0x04;
	buf[1] = 0x03;
	buf[2] = 0x02;
	buf[3] = 0x00;
	buf[4] = 0x00;
	assert_int_equal(tls_ratls_ext_decode(buf, 5, &d), TEEMS_EVERSION);
}

/* OpenSSL's own allocations do not go through the hook; ours do, and each failure must come
 * back as an error, never a crash or a half-made object. */
static void test_alloc_failures(void **state)
{
	char errbuf[TEEMS_ERRBUF_LEN];
	struct tls_ctx *ctx;
	struct tls_conn *c;
	int failed = 0;

	(void)state;
	for (long nth = 0; nth < 40; nth++) {
		teems_alloc_fault(nth, 0);
		ctx = NULL;
		if (tls_ctx_service(fx->a1, fx->sealed1, svc_names, 4, &ctx, errbuf) != TEEMS_OK) {
			assert_null(ctx);
			failed++;
			continue;
		}
		c = NULL;
		if (tls_conn_new(ctx, true, &c, errbuf) == TEEMS_OK) {
			if (tls_conn_write(c, "abc", 3) != TEEMS_OK)
				failed++;
			tls_conn_free(c);
		} else {
			failed++;
		}
		tls_ctx_free(ctx);
	}
	teems_alloc_fault(-1, 0);
	assert_true(failed >= 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_peer_handshake),
		cmocka_unit_test(test_peer_wrong_measurement),
		cmocka_unit_test(test_peer_wrong_root),
		cmocka_unit_test(test_peer_cluster_mismatch),
		cmocka_unit_test(test_peer_key_not_bound),
		cmocka_unit_test(test_peer_forged_extension),
		cmocka_unit_test(test_peer_requires_certificate),
		cmocka_unit_test(test_peer_garbage_input),
		cmocka_unit_test(test_peer_bad_arguments),
		cmocka_unit_test(test_ca_files),
		cmocka_unit_test(test_service_and_client),
		cmocka_unit_test(test_client_rejects),
		cmocka_unit_test(test_sealed_ca_binding),
		cmocka_unit_test(test_service_bad_names),
		cmocka_unit_test(test_ca_create_errors),
		cmocka_unit_test(test_client_ctx_errors),
		cmocka_unit_test(test_ext_codec),
		cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
