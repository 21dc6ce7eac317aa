/* The service CA and the client-facing service context (docs/SECURITY.md "Channels").
 *
 * Clients pin one file, ca.pem. The CA's private key exists in the clear only inside
 * tls_ca_create (the bootstrap) and inside a replica while it issues its own certificate; on
 * disk it is sealed separately for each replica, next to the CA certificate it belongs to:
 *
 *     0  magic "TMSC"          4
 *     4  version (1)           u8
 *     5  reserved, zero        3
 *     8  certificate length    u32 (little-endian)
 *    12  CA certificate        DER
 *     .  sealed CA key         tee_blob_seal of the DER private key, under
 *                              tee_seal_key(tee, "service-ca"), associated data
 *                              "teems service-ca v1\0" | SHA-256(CA certificate DER)
 *
 * The associated data binds the key to this certificate, so replacing the certificate in the
 * file (or pairing the blob with another CA's certificate) fails to unseal, as does a file
 * sealed for another replica, measurement or platform. */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "net/tls_int.h"

#define CA_FILE_MAGIC "TMSC"
#define CA_FILE_VERSION 1
#define CA_FILE_HDR 12
#define CA_FILE_MAX (64 * 1024)
#define CA_PURPOSE "service-ca"
#define CA_AD_DOMAIN "teems service-ca v1" /* hashed with its terminating NUL */
#define CA_AD_LEN (sizeof(CA_AD_DOMAIN) + TEE_SHA256_LEN)
#define CA_CN "teems service CA"
#define CA_DAYS 3650
#define LEAF_DAYS 365

static void ca_ad(const uint8_t *cert_der, size_t cert_len, uint8_t ad[CA_AD_LEN])
{
	memcpy(ad, CA_AD_DOMAIN, sizeof(CA_AD_DOMAIN));
	tee_sha256(cert_der, cert_len, ad + sizeof(CA_AD_DOMAIN));
}

/* One replica's sealed file: header, certificate, blob. */
static int ca_seal_for(struct tee *tee, const uint8_t *cert_der, size_t cert_len,
		       const uint8_t *key_der, size_t key_len, const char *path, char *errbuf)
{
	uint8_t ad[CA_AD_LEN], key[TEE_KEY_LEN];
	size_t cap, blob_len;
	uint8_t *buf;
	int rv;

	cap = CA_FILE_HDR + cert_len + key_len + TEE_SEAL_OVERHEAD;
	buf = teems_malloc(cap);
	if (buf == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
	memcpy(buf, CA_FILE_MAGIC, 4);
	buf[4] = CA_FILE_VERSION;
	buf[5] = buf[6] = buf[7] = 0;
	put_le32(buf + 8, (uint32_t)cert_len);
	memcpy(buf + CA_FILE_HDR, cert_der, cert_len);
	ca_ad(cert_der, cert_len, ad);
	rv = tee_seal_key(tee, CA_PURPOSE, key);
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: no sealing key for replica %u: %s",
			   (unsigned)tee_replica_id(tee), teems_strerror(rv));
		goto out;
	}
	blob_len = cap - CA_FILE_HDR - cert_len;
	rv = tee_blob_seal(key, ad, sizeof(ad), key_der, key_len, buf + CA_FILE_HDR + cert_len,
			   &blob_len);
	tee_wipe(key, sizeof(key));
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: cannot seal the CA key: %s", teems_strerror(rv));
		goto out;
	}
	rv = tls_write_file(path, buf, CA_FILE_HDR + cert_len + blob_len, 0600, errbuf);
out:
	teems_free(buf);
	return rv;
}

int tls_ca_create(const char *ca_pem_path, struct tee *const *tees, const char *const *sealed_paths,
		  size_t n, char *errbuf)
{
	unsigned char *cert_der = NULL, *key_der = NULL;
	int cert_len = 0, key_len = 0, rv;
	EVP_PKEY *key = NULL;
	BIO *pem = NULL;
	X509 *x = NULL;
	char why[128];
	char *pem_data;
	long pem_len;

	if (ca_pem_path == NULL || (n > 0 && (tees == NULL || sealed_paths == NULL)))
		return teems_errf(errbuf, TEEMS_EINVAL, "tls: CA needs a path and replicas");
	for (size_t i = 0; i < n; i++)
		if (tees[i] == NULL || sealed_paths[i] == NULL)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "tls: replica %zu has no handle "
					  "or path",
					  i);

	key = tls_p256_keygen();
	if (key == NULL)
		return teems_errf(errbuf, TEEMS_ECRYPTO, "tls: P-256 key generation failed: %s",
				  tls_ossl_reason(why, sizeof(why), "failed"));
	rv = tls_x509_new(key, CA_CN, CA_DAYS, &x);
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE");
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, NULL, NID_subject_key_identifier, "hash");
	if (rv == TEEMS_OK && X509_sign(x, key, EVP_sha256()) <= 0)
		rv = TEEMS_ECRYPTO;
	if (rv == TEEMS_OK) {
		cert_len = i2d_X509(x, &cert_der);
		key_len = i2d_PrivateKey(key, &key_der);
		pem = BIO_new(BIO_s_mem());
		if (cert_len <= 0 || key_len <= 0 || pem == NULL || PEM_write_bio_X509(pem, x) != 1)
			rv = TEEMS_ECRYPTO;
	}
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: cannot make the service CA: %s",
			   tls_ossl_reason(why, sizeof(why), "failed"));
		goto out;
	}

	/* Sealed keys first, the certificate last: a ca.pem on disk means every replica's key
	 * is there too. */
	for (size_t i = 0; i < n && rv == TEEMS_OK; i++)
		rv = ca_seal_for(tees[i], cert_der, (size_t)cert_len, key_der, (size_t)key_len,
				 sealed_paths[i], errbuf);
	if (rv != TEEMS_OK)
		goto out;
	pem_len = BIO_get_mem_data(pem, &pem_data);
	rv = tls_write_file(ca_pem_path, pem_data, (size_t)pem_len, 0644, errbuf);
out:
	OPENSSL_free(cert_der);
	if (key_der != NULL)
		OPENSSL_clear_free(key_der, (size_t)key_len);
	BIO_free(pem);
	X509_free(x);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rv;
}

/* Reads and unseals one replica's CA file. */
static int ca_load(struct tee *tee, const char *path, X509 **ca_out, EVP_PKEY **key_out,
		   char *errbuf)
{
	uint8_t ad[CA_AD_LEN], key[TEE_KEY_LEN];
	uint8_t *file = NULL, *pt = NULL;
	size_t len, cert_len, pt_len = 0;
	const unsigned char *p;
	EVP_PKEY *cakey = NULL;
	X509 *ca = NULL;
	int rv;

	*ca_out = NULL;
	*key_out = NULL;
	rv = tls_read_file(path, CA_FILE_MAX, &file, &len, errbuf);
	if (rv != TEEMS_OK)
		return rv;
	if (len < CA_FILE_HDR || memcmp(file, CA_FILE_MAGIC, 4) != 0 ||
	    file[4] != CA_FILE_VERSION || file[5] != 0 || file[6] != 0 || file[7] != 0 ||
	    (cert_len = get_le32(file + 8)) > len - CA_FILE_HDR) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT, "tls: %s is not a sealed service CA", path);
		goto out;
	}
	p = file + CA_FILE_HDR;
	ca = d2i_X509(NULL, &p, (long)cert_len);
	if (ca == NULL || p != file + CA_FILE_HDR + cert_len) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT, "tls: %s: unreadable CA certificate", path);
		goto out;
	}
	ca_ad(file + CA_FILE_HDR, cert_len, ad);
	rv = tee_seal_key(tee, CA_PURPOSE, key);
	if (rv == TEEMS_OK) {
		pt_len = len - CA_FILE_HDR - cert_len;
		pt = teems_malloc(pt_len + 1);
		if (pt == NULL)
			rv = TEEMS_ENOMEM;
	}
	if (rv == TEEMS_OK)
		rv = tee_blob_unseal(key, ad, sizeof(ad), file + CA_FILE_HDR + cert_len, pt_len, pt,
				     &pt_len);
	tee_wipe(key, sizeof(key));
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv,
			   "tls: %s does not unseal for replica %u (sealed for another replica, "
			   "code or platform, or altered): %s",
			   path, (unsigned)tee_replica_id(tee), teems_strerror(rv));
		goto out;
	}
	p = pt;
	cakey = d2i_AutoPrivateKey(NULL, &p, (long)pt_len);
	if (cakey == NULL || X509_check_private_key(ca, cakey) != 1) {
		rv = teems_errf(errbuf, TEEMS_EAUTH, "tls: %s: the sealed key is not the CA's",
				path);
		goto out;
	}
	*ca_out = ca;
	*key_out = cakey;
	ca = NULL;
	cakey = NULL;
out:
	if (pt != NULL) {
		tee_wipe(pt, pt_len);
		teems_free(pt);
	}
	teems_free(file);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	ERR_clear_error();
	return rv;
}

/* A DNS name we are willing to put in a certificate: letters, digits, '-', '.', '_'. */
static bool dns_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
			return false;
	}
	return true;
}

/* subjectAltName built from the names directly (never through the configuration syntax,
 * where a comma in a name would add entries). */
static int add_san(X509 *x, const char *const *names, size_t n, char *errbuf)
{
	GENERAL_NAMES *gens;
	int rv = TEEMS_OK;

	gens = GENERAL_NAMES_new();
	if (gens == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
	for (size_t i = 0; i < n && rv == TEEMS_OK; i++) {
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(names[i]);
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *dns = NULL;

		ERR_clear_error();
		if (g == NULL) {
			rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
		} else if (ip != NULL) {
			GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
			ip = NULL;
		} else if (!dns_name_ok(names[i])) {
			rv = teems_errf(errbuf, TEEMS_EINVAL,
					"tls: \"%s\" is neither an IP address nor a host name",
					names[i]);
		} else if ((dns = ASN1_IA5STRING_new()) == NULL ||
			   ASN1_STRING_set(dns, names[i], -1) != 1) {
			ASN1_IA5STRING_free(dns);
			rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
		} else {
			GENERAL_NAME_set0_value(g, GEN_DNS, dns);
		}
		ASN1_OCTET_STRING_free(ip);
		if (rv == TEEMS_OK && sk_GENERAL_NAME_push(gens, g) > 0)
			continue;
		GENERAL_NAME_free(g);
		if (rv == TEEMS_OK)
			rv = teems_errf(errbuf, TEEMS_ENOMEM, "tls: out of memory");
	}
	if (rv == TEEMS_OK && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0) != 1)
		rv = teems_errf(errbuf, TEEMS_ECRYPTO, "tls: cannot add subjectAltName");
	GENERAL_NAMES_free(gens);
	return rv;
}

/* This incarnation's server certificate for key, issued by the CA. */
static int issue_leaf(struct tee *tee, X509 *ca, EVP_PKEY *cakey, EVP_PKEY *key,
		      const char *const *names, size_t n, X509 **out, char *errbuf)
{
	char cn[40], why[128];
	X509 *x;
	int rv;

	snprintf(cn, sizeof(cn), "teems replica %u service", (unsigned)tee_replica_id(tee));
	rv = tls_x509_new(key, cn, LEAF_DAYS, &x);
	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "tls: cannot make the service certificate: %s",
				  tls_ossl_reason(why, sizeof(why), "failed"));
	/* Never outlive the CA: a chain with an expired issuer fails anyway, and this way the
	 * leaf's own dates say so. */
	if (X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
	    (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0 &&
	     X509_set1_notAfter(x, X509_get0_notAfter(ca)) != 1))
		rv = TEEMS_ECRYPTO;
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE");
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, ca, NID_key_usage, "critical,digitalSignature");
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, ca, NID_ext_key_usage, "serverAuth");
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, ca, NID_subject_key_identifier, "hash");
	if (rv == TEEMS_OK)
		rv = tls_x509_add_ext(x, ca, NID_authority_key_identifier, "keyid:always");
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tls: cannot make the service certificate: %s",
			   tls_ossl_reason(why, sizeof(why), "failed"));
		goto err_free;
	}
	rv = add_san(x, names, n, errbuf);
	if (rv != TEEMS_OK)
		goto err_free;
	if (X509_sign(x, cakey, EVP_sha256()) <= 0) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO,
				"tls: cannot sign the service certificate: %s",
				tls_ossl_reason(why, sizeof(why), "failed"));
		goto err_free;
	}
	*out = x;
	return TEEMS_OK;

err_free:
	X509_free(x);
	return rv;
}

int tls_ctx_service(struct tee *tee, const char *sealed_ca_path, const char *const *names,
		    size_t n_names, struct tls_ctx **out, char *errbuf)
{
	EVP_PKEY *cakey = NULL, *key = NULL;
	X509 *ca = NULL, *leaf = NULL;
	struct tls_ctx *ctx = NULL;
	char why[128];
	int rv;

	*out = NULL;
	if (tee == NULL || sealed_ca_path == NULL || names == NULL || n_names == 0)
		return teems_errf(errbuf, TEEMS_EINVAL,
				  "tls: service context needs a sealed CA and at least one name");
	for (size_t i = 0; i < n_names; i++)
		if (names[i] == NULL)
			return teems_errf(errbuf, TEEMS_EINVAL, "tls: service name %zu is NULL", i);
	rv = ca_load(tee, sealed_ca_path, &ca, &cakey, errbuf);
	if (rv != TEEMS_OK)
		return rv;
	key = tls_p256_keygen();
	if (key == NULL) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO, "tls: P-256 key generation failed: %s",
				tls_ossl_reason(why, sizeof(why), "failed"));
		goto out;
	}
	rv = issue_leaf(tee, ca, cakey, key, names, n_names, &leaf, errbuf);
	if (rv != TEEMS_OK)
		goto out;
	rv = tls_ctx_alloc(TLS_KIND_SERVICE, &ctx, errbuf);
	if (rv != TEEMS_OK)
		goto out;
	/* The chain is leaf + CA: a client pinning ca.pem finds its anchor in it. */
	if (SSL_CTX_use_certificate(ctx->ssl, leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx->ssl, key) != 1 ||
	    SSL_CTX_check_private_key(ctx->ssl) != 1 ||
	    SSL_CTX_add1_chain_cert(ctx->ssl, ca) != 1) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO,
				"tls: cannot install the service certificate: %s",
				tls_ossl_reason(why, sizeof(why), "failed"));
		goto out;
	}
	SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
	*out = ctx;
	ctx = NULL;
out:
	tls_ctx_free(ctx);
	X509_free(leaf);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(cakey); /* OpenSSL clears EC private keys when freeing them */
	ERR_clear_error();
	return rv;
}
