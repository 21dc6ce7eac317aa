/* teems error codes: one enum for the whole library, with a string table (src/common/err.c).
 *
 * Functions return 0 (TEEMS_OK) or a negative teems_err; those that can say more fill a
 * caller-owned buffer of TEEMS_ERRBUF_LEN bytes (NULL is allowed and means "don't tell me"). */
#ifndef TEEMS_ERR_H
#define TEEMS_ERR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TEEMS_ERRBUF_LEN 256

enum teems_err {
	TEEMS_OK = 0,
	TEEMS_ENOMEM = -1,	/* an allocation failed */
	TEEMS_EINVAL = -2,	/* an argument or setting is invalid */
	TEEMS_EIO = -3,		/* the operating system refused a file or socket operation */
	TEEMS_ECORRUPT = -4,	/* input is malformed (bad length, bad magic, out of range) */
	TEEMS_EAUTH = -5,	/* authenticated decryption or a MAC check failed */
	TEEMS_ECRYPTO = -6,	/* the crypto library failed (not an authentication failure) */
	TEEMS_ENOTFOUND = -7,	/* no such file, key or record */
	TEEMS_EVERSION = -8,	/* an encoding version this build does not speak */
	TEEMS_EQUOTE_ROOT = -9, /* a quote signed under a root key we do not trust */
	TEEMS_EQUOTE_MEASUREMENT = -10, /* a genuine quote for code we did not expect */
	TEEMS_EQUOTE_TAMPERED = -11,	/* a quote whose signature does not verify */
	TEEMS_ECONFIG = -12, /* a configuration violates a rule (the message says which) */
	TEEMS_EFULL = -13,   /* a buffer or table is full */
	TEEMS_ECLOCK = -14,  /* the trusted clock is unusable (not calibrated, no trusted rate) */
	TEEMS_EEXIST = -15,  /* already exists */
	TEEMS_EPROTO = -16,  /* the peer broke the protocol (a TLS handshake or record failure) */
	TEEMS_EEOF = -17,    /* the peer closed the connection cleanly */
	TEEMS_ERR_MIN_ = -17,
};

/* A short, static description of an error code ("authentication failed"). Never NULL. */
const char *teems_strerror(int err);

/* Writes a printf-style message into errbuf (TEEMS_ERRBUF_LEN bytes) if errbuf is not NULL,
 * and returns err, so that `return teems_errf(errbuf, TEEMS_EINVAL, "...")` reads naturally. */
int teems_errf(char *errbuf, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
