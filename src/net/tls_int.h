/* Internals of the TLS engine (src/net/tls*.c): the context and connection structs, the RA-TLS
 * certificate extension codec (also the fuzz target's entry point), and the X.509 and file
 * helpers shared by the peer, service and client contexts. Not for callers outside src/net/tls*
 * except tests (tests/unit/test_tls.c) and tests/fuzz/fuzz_tls_ext.c. */
#ifndef TEEMS_NET_TLS_INT_H
#define TEEMS_NET_TLS_INT_H

#include <sys/types.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/tls.h"
#include "teems/err.h"

/* The RA-TLS certificate extension (docs/SECURITY.md "Channels"). Its OID sits under 2.25, the
 * arc for OIDs made from a UUID (ITU-T X.667): 2.25.<UUID 6d9297de-87f7-4c81-afea-1e8d65bdff73
 * as a 128-bit decimal>. Generated once for teems; never change it.
 *
 * extnValue = DER OCTET STRING of the payload (256 bytes, little-endian):
 *     0  version (1)           u8
 *     1  reserved, zero        u8
 *     2  replica               u16
 *     4  incarnation key       32   Ed25519 public key (DESIGN.md section 4)
 *    36  cluster id            16
 *    52  quote                 204  tee_quote_encode; report data below
 * The quote's report data is SHA-256("teems ra-tls v1" | u16 replica | incarnation key |
 * cluster id | SHA-256(DER SubjectPublicKeyInfo of the certificate)), then 32 zero bytes. */
#define TLS_RATLS_OID "2.25.145647007156483586844682442815724978035"
#define TLS_RATLS_VERSION 1
#define TLS_RATLS_PAYLOAD_LEN (4 + TEE_PUBLIC_KEY_LEN + TLS_CLUSTER_ID_LEN + TEE_QUOTE_LEN)
#define TLS_RATLS_EXT_LEN (4 + TLS_RATLS_PAYLOAD_LEN) /* 04 82 01 00 | payload */
#define TLS_RATLS_DOMAIN "teems ra-tls v1"	      /* 15 bytes, no terminator hashed */

struct tls_ratls_ext {
	uint16_t replica;
	uint8_t incarnation_key[TEE_PUBLIC_KEY_LEN];
	uint8_t cluster_id[TLS_CLUSTER_ID_LEN];
	uint8_t quote[TEE_QUOTE_LEN];
};

void tls_ratls_ext_encode(const struct tls_ratls_ext *ext, uint8_t out[TLS_RATLS_EXT_LEN]);

/* Parses an extnValue: exactly one DER OCTET STRING (minimal length encoding) spanning all len
 * bytes, holding a version-1 payload of exactly TLS_RATLS_PAYLOAD_LEN bytes with the reserved
 * byte zero. The quote is copied, not checked. Reads only in[0..len).
 * Errors: TEEMS_ECORRUPT, TEEMS_EVERSION (a payload version other than 1). */
int tls_ratls_ext_decode(const void *in, size_t len, struct tls_ratls_ext *out);

/* The report data a peer certificate's quote must carry (layout above). */
void tls_ratls_report_data(uint16_t replica, const uint8_t incarnation_key[TEE_PUBLIC_KEY_LEN],
			   const uint8_t cluster_id[TLS_CLUSTER_ID_LEN],
			   const uint8_t spki_sha256[TEE_SHA256_LEN],
			   uint8_t out[TEE_REPORT_DATA_LEN]);

enum tls_kind {
	TLS_KIND_PEER = 1,
	TLS_KIND_SERVICE,
	TLS_KIND_CLIENT,
};

struct tls_ctx {
	enum tls_kind kind;
	SSL_CTX *ssl;
	/* The context and every connection made from it; the last release frees it. Contexts are
	 * used by one thread (tls.h), so a plain counter. */
	unsigned refs;
	/* peer: what a peer certificate must prove */
	ASN1_OBJECT *ratls_oid;
	uint8_t root[TEE_PUBLIC_KEY_LEN];
	uint8_t measurement[TEE_MEASUREMENT_LEN];
	uint8_t cluster_id[TLS_CLUSTER_ID_LEN];
	/* client: the server's expected name or address (teems_malloc'd) */
	char *host;
	bool host_is_ip;
};

enum tls_state {
	TLS_HANDSHAKE = 1,
	TLS_OPEN,   /* handshake done, records flow */
	TLS_FAILED, /* sticky error; only the alert remains to be taken */
	TLS_EOF,    /* the peer sent close_notify */
};

struct tls_conn {
	struct tls_ctx *ctx; /* a reference */
	SSL *ssl;
	BIO *rbio; /* ciphertext from the network; owned by ssl */
	BIO *wbio; /* ciphertext for the network; owned by ssl */
	enum tls_state state;
	int err; /* TLS_FAILED or TLS_EOF: what every later read returns */
	bool handshake_done;
	bool shutdown_sent;
	/* peer contexts: the verify callback's verdict on the peer's leaf, computed once */
	bool peer_checked;
	bool peer_ok;
	struct tls_peer peer;
	/* plaintext written before the handshake completed (teems_malloc'd) */
	uint8_t *queue;
	size_t queue_len, queue_cap;
	char reason[TEEMS_ERRBUF_LEN];
};

/* tls.c */
int tls_ctx_alloc(enum tls_kind kind, struct tls_ctx **out, char *errbuf);
/* For tests that forge certificates (a swapped extension, a tampered quote). */
SSL_CTX *tls_ctx_ssl(struct tls_ctx *ctx);

/* tls_x509.c: certificates and files */
EVP_PKEY *tls_p256_keygen(void);
/* An unsigned v3 certificate for key with a random positive 128-bit serial, subject and issuer
 * CN = cn (self-issued until the caller sets another issuer), valid from one hour ago for `days`
 * days. Errors: TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int tls_x509_new(EVP_PKEY *key, const char *cn, int days, X509 **out);
/* Adds an extension from OpenSSL's configuration syntax (constant strings only: never
 * caller-controlled text). issuer NULL: self. */
int tls_x509_add_ext(X509 *x, X509 *issuer, int nid, const char *value);
/* The first queued OpenSSL error as text (or `fallback`), and clears the queue. */
const char *tls_ossl_reason(char *buf, size_t len, const char *fallback);
/* Writes data to path durably: a temporary file in the same directory (mode `mode`), fsync,
 * rename, fsync of the directory. Errors: TEEMS_EIO, TEEMS_ENOMEM. */
int tls_write_file(const char *path, const void *data, size_t len, mode_t mode, char *errbuf);
/* Reads a whole regular file of at most max bytes into a teems_malloc'd buffer.
 * Errors: TEEMS_EIO, TEEMS_ECORRUPT (larger than max), TEEMS_ENOMEM. */
int tls_read_file(const char *path, size_t max, uint8_t **out, size_t *len, char *errbuf);

#endif
