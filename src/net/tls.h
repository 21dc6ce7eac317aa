/* TLS 1.3 over any byte transport, attested replica identities (RA-TLS) and the service CA
 * (DESIGN.md sections 1 and 4; docs/SECURITY.md "Channels").
 *
 * The engine does no I/O: a connection is an OpenSSL SSL object over two memory BIOs. The shell
 * (teemsd's libuv loop, a test) moves bytes:
 *
 *	tls_conn_feed(c, bytes_from_socket, n);       // ciphertext in
 *	while (tls_conn_read(c, buf, sizeof buf, &got) == 0 && got > 0)
 *		handle_plaintext(buf, got);
 *	tls_conn_write(c, reply, len);                // plaintext in (queued until established)
 *	while ((n = tls_conn_take(c, out, sizeof out)) > 0)
 *		send_to_socket(out, n);                   // ciphertext out
 *
 * After every feed, read or write the shell drains tls_conn_take: the handshake produces output
 * in answer to input.
 *
 * Three kinds of context:
 *   - peer: replica to replica, mutual. Each incarnation makes a fresh P-256 TLS key and a
 *     self-signed certificate carrying, in a private extension, its replica id, its incarnation
 *     public key (Ed25519, the key REGISTER binds) and a platform quote whose report data is
 *     SHA-256("teems ra-tls v1" | u16 replica | incarnation key | cluster id | SHA-256(SPKI)).
 *     The verifier checks the quote against the platform root and the allowed measurement and
 *     that the report data binds the certificate's own key; it then exposes (replica,
 *     incarnation key) through tls_conn_peer so the daemon can check them against the
 *     replicated configuration. Nothing else about the certificate is trusted.
 *   - service: the client-facing server side; its certificate is issued for this incarnation
 *     by the service CA, so clients pin one file, ca.pem (redis-cli --tls --cacert ca.pem).
 *   - client: what teems' own clients use: TLS 1.3, the server verified against a CA file and
 *     the host name or IP address.
 *
 * Every context is TLS 1.3 only, without session tickets or resumption: every connection runs a
 * full handshake, so a peer is attested on every connection. Errors carry OpenSSL's reason in
 * errbuf (TEEMS_ERRBUF_LEN).
 * Not thread-safe per connection; contexts may be shared by connections of one thread.
 * Every connection holds a reference to its context: tls_ctx_free may come before the
 * connections' tls_conn_free (the last one frees the context). */
#ifndef TEEMS_NET_TLS_H
#define TEEMS_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tee/tee.h"

#define TLS_CLUSTER_ID_LEN 16

struct tls_ctx;
struct tls_conn;

/* What a verified replica peer proved about itself. */
struct tls_peer {
	uint16_t replica;
	uint8_t incarnation_key[TEE_PUBLIC_KEY_LEN];
	uint8_t measurement[TEE_MEASUREMENT_LEN];
};

/* Replica-to-replica context for this incarnation: makes the TLS key and the attested
 * certificate (quote from tee), and verifies peers against tee's root public key and
 * `measurement` (usually tee_measurement(tee): every replica runs the same code).
 * The certificate extension's OID and layout: src/net/tls_int.h and docs/SECURITY.md
 * "Channels". A rejected peer fails with TEEMS_EAUTH and tls_conn_error starting
 * "attestation: " and naming the broken link: "wrong root", "tampered", "wrong measurement",
 * "cluster id mismatch", "key not bound" (the quote does not bind this certificate's key and
 * identity), "malformed extension", "no teems attestation extension".
 * Errors: TEEMS_ECRYPTO, TEEMS_ENOMEM, TEEMS_EINVAL (a NULL argument; a platform whose quotes
 * are not verified by one root key). */
int tls_ctx_peer(struct tee *tee, uint16_t replica,
		 const uint8_t incarnation_key[TEE_PUBLIC_KEY_LEN],
		 const uint8_t cluster_id[TLS_CLUSTER_ID_LEN],
		 const uint8_t measurement[TEE_MEASUREMENT_LEN], struct tls_ctx **out,
		 char *errbuf);

/* Client-facing server context: a fresh key for this incarnation and a certificate for it
 * issued by the service CA, whose key is unsealed from `sealed_ca_path` (written by
 * tls_ca_create), valid for the given host names and IP addresses (subjectAltName).
 * No client certificates are asked for. A name that parses as an IPv4 or IPv6 address becomes an
 * iPAddress entry, any other a dNSName (letters, digits, '-', '.', '_' only); the leaf is valid
 * for a year (never past the CA) with extendedKeyUsage serverAuth, and the chain sent is
 * leaf + CA. Errors: TEEMS_EIO (cannot read the file), TEEMS_EAUTH (the sealed CA does not
 * unseal for this replica: another replica, code or platform, or an altered or swapped file),
 * TEEMS_ECORRUPT (not a sealed-CA file), TEEMS_EINVAL (no names, or a name that is neither an
 * address nor a host name), TEEMS_ECRYPTO, TEEMS_ENOMEM. */
int tls_ctx_service(struct tee *tee, const char *sealed_ca_path, const char *const *names,
		    size_t n_names, struct tls_ctx **out, char *errbuf);

/* Client context: verifies the server against the PEM CA file and `host` (a name, or an IP
 * address checked against the IP subjectAltName; names are sent as SNI and matched without
 * partial wildcards). A server that fails the check makes tls_conn_read return TEEMS_EAUTH with
 * tls_conn_error "server certificate rejected: <OpenSSL's verify error>".
 * Errors: TEEMS_EIO, TEEMS_ECRYPTO (no certificate in the file), TEEMS_EINVAL (empty host). */
int tls_ctx_client(const char *ca_pem_path, const char *host, struct tls_ctx **out, char *errbuf);

void tls_ctx_free(struct tls_ctx *ctx);

/* Creates the service CA (a P-256 key and a self-signed CA certificate, valid 10 years) at
 * cluster bootstrap: writes the certificate to ca_pem_path (0644) and, for each replica id in
 * `replicas`, the CA key sealed for that replica (tee_seal_key purpose "service-ca") to
 * sealed_paths[i] (0600). `tees[i]` is the platform handle opened for replicas[i] (in the sim
 * platform every replica of a host can be opened by the bootstrap; a real backend would hand
 * the key to each replica's enclave over an attested channel). Files are written to a
 * temporary name, synced, then renamed; the sealed files first, ca.pem last, so an existing
 * ca.pem means every sealed key was written. n may be 0 (only the certificate).
 * Errors: TEEMS_EIO, TEEMS_ECRYPTO, TEEMS_ENOMEM, TEEMS_EINVAL (a NULL path or handle). */
int tls_ca_create(const char *ca_pem_path, struct tee *const *tees, const char *const *sealed_paths,
		  size_t n, char *errbuf);

/* A connection. server: accept side (peer contexts are used for both sides). A connecting side
 * has its ClientHello waiting in tls_conn_take as soon as this returns.
 * Errors: TEEMS_EINVAL (a client context accepting, a service context connecting),
 * TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int tls_conn_new(struct tls_ctx *ctx, bool server, struct tls_conn **out, char *errbuf);
void tls_conn_free(struct tls_conn *c);

/* Ciphertext from the network; also advances the handshake (its answer is then waiting in
 * tls_conn_take; a failure is reported by the next tls_conn_read). Input after a failure or
 * the peer's close_notify is dropped. Errors: TEEMS_ENOMEM. */
int tls_conn_feed(struct tls_conn *c, const void *buf, size_t len);

/* Plaintext for the application: 0 with *got bytes (0: nothing yet, feed more), or
 * TEEMS_EPROTO (handshake or record failure; the peer failed verification: TEEMS_EAUTH),
 * with the reason in tls_conn_error. After an error the connection only yields its alert
 * through tls_conn_take; close it then. A clean close_notify from the peer is TEEMS_EEOF. */
int tls_conn_read(struct tls_conn *c, void *buf, size_t cap, size_t *got);

/* Queues plaintext (held until the handshake completes). Errors: TEEMS_EPROTO (the connection
 * failed, the peer closed it, or tls_conn_shutdown was called), TEEMS_ENOMEM. */
int tls_conn_write(struct tls_conn *c, const void *buf, size_t len);

/* Ciphertext waiting to be sent: copies up to cap bytes, returns how many. */
size_t tls_conn_take(struct tls_conn *c, void *buf, size_t cap);
size_t tls_conn_pending(const struct tls_conn *c);

bool tls_conn_established(const struct tls_conn *c);
/* Queues close_notify (after any queued plaintext); nothing is sent before the handshake
 * completed. Later writes fail. */
void tls_conn_shutdown(struct tls_conn *c);
/* Why the connection failed or ended; "" while it has not. Valid until the next call on c. */
const char *tls_conn_error(const struct tls_conn *c);

/* The verified identity of a replica peer (peer contexts, once established). Returns false
 * otherwise. */
bool tls_conn_peer(const struct tls_conn *c, struct tls_peer *out);

#endif
