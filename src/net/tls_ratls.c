/* Replica-to-replica channels with attested identities (RA-TLS; DESIGN.md section 4, Boot;
 * docs/SECURITY.md "Channels").
 *
 * Each incarnation makes a fresh P-256 key and a self-signed certificate whose private
 * extension (layout in tls_int.h) carries (replica, incarnation key, cluster id, quote). The
 * quote's report data hashes those three and the certificate's own SubjectPublicKeyInfo, so:
 *   - the TLS handshake proves possession of the private key of that SPKI (CertificateVerify);
 *   - the quote proves that code with the expected measurement, on a platform whose root we
 *     trust, chose that SPKI for that (replica, incarnation key, cluster).
 * Nothing else in the certificate (names, dates, its self-signature) is trusted or needed, which
 * is why the verify callback overrides every chain error for the leaf: the leaf is its own
 * proof. Both sides verify each other. */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "net/tls_int.h"

#define RATLS_DAYS 3650 /* the key dies with the incarnation long before */

static int ratls_verify_cb(int preverify_ok, X509_STORE_CTX *store);

void tls_ratls_ext_encode(const struct tls_ratls_ext *ext, uint8_t out[TLS_RATLS_EXT_LEN])
{
	uint8_t *p = out + 4;

	/* OCTET STRING, long-form length: TLS_RATLS_PAYLOAD_LEN (256) needs two octets */
	out[0] = 0x04;
	out[1] = 0x82;
	out[2] = (uint8_t)(TLS_RATLS_PAYLOAD_LEN >> 8);
	out[3] = (uint8_t)TLS_RATLS_PAYLOAD_LEN;
	p[0] = TLS_RATLS_VERSION;
	p[1] = 0;
	put_le16(p + 2, ext->replica);
	memcpy(p + 4, ext->incarnation_key, TEE_PUBLIC_KEY_LEN);
	memcpy(p + 4 + TEE_PUBLIC_KEY_LEN, ext->cluster_id, TLS_CLUSTER_ID_LEN);
	memcpy(p + 4 + TEE_PUBLIC_KEY_LEN + TLS_CLUSTER_ID_LEN, ext->quote, TEE_QUOTE_LEN);
}

int tls_ratls_ext_decode(const void *in, size_t len, struct tls_ratls_ext *out)
{
	const uint8_t *b = in, *p;
	size_t hdr, body;

	if (len < 2 || b[0] != 0x04)
		return TEEMS_ECORRUPT;
	/* DER: short form below 128, else the fewest length octets, no leading zero */
	if (b[1] < 0x80) {
		hdr = 2;
		body = b[1];
	} else if (b[1] == 0x81) {
		if (len < 3 || b[2] < 0x80)
			return TEEMS_ECORRUPT;
		hdr = 3;
		body = b[2];
	} else if (b[1] == 0x82) {
		if (len < 4 || b[2] == 0)
			return TEEMS_ECORRUPT;
		hdr = 4;
		body = (size_t)b[2] << 8 | b[3];
	} else {
		return TEEMS_ECORRUPT; /* longer than any payload version would be */
	}
	if (body != len - hdr || body == 0)
		return TEEMS_ECORRUPT;
	p = b + hdr;
	if (p[0] != TLS_RATLS_VERSION)
		return p[0] == 0 ? TEEMS_ECORRUPT : TEEMS_EVERSION;
	if (body != TLS_RATLS_PAYLOAD_LEN || p[1] != 0)
		return TEEMS_ECORRUPT;
	out->replica = get_le16(p + 2);
	memcpy(out->incarnation_key, p + 4, TEE_PUBLIC_KEY_LEN);
	memcpy(out->cluster_id, p + 4 + TEE_PUBLIC_KEY_LEN, TLS_CLUSTER_ID_LEN);
	memcpy(out->quote, p + 4 + TEE_PUBLIC_KEY_LEN + TLS_CLUSTER_ID_LEN, TEE_QUOTE_LEN);
	return TEEMS_OK;
}

void tls_ratls_report_data(uint16_t replica, const uint8_t incarnation_key[TEE_PUBLIC_KEY_LEN],
			   const uint8_t cluster_id[TLS_CLUSTER_ID_LEN],
			   const uint8_t spki_sha256[TEE_SHA256_LEN],
			   uint8_t out[TEE_REPORT_DATA_LEN])
{
	uint8_t msg[sizeof(TLS_RATLS_DOMAIN) - 1 + 2 + TEE_PUBLIC_KEY_LEN + TLS_CLUSTER_ID_LEN +
		    TEE_SHA256_LEN];
	uint8_t *p = msg;

	memcpy(p, TLS_RATLS_DOMAIN, sizeof(TLS_RATLS_DOMAIN) - 1);
	p += sizeof(TLS_RATLS_DOMAIN) - 1;
	put_le16(p, replica);
	p += 2;
	memcpy(p, incarnation_key, TEE_PUBLIC_KEY_LEN);
	p += TEE_PUBLIC_KEY_LEN;
	memcpy(p, cluster_id, TLS_CLUSTER_ID_LEN);
	p += TLS_CLUSTER_ID_LEN;
	memcpy(p, spki_sha256, TEE_SHA256_LEN);
	memset(out, 0, TEE_REPORT_DATA_LEN);
	tee_sha256(msg, sizeof(msg), out);
}

/* SHA-256 of the certificate's DER SubjectPublicKeyInfo. */
static int spki_hash(X509 *cert, uint8_t out[TEE_SHA256_LEN])
{
	unsigned char *der = NULL;
	int n;

	n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	if (n <= 0) {
		ERR_clear_error();
		return TEEMS_ECRYPTO;
	}
	tee_sha256(der, (size_t)n, out);
	OPENSSL_free(der);
	return TEEMS_OK;
}

static int add_ratls_ext(X509 *x, const ASN1_OBJECT *oid, const struct tls_ratls_ext *ext)
{
	uint8_t enc[TLS_RATLS_EXT_LEN];
	ASN1_OCTET_STRING *os;
	X509_EXTENSION *e = NULL;
	int rv = TEEMS_ECRYPTO;

	tls_ratls_ext_encode(ext, enc);
	os = ASN1_OCTET_STRING_new();
	if (os == NULL)
		return TEEMS_ENOMEM;
	/* Not critical: only teems verifiers read it, and they require it. */
	if (ASN1_OCTET_STRING_set(os, enc, sizeof(enc)) == 1 &&
	    (e = X509_EXTENSION_create_by_OBJ(NULL, oid, 0, os)) != NULL && X509_add_ext(x, e, -1))
		rv = TEEMS_OK;
	X509_EXTENSION_free(e);
	ASN1_OCTET_STRING_free(os);
	return rv;
}

static int ratls_ctx_setup(struct tls_ctx *ctx, struct tee *tee, uint16_t replica,
			   const uint8_t incarnation_key[TEE_PUBLIC_KEY_LEN], char *errbuf)
{
	uint8_t hash[TEE_SHA256_LEN], rd[TEE_REPORT_DATA_LEN];
	struct tls_ratls_ext ext;
	struct tee_quote q;
	EVP_PKEY *key;
	X509 *x = NULL;
	char cn[32], why[128];
	int rv;

	key = tls_p256_keygen();
	if (key == NULL)
		return teems_errf(errbuf, TEEMS_ECRYPTO, "tls: P-256 key generation failed: %s",
				  tls_ossl_reason(why, sizeof(why), "failed"));
	snprintf(cn, sizeof(cn), "teems replica %u", (unsigned)replica);
	rv = tls_x509_new(key, cn, RATLS_DAYS, &x);
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: cannot make the peer certificate: %s",
			   tls_ossl_reason(why, sizeof(why), "failed"));
		goto out;
	}
	rv = spki_hash(x, hash);
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: cannot encode the public key");
		goto out;
	}
	tls_ratls_report_data(replica, incarnation_key, ctx->cluster_id, hash, rd);
	rv = tee_quote(tee, rd, &q);
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: cannot quote the certificate key: %s",
			   teems_strerror(rv));
		goto out;
	}
	ext.replica = replica;
	memcpy(ext.incarnation_key, incarnation_key, TEE_PUBLIC_KEY_LEN);
	memcpy(ext.cluster_id, ctx->cluster_id, TLS_CLUSTER_ID_LEN);
	tee_quote_encode(&q, ext.quote);
	rv = add_ratls_ext(x, ctx->ratls_oid, &ext);
	if (rv == TEEMS_OK && X509_sign(x, key, EVP_sha256()) <= 0)
		rv = TEEMS_ECRYPTO;
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: cannot sign the peer certificate: %s",
			   tls_ossl_reason(why, sizeof(why), "failed"));
		goto out;
	}
	if (SSL_CTX_use_certificate(ctx->ssl, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx->ssl, key) != 1 ||
	    SSL_CTX_check_private_key(ctx->ssl) != 1) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO,
				"tls: cannot install the peer certificate: %s",
				tls_ossl_reason(why, sizeof(why), "failed"));
		goto out;
	}
	SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   ratls_verify_cb);
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return rv;
}

/* Everything a peer's leaf must prove, in the order that names the first broken link.
 * 0, or -1 with the reason in reason (TEEMS_ERRBUF_LEN). */
static int ratls_check(const struct tls_ctx *ctx, X509 *cert, struct tls_peer *peer, char *reason)
{
	uint8_t hash[TEE_SHA256_LEN], rd[TEE_REPORT_DATA_LEN], want[TEE_REPORT_DATA_LEN];
	const ASN1_OCTET_STRING *val;
	struct tls_ratls_ext ext;
	int idx, rv;

	if (cert == NULL) {
		snprintf(reason, TEEMS_ERRBUF_LEN, "attestation: peer sent no certificate");
		return -1;
	}
	idx = X509_get_ext_by_OBJ(cert, ctx->ratls_oid, -1);
	if (idx < 0) {
		snprintf(reason, TEEMS_ERRBUF_LEN,
			 "attestation: peer certificate has no teems attestation extension");
		return -1;
	}
	if (X509_get_ext_by_OBJ(cert, ctx->ratls_oid, idx) >= 0) {
		snprintf(reason, TEEMS_ERRBUF_LEN,
			 "attestation: peer certificate has two attestation extensions");
		return -1;
	}
	val = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
	rv = tls_ratls_ext_decode(ASN1_STRING_get0_data(val), (size_t)ASN1_STRING_length(val),
				  &ext);
	if (rv != TEEMS_OK) {
		snprintf(reason, TEEMS_ERRBUF_LEN, "attestation: malformed extension: %s",
			 teems_strerror(rv));
		return -1;
	}
	rv = tee_quote_verify(ctx->root, ctx->measurement, ext.quote, TEE_QUOTE_LEN, rd);
	switch (rv) {
	case TEEMS_OK:
		break;
	case TEEMS_EQUOTE_ROOT:
		snprintf(reason, TEEMS_ERRBUF_LEN,
			 "attestation: wrong root: quote signed under a platform root we do not "
			 "trust");
		return -1;
	case TEEMS_EQUOTE_TAMPERED:
		snprintf(reason, TEEMS_ERRBUF_LEN,
			 "attestation: tampered: quote signature does not verify");
		return -1;
	case TEEMS_EQUOTE_MEASUREMENT:
		snprintf(reason, TEEMS_ERRBUF_LEN,
			 "attestation: wrong measurement: peer runs code we do not expect");
		return -1;
	default:
		snprintf(reason, TEEMS_ERRBUF_LEN, "attestation: bad quote: %s",
			 teems_strerror(rv));
		return -1;
	}
	if (memcmp(ext.cluster_id, ctx->cluster_id, TLS_CLUSTER_ID_LEN) != 0) {
		snprintf(reason, TEEMS_ERRBUF_LEN,
			 "attestation: cluster id mismatch: peer belongs to another cluster");
		return -1;
	}
	if (spki_hash(cert, hash) != TEEMS_OK) {
		snprintf(reason, TEEMS_ERRBUF_LEN, "attestation: unreadable certificate key");
		return -1;
	}
	tls_ratls_report_data(ext.replica, ext.incarnation_key, ext.cluster_id, hash, want);
	if (memcmp(rd, want, TEE_REPORT_DATA_LEN) != 0) {
		snprintf(reason, TEEMS_ERRBUF_LEN,
			 "attestation: key not bound: the quote does not bind this certificate's "
			 "key and identity");
		return -1;
	}
	peer->replica = ext.replica;
	memcpy(peer->incarnation_key, ext.incarnation_key, TEE_PUBLIC_KEY_LEN);
	memcpy(peer->measurement, ctx->measurement, TEE_MEASUREMENT_LEN);
	return 0;
}

/* OpenSSL calls this once per chain error and once per certificate. The leaf is checked on the
 * first call, whatever preverify_ok says (a self-signed leaf always fails chain building), and
 * that verdict answers every later call. */
static int ratls_verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;

	(void)preverify_ok;
	if (c == NULL)
		return 0;
	if (!c->peer_checked) {
		c->peer_checked = true;
		c->peer_ok = ratls_check(c->ctx, X509_STORE_CTX_get0_cert(store), &c->peer,
					 c->reason) == 0;
	}
	if (!c->peer_ok)
		X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
	return c->peer_ok ? 1 : 0;
}

int tls_ctx_peer(struct tee *tee, uint16_t replica,
		 const uint8_t incarnation_key[TEE_PUBLIC_KEY_LEN],
		 const uint8_t cluster_id[TLS_CLUSTER_ID_LEN],
		 const uint8_t measurement[TEE_MEASUREMENT_LEN], struct tls_ctx **out, char *errbuf)
{
	struct tls_ctx *ctx;
	int rv;

	*out = NULL;
	if (tee == NULL || incarnation_key == NULL || cluster_id == NULL || measurement == NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "tls: peer context needs every argument");
	rv = tls_ctx_alloc(TLS_KIND_PEER, &ctx, errbuf);
	if (rv != TEEMS_OK)
		return rv;
	memcpy(ctx->measurement, measurement, TEE_MEASUREMENT_LEN);
	memcpy(ctx->cluster_id, cluster_id, TLS_CLUSTER_ID_LEN);
	rv = tee_root_public_key(tee, ctx->root);
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: platform %s has no single root key to verify peers",
			   tee_platform_name(tee));
		goto err_free;
	}
	ctx->ratls_oid = OBJ_txt2obj(TLS_RATLS_OID, 1);
	if (ctx->ratls_oid == NULL) {
		ERR_clear_error();
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: cannot make the attestation OID");
		goto err_free;
	}
	rv = ratls_ctx_setup(ctx, tee, replica, incarnation_key, errbuf);
	if (rv != TEEMS_OK)
		goto err_free;
	*out = ctx;
	return TEEMS_OK;

err_free:
	tls_ctx_free(ctx);
	return rv;
}
