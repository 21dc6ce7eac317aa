/* A blocking RESP client connection (DESIGN.md section 9): the `teems` CLI, the system tests
 * and the object layer talk to teemsd (or any Redis server) through it.
 *
 *	struct conn_options o = {.host = "127.0.0.1", .port = 7000, .ca_file = "ca.pem"};
 *	struct conn *c;
 *	struct conn_reply *r;
 *	char err[TEEMS_ERRBUF_LEN];
 *
 *	if (conn_open(&o, &c, err) != 0)
 *		die(err);                          // refused, timeout, TLS verification, ...
 *	if (conn_commandv(c, &r, err, "SET", "k", "v", NULL) != 0)
 *		die(err);                          // the connection failed; close it
 *	if (r->type == CONN_REPLY_ERROR)
 *		complain(r->str);                   // the server said -ERR ...: not a conn error
 *	conn_reply_free(r);
 *	conn_close(c);
 *
 * Transport: TCP to host:port (every address getaddrinfo returns is tried in turn), then, when
 * ca_file is set, TLS 1.3 only, the server's chain verified against ca_file and its certificate
 * against the host name (DNS subjectAltName) or IP address (IP subjectAltName). Without ca_file
 * the connection is plaintext. The socket is non-blocking underneath; every wait is a poll()
 * bounded by a deadline, so no call blocks longer than its timeout.
 *
 * Requests are sent as RESP arrays of bulk strings (binary-safe). Replies are read with hiredis'
 * reader into a small reply tree owned by the caller (conn_reply_free).
 *
 * After any error other than a server error reply the connection is in an unknown state (a
 * reply may be half read): close it. Not thread-safe; one connection per thread. */
#ifndef TEEMS_CLIENT_CONN_H
#define TEEMS_CLIENT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Errors of this module, beyond those of teems/err.h (TEEMS_EINVAL, TEEMS_ENOMEM). They live in
 * their own range (-120 and below; the object layer has -100..-119) so teems/err.h is not
 * renumbered. conn_strerror() describes any of them. */
enum conn_err {
	/* Nothing listens there, the address is unreachable, or the name does not resolve. */
	CONN_EUNREACHABLE = -120,
	/* The connect, handshake, send or reply did not complete within its timeout. */
	CONN_ETIMEOUT = -121,
	/* The TLS handshake failed: the server's certificate did not verify (errbuf says why:
	 * "certificate verify failed: self-signed certificate in certificate chain", "hostname
	 * mismatch"), or the server does not speak TLS 1.3. */
	CONN_ETLS = -122,
	/* The server's bytes are not RESP, or a reply exceeds max_reply. */
	CONN_EPROTO = -123,
	/* The server closed the connection (or reset it) before the reply was complete. */
	CONN_ECLOSED = -124,
	/* The server refused the credentials (conn_options user/pass): errbuf holds its reply,
	 * e.g. "WRONGPASS invalid username-password pair or user is disabled.". */
	CONN_EAUTH = -125,
	CONN_ERR_MIN_ = -125,
};

/* Describes a code of this enum or of teems/err.h. Never NULL. */
const char *conn_strerror(int err);

/* True for the errors that mean "this server cannot be used now; another replica might":
 * CONN_EUNREACHABLE, CONN_ETIMEOUT, CONN_ECLOSED. */
bool conn_err_is_unavailable(int err);

struct conn_options {
	const char *host; /* a name or an address (IPv6 without brackets) */
	uint16_t port;
	/* PEM file of the CA that issued the server's certificate (teems: DIR/ca.pem). NULL:
	 * plaintext. */
	const char *ca_file;
	/* The name or IP the certificate must be valid for; NULL: host. */
	const char *tls_name;
	/* 0 means the default: 5000 ms to connect and complete the handshake, 10000 ms for each
	 * command (sending it and reading its whole reply). */
	unsigned connect_timeout_ms, io_timeout_ms;
	/* Largest reply (bytes buffered for one reply) accepted; 0: 512 MiB. */
	size_t max_reply;
	/* Credentials (docs/OPERATIONS.md, "Users and permissions"): with pass set, conn_open
	 * sends AUTH user pass (AUTH pass when user is NULL: the "default" user) right after
	 * connecting, and fails with CONN_EAUTH if the server refuses them. NULL pass: no AUTH
	 * (the connection acts as "default" while it needs no password). Borrowed for the call. */
	const char *user, *pass;
};

enum conn_reply_type {
	CONN_REPLY_STRING = 1,	/* bulk string: str, len */
	CONN_REPLY_ARRAY = 2,	/* element[0..elements) */
	CONN_REPLY_INTEGER = 3, /* integer */
	CONN_REPLY_NIL = 4,	/* null bulk string or null array */
	CONN_REPLY_STATUS = 5,	/* +OK: str, len */
	CONN_REPLY_ERROR = 6,	/* -ERR text: str (without the '-'), len */
};

/* One reply. str is NUL-terminated (after len bytes, which may contain NULs) for STRING,
 * STATUS and ERROR, NULL otherwise. The whole tree belongs to the caller: free the root with
 * conn_reply_free. */
struct conn_reply {
	enum conn_reply_type type;
	long long integer;
	char *str;
	size_t len;
	struct conn_reply **element;
	size_t elements;
};

void conn_reply_free(struct conn_reply *r);

struct conn;

/* Connects (and completes the TLS handshake, then AUTH when opts->pass is set). *out belongs
 * to the caller until conn_close. Errors: TEEMS_EINVAL (no host, port 0), TEEMS_ENOMEM,
 * TEEMS_EIO (the CA file cannot be loaded, a socket call failed), CONN_EUNREACHABLE,
 * CONN_ETIMEOUT, CONN_ETLS, CONN_ECLOSED, CONN_EPROTO, CONN_EAUTH.
 * errbuf names the address: "127.0.0.1:7000: connection refused". */
int conn_open(const struct conn_options *opts, struct conn **out, char *errbuf);

/* Sends close_notify (TLS) and closes the socket. NULL is a no-op. */
void conn_close(struct conn *c);

/* "127.0.0.1:7000" (the address connected to), for messages. */
const char *conn_peer(const struct conn *c);

/* Sends one command: argc arguments argv[i] of len[i] bytes (len NULL: NUL-terminated
 * strings). Errors: TEEMS_EINVAL (argc 0), TEEMS_ENOMEM, CONN_ETIMEOUT, CONN_ECLOSED,
 * CONN_ETLS, TEEMS_EIO. */
int conn_send(struct conn *c, size_t argc, const char *const *argv, const size_t *len,
	      char *errbuf);

/* Reads the next reply. *reply belongs to the caller. A server error reply is a success with
 * (*reply)->type == CONN_REPLY_ERROR. Errors: CONN_ETIMEOUT, CONN_ECLOSED, CONN_EPROTO,
 * CONN_ETLS, TEEMS_ENOMEM, TEEMS_EIO. */
int conn_recv(struct conn *c, struct conn_reply **reply, char *errbuf);

/* conn_send then conn_recv. */
int conn_command(struct conn *c, size_t argc, const char *const *argv, const size_t *len,
		 struct conn_reply **reply, char *errbuf);

/* conn_command with NUL-terminated arguments, the list ended by NULL (at most 64). */
int conn_commandv(struct conn *c, struct conn_reply **reply, char *errbuf, const char *arg0, ...)
	__attribute__((sentinel));

/* Parses an INFO-format bulk string ("key:value\r\n" lines; '#' lines ignored) and copies the
 * value of key into out (cap bytes, NUL-terminated, truncated to fit). Returns false if the key
 * is absent. */
bool conn_info_field(const char *info, size_t len, const char *key, char *out, size_t cap);

#endif
