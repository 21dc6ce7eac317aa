/* Test helper: the service CA of a local cluster, as `teems cluster up` makes it
 * (contracts.md item 6): a CA certificate at CA_PEM and the CA key sealed for each replica.
 *
 *	daemon_mkca PLATFORM_DIR TEEMSD_BINARY CA_PEM SEALED_0 [SEALED_1 ...]
 *
 * The sim platform binds sealing keys to the measurement, which for sim is the SHA-256 of the
 * running executable; the key must unseal inside teemsd, so the helper opens replica i's
 * platform with teemsd's measurement (the hash of TEEMSD_BINARY) and cluster id 0. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "net/tls.h"
#include "server/config.h"
#include "tee/tee.h"
#include "teems/err.h"

static int hash_file(const char *path, uint8_t out[TEE_MEASUREMENT_LEN])
{
	unsigned char buf[65536];
	unsigned int n = 0;
	size_t k;
	FILE *f = fopen(path, "rb");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	if (f == NULL || md == NULL) {
		if (f != NULL)
			fclose(f);
		EVP_MD_CTX_free(md);
		return -1;
	}
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	while (ok && (k = fread(buf, 1, sizeof(buf), f)) > 0)
		ok = EVP_DigestUpdate(md, buf, k) == 1;
	ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, out, &n) == 1 && n == TEE_MEASUREMENT_LEN;
	fclose(f);
	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	uint8_t meas[TEE_MEASUREMENT_LEN], cluster[CONFIG_CLUSTER_ID_LEN] = {0};
	struct tee *tees[QUORUM_MAX_REPLICAS] = {0};
	char err[TEEMS_ERRBUF_LEN];
	size_t n;
	int rc = 1;

	if (argc < 5 || (size_t)(argc - 4) > QUORUM_MAX_REPLICAS) {
		fprintf(stderr, "usage: daemon_mkca PLATFORM_DIR TEEMSD_BINARY CA_PEM SEALED...\n");
		return 2;
	}
	n = (size_t)(argc - 4);
	if (hash_file(argv[2], meas) != 0) {
		fprintf(stderr, "daemon_mkca: cannot hash %s\n", argv[2]);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		struct tee_options to;

		memset(&to, 0, sizeof(to));
		to.platform_dir = argv[1];
		to.replica_id = (uint32_t)i;
		to.cluster_id = cluster;
		to.cluster_id_len = sizeof(cluster);
		to.measurement = meas;
		to.no_clock = true;
		if (tee_open(&to, &tees[i], err) != 0) {
			fprintf(stderr, "daemon_mkca: platform of replica %zu: %s\n", i, err);
			goto out;
		}
	}
	if (tls_ca_create(argv[3], tees, (const char *const *)(argv + 4), n, err) != 0) {
		fprintf(stderr, "daemon_mkca: %s\n", err);
		goto out;
	}
	rc = 0;
out:
	for (size_t i = 0; i < n; i++)
		tee_close(tees[i]);
	return rc;
}
