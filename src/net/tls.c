/* The TLS engine (tls.h): contexts, the client context, and connections as a non-blocking
 * state machine over two memory BIOs. The peer (RA-TLS) context is in tls_ratls.c, the service
 * CA and service context in tls_ca.c. docs/SECURITY.md "Channels" is the design. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "net/tls_int.h"

/* ---------------------------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------------------------- */

int tls_ctx_alloc(enum tls_kind kind, struct tls_ctx **out, char *errbuf)
{
	char why[128];
	struct tls_ctx *ctx;

	*out = NULL;
	ctx = teems_calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
	ctx->kind = kind;
	ctx->refs = 1;
	ctx->ssl = SSL_CTX_new(TLS_method());
	if (ctx->ssl == NULL) {
		teems_free(ctx);
		return teems_errf(errbuf, TEEMS_ECRYPTO, "tls: SSL_CTX_new: %s",
				  tls_ossl_reason(why, sizeof(why), "failed"));
	}
	/* TLS 1.3 only. No session tickets and no session cache: every connection runs a full
	 * handshake, so a peer's attestation (or a server's certificate) is checked every time
	 * and a resumed session can never outlive the incarnation that made it. */
	if (SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx->ssl, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_num_tickets(ctx->ssl, 0) != 1) {
		tls_ctx_free(ctx);
		return teems_errf(errbuf, TEEMS_ECRYPTO, "tls: cannot restrict to TLS 1.3: %s",
				  tls_ossl_reason(why, sizeof(why), "failed"));
	}
	SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_TICKET);
	/* Idle connections (most client connections, most of the time) give their record
	 * buffers back. */
	SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
	*out = ctx;
	return TEEMS_OK;
}

SSL_CTX *tls_ctx_ssl(struct tls_ctx *ctx)
{
	return ctx->ssl;
}

static void ctx_release(struct tls_ctx *ctx)
{
	if (ctx == NULL || --ctx->refs > 0)
		return;
	SSL_CTX_free(ctx->ssl);
	ASN1_OBJECT_free(ctx->ratls_oid);
	teems_free(ctx->host);
	tee_wipe(ctx, sizeof(*ctx));
	teems_free(ctx);
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	ctx_release(ctx);
}

int tls_ctx_client(const char *ca_pem_path, const char *host, struct tls_ctx **out, char *errbuf)
{
	ASN1_OCTET_STRING *ip;
	struct tls_ctx *ctx;
	char why[128];
	size_t hlen;
	FILE *f;
	int rv;

	*out = NULL;
	if (ca_pem_path == NULL || host == NULL || host[0] == '\0')
		return teems_errf(errbuf, TEEMS_EINVAL, "tls: client needs a CA file and a host");
	hlen = strlen(host);
	/* Tell "cannot read the file" (EIO) from "not a CA certificate" (ECRYPTO). */
	f = fopen(ca_pem_path, "r");
	if (f == NULL)
		return teems_errf(errbuf, TEEMS_EIO, "tls: cannot open CA file %s: %s", ca_pem_path,
				  strerror(errno));
	fclose(f);

	rv = tls_ctx_alloc(TLS_KIND_CLIENT, &ctx, errbuf);
	if (rv != TEEMS_OK)
		return rv;
	ctx->host = teems_malloc(hlen + 1);
	if (ctx->host == NULL) {
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
		goto err_free;
	}
	memcpy(ctx->host, host, hlen + 1);
	ip = a2i_IPADDRESS(host);
	ctx->host_is_ip = ip != NULL;
	ASN1_OCTET_STRING_free(ip);
	ERR_clear_error();

	if (SSL_CTX_load_verify_locations(ctx->ssl, ca_pem_path, NULL) != 1) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO, "tls: no usable CA certificate in %s: %s",
				ca_pem_path, tls_ossl_reason(why, sizeof(why), "failed"));
		goto err_free;
	}
	SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
	*out = ctx;
	return TEEMS_OK;

err_free:
	tls_ctx_free(ctx);
	return rv;
}

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

static int conn_fail(struct tls_conn *c, int err, const char *fmt, const char *arg)
{
	c->state = TLS_FAILED;
	c->err = err;
	snprintf(c->reason, sizeof(c->reason), fmt, arg);
	return err;
}

/* Classifies a failed SSL call. 0 when OpenSSL only wants more input; otherwise the connection
 * is finished and this returns its sticky error. */
static int conn_ssl_error(struct tls_conn *c, int ret)
{
	char why[160];
	long vr;

	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		c->state = TLS_EOF;
		c->err = TEEMS_EEOF;
		snprintf(c->reason, sizeof(c->reason), "peer closed the connection");
		return TEEMS_EEOF;
	default:
		break;
	}
	/* Our verification of the peer failed: peer contexts say why in c->reason already. */
	if (c->peer_checked && !c->peer_ok) {
		ERR_clear_error();
		c->state = TLS_FAILED;
		c->err = TEEMS_EAUTH;
		return TEEMS_EAUTH;
	}
	if (c->ctx->kind == TLS_KIND_PEER &&
	    ERR_GET_REASON(ERR_peek_error()) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		ERR_clear_error();
		return conn_fail(c, TEEMS_EAUTH, "attestation: %s", "peer sent no certificate");
	}
	if (c->ctx->kind == TLS_KIND_CLIENT && !c->handshake_done) {
		vr = SSL_get_verify_result(c->ssl);
		if (vr != X509_V_OK) {
			ERR_clear_error();
			return conn_fail(c, TEEMS_EAUTH, "server certificate rejected: %s",
					 X509_verify_cert_error_string(vr));
		}
	}
	return conn_fail(c, TEEMS_EPROTO, "%s", tls_ossl_reason(why, sizeof(why), "TLS failure"));
}

/* Pushes queued plaintext into the TLS layer (which encrypts it into wbio). */
static int conn_flush(struct tls_conn *c)
{
	size_t n;

	while (c->queue_len > 0) {
		ERR_clear_error();
		if (SSL_write_ex(c->ssl, c->queue, c->queue_len, &n) != 1)
			return conn_ssl_error(c, 0);
		memmove(c->queue, c->queue + n, c->queue_len - n);
		c->queue_len -= n;
	}
	/* Do not keep a large buffer for an idle connection. */
	if (c->queue_cap > 16384) {
		tee_wipe(c->queue, c->queue_cap);
		teems_free(c->queue);
		c->queue = NULL;
		c->queue_cap = 0;
	}
	return TEEMS_OK;
}

/* Advances the handshake as far as the input allows. */
static int conn_drive(struct tls_conn *c)
{
	int ret;

	if (c->state != TLS_HANDSHAKE)
		return c->state == TLS_OPEN ? TEEMS_OK : c->err;
	ERR_clear_error();
	ret = SSL_do_handshake(c->ssl);
	if (ret != 1)
		return conn_ssl_error(c, ret);
	/* Belt and braces: a peer context accepts only a leaf its verify callback checked (the
	 * callback always runs with SSL_VERIFY_PEER, but this does not rely on it). */
	if (c->ctx->kind == TLS_KIND_PEER && !(c->peer_checked && c->peer_ok)) {
		if (!c->peer_checked)
			snprintf(c->reason, sizeof(c->reason), "attestation: peer not verified");
		c->state = TLS_FAILED;
		c->err = TEEMS_EAUTH;
		return TEEMS_EAUTH;
	}
	c->handshake_done = true;
	c->state = TLS_OPEN;
	return conn_flush(c);
}

int tls_conn_new(struct tls_ctx *ctx, bool server, struct tls_conn **out, char *errbuf)
{
	struct tls_conn *c;
	char why[128];
	int rv;

	*out = NULL;
	if ((ctx->kind == TLS_KIND_CLIENT && server) || (ctx->kind == TLS_KIND_SERVICE && !server))
		return teems_errf(errbuf, TEEMS_EINVAL, "tls: a %s context cannot %s",
				  server ? "client" : "service", server ? "accept" : "connect");
	c = teems_calloc(1, sizeof(*c));
	if (c == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
	c->ctx = ctx;
	ctx->refs++;
	c->state = TLS_HANDSHAKE;
	c->ssl = SSL_new(ctx->ssl);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		c->rbio = c->wbio = NULL;
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: SSL_new: %s",
				tls_ossl_reason(why, sizeof(why), "out of memory"));
		goto err_free;
	}
	/* An empty input BIO means "more later", not end of stream. */
	BIO_set_mem_eof_return(c->rbio, -1);
	BIO_set_mem_eof_return(c->wbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_app_data(c->ssl, c);

	if (server) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		if (ctx->kind == TLS_KIND_CLIENT) {
			int ok;

			SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (ctx->host_is_ip)
				ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
								   ctx->host);
			else
				ok = SSL_set_tlsext_host_name(c->ssl, ctx->host) == 1 &&
				     SSL_set1_host(c->ssl, ctx->host) == 1;
			if (!ok) {
				rv = teems_errf(errbuf, TEEMS_ECRYPTO,
						"tls: cannot expect host %s: %s", ctx->host,
						tls_ossl_reason(why, sizeof(why), "failed"));
				goto err_free;
			}
		}
		/* The ClientHello is ready in tls_conn_take right away. */
		(void)conn_drive(c);
	}
	*out = c;
	return TEEMS_OK;

err_free:
	tls_conn_free(c);
	return rv;
}

void tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl); /* frees both BIOs */
	ctx_release(c->ctx);
	if (c->queue != NULL) {
		tee_wipe(c->queue, c->queue_cap);
		teems_free(c->queue);
	}
	tee_wipe(c, sizeof(*c));
	teems_free(c);
}

int tls_conn_feed(struct tls_conn *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* After a failure or the peer's close_notify, further input has no reader. */
	if (c->state == TLS_FAILED || c->state == TLS_EOF)
		return TEEMS_OK;
	while (len > 0) {
		int chunk = len > INT_MAX ? INT_MAX : (int)len;

		if (BIO_write(c->rbio, p, chunk) != chunk) {
			ERR_clear_error();
			return TEEMS_ENOMEM;
		}
		p += chunk;
		len -= (size_t)chunk;
	}
	/* The handshake answers input by itself, so a shell that only feeds and takes makes
	 * progress; errors stay sticky and tls_conn_read reports them. */
	if (c->state == TLS_HANDSHAKE)
		(void)conn_drive(c);
	return TEEMS_OK;
}

int tls_conn_read(struct tls_conn *c, void *buf, size_t cap, size_t *got)
{
	size_t n;
	int rv;

	*got = 0;
	rv = conn_drive(c);
	if (rv != TEEMS_OK || c->state != TLS_OPEN)
		return rv;
	if (cap == 0)
		return TEEMS_OK;
	ERR_clear_error();
	if (SSL_read_ex(c->ssl, buf, cap, &n) != 1)
		return conn_ssl_error(c, 0);
	*got = n;
	return TEEMS_OK;
}

int tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	size_t cap;
	uint8_t *q;

	if (c->state == TLS_FAILED || c->state == TLS_EOF || c->shutdown_sent)
		return TEEMS_EPROTO;
	if (len == 0)
		return TEEMS_OK;
	/* Established and nothing queued: straight into the TLS layer. */
	if (c->state == TLS_OPEN && c->queue_len == 0) {
		size_t n;

		/* Without partial-write mode, success means all of it. */
		ERR_clear_error();
		if (SSL_write_ex(c->ssl, buf, len, &n) == 1)
			return TEEMS_OK;
		if (conn_ssl_error(c, 0) < 0)
			return TEEMS_EPROTO;
		/* OpenSSL wants input first: queue the bytes like during the handshake. */
	}
	if (len > SIZE_MAX / 2 - c->queue_len)
		return TEEMS_ENOMEM;
	if (c->queue_len + len > c->queue_cap) {
		cap = c->queue_cap > 0 ? c->queue_cap : 256;
		while (cap < c->queue_len + len)
			cap *= 2;
		q = teems_malloc(cap);
		if (q == NULL)
			return TEEMS_ENOMEM;
		if (c->queue != NULL) {
			memcpy(q, c->queue, c->queue_len);
			tee_wipe(c->queue, c->queue_cap);
			teems_free(c->queue);
		}
		c->queue = q;
		c->queue_cap = cap;
	}
	memcpy(c->queue + c->queue_len, buf, len);
	c->queue_len += len;
	if (c->state != TLS_OPEN)
		return TEEMS_OK;
	return conn_flush(c) < 0 ? TEEMS_EPROTO : TEEMS_OK;
}

size_t tls_conn_take(struct tls_conn *c, void *buf, size_t cap)
{
	int n;

	if (cap == 0)
		return 0;
	n = BIO_read(c->wbio, buf, cap > INT_MAX ? INT_MAX : (int)cap);
	return n > 0 ? (size_t)n : 0;
}

size_t tls_conn_pending(const struct tls_conn *c)
{
	return BIO_ctrl_pending(c->wbio);
}

bool tls_conn_established(const struct tls_conn *c)
{
	return c->handshake_done && c->state != TLS_FAILED;
}

void tls_conn_shutdown(struct tls_conn *c)
{
	if (c->shutdown_sent)
		return;
	c->shutdown_sent = true;
	if (!c->handshake_done || c->state == TLS_FAILED)
		return;
	(void)conn_flush(c);
	ERR_clear_error();
	/* 0 ("sent, the peer's has not arrived") is the expected answer over memory BIOs. */
	(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
}

const char *tls_conn_error(const struct tls_conn *c)
{
	return c->reason;
}

bool tls_conn_peer(const struct tls_conn *c, struct tls_peer *out)
{
	if (c->ctx->kind != TLS_KIND_PEER || !c->handshake_done || c->state == TLS_FAILED ||
	    !c->peer_ok)
		return false;
	*out = c->peer;
	return true;
}
