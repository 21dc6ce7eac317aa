/* Certificate and file helpers shared by the peer (tls_ratls.c), service and CA (tls_ca.c)
 * contexts. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "net/tls_int.h"

EVP_PKEY *tls_p256_keygen(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* RFC 5280 asks for positive serials of at most 20 octets; 127 random bits make collisions
 * between two certificates of one issuer negligible, which is all a serial is for here. */
static int set_random_serial(X509 *x)
{
	uint8_t raw[16];
	BIGNUM *bn;
	int rv = TEEMS_OK;

	if (tee_random(raw, sizeof(raw)) != TEEMS_OK)
		return TEEMS_ECRYPTO;
	raw[0] &= 0x7f;
	raw[0] |= 0x40; /* never zero, always 16 octets */
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (bn == NULL)
		return TEEMS_ENOMEM;
	if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		rv = TEEMS_ECRYPTO;
	BN_free(bn);
	return rv;
}

int tls_x509_new(EVP_PKEY *key, const char *cn, int days, X509 **out)
{
	X509_NAME *name;
	X509 *x;
	int rv;

	*out = NULL;
	x = X509_new();
	if (x == NULL)
		return TEEMS_ENOMEM;
	rv = set_random_serial(x);
	if (rv != TEEMS_OK)
		goto err_free;
	rv = TEEMS_ECRYPTO;
	/* Backdated an hour so that a peer whose clock is a little behind does not see a
	 * certificate from the future (nothing in the RA-TLS check depends on the dates). */
	if (X509_set_version(x, X509_VERSION_3) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL ||
	    X509_set_pubkey(x, key) != 1)
		goto err_free;
	name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
				       0) != 1 ||
	    X509_set_issuer_name(x, name) != 1)
		goto err_free;
	*out = x;
	return TEEMS_OK;

err_free:
	X509_free(x);
	return rv;
}

int tls_x509_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return TEEMS_ECRYPTO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? TEEMS_OK : TEEMS_ECRYPTO;
}

const char *tls_ossl_reason(char *buf, size_t len, const char *fallback)
{
	unsigned long e = ERR_peek_error();
	const char *r;

	if (e == 0) {
		snprintf(buf, len, "%s", fallback);
	} else {
		r = ERR_reason_error_string(e);
		if (r != NULL)
			snprintf(buf, len, "%s", r);
		else
			ERR_error_string_n(e, buf, len);
	}
	ERR_clear_error();
	return buf;
}

static int write_full(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int tls_write_file(const char *path, const void *data, size_t len, mode_t mode, char *errbuf)
{
	size_t plen = strlen(path);
	char *tmp, *dir, *slash;
	int fd, dfd, rv = TEEMS_OK;

	/* path + ".XXXXXX" + NUL, and the directory part of path */
	tmp = teems_malloc(plen + 8);
	dir = teems_malloc(plen + 2);
	if (tmp == NULL || dir == NULL) {
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
		goto out_free;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".XXXXXX", 8);
	memcpy(dir, path, plen + 1);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		memcpy(dir, ".", 2);
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';

	/* mkstemp creates the file 0600 and O_EXCL; the final mode is set before any byte is
	 * written, so a private file is never readable by others even for a moment. */
	fd = mkstemp(tmp);
	if (fd < 0) {
		rv = teems_errf(errbuf, TEEMS_EIO, "tls: cannot create a file next to %s: %s", path,
				strerror(errno));
		goto out_free;
	}
	if (fchmod(fd, mode) != 0 || write_full(fd, data, len) != 0 || fsync(fd) != 0) {
		rv = teems_errf(errbuf, TEEMS_EIO, "tls: cannot write %s: %s", tmp,
				strerror(errno));
		close(fd);
		unlink(tmp);
		goto out_free;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		rv = teems_errf(errbuf, TEEMS_EIO, "tls: cannot rename %s to %s: %s", tmp, path,
				strerror(errno));
		unlink(tmp);
		goto out_free;
	}
	/* The new name must survive a crash before anyone relies on the file. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0)
		rv = teems_errf(errbuf, TEEMS_EIO, "tls: cannot sync directory %s: %s", dir,
				strerror(errno));
	if (dfd >= 0)
		close(dfd);
out_free:
	teems_free(tmp);
	teems_free(dir);
	return rv;
}

int tls_read_file(const char *path, size_t max, uint8_t **out, size_t *len, char *errbuf)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd, rv = TEEMS_OK;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return teems_errf(errbuf, TEEMS_EIO, "tls: cannot open %s: %s", path,
				  strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rv = teems_errf(errbuf, TEEMS_EIO, "tls: %s is not a readable regular file", path);
		goto out_close;
	}
	if ((uint64_t)st.st_size > max) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT, "tls: %s is larger than %zu bytes", path,
				max);
		goto out_close;
	}
	buf = teems_malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got != (size_t)st.st_size) {
		teems_free(buf);
		rv = teems_errf(errbuf, TEEMS_EIO, "tls: cannot read %s", path);
		goto out_close;
	}
	*out = buf;
	*len = got;
out_close:
	close(fd);
	return rv;
}
