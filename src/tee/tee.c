/* The platform handle: backend dispatch, the sealing key hierarchy, the clock it owns.
 *
 * The backend hands over a platform secret (sim: the fused secret; SGX: an EGETKEY seal key) and
 * this file binds it to the replica identity, so the same derivation (and the same guarantee: a
 * different replica id, measurement or secret yields a different key) holds on every platform
 * (DESIGN.md section 10). */
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "tee.h"
#include "teems/err.h"

static const char seal_root_info[] = "teems seal root v1";
static const char seal_key_info[] = "teems seal key v1";

struct tee {
	const struct tee_backend *backend;
	void *backend_state;
	uint32_t replica_id;
	size_t cluster_id_len;
	uint8_t cluster_id[TEE_CLUSTER_ID_MAX];
	uint8_t measurement[TEE_MEASUREMENT_LEN];
	uint8_t root_pub[TEE_PUBLIC_KEY_LEN];
	bool has_root_pub;
	bool clock_rate_trusted;
	uint8_t seal_root[TEE_KEY_LEN]; /* see tee.h, "Sealing" */
	uint8_t blob_key[TEE_KEY_LEN];	/* purpose "blob", cached: tee_seal is per-blob HKDF only */
	struct tee_clock *clock;
};

/* seal_root = HKDF(secret, info = label | measurement | replica_id | len | cluster_id). The
 * cluster id is length-prefixed so that no two identities share an info string. */
static int seal_root_derive(struct tee *tee, const uint8_t secret[TEE_KEY_LEN])
{
	uint8_t info[sizeof(seal_root_info) + TEE_MEASUREMENT_LEN + 4 + 1 + TEE_CLUSTER_ID_MAX];
	size_t n = 0;

	memcpy(info, seal_root_info, sizeof(seal_root_info)); /* with its NUL */
	n += sizeof(seal_root_info);
	memcpy(info + n, tee->measurement, TEE_MEASUREMENT_LEN);
	n += TEE_MEASUREMENT_LEN;
	put_le32(info + n, tee->replica_id);
	n += 4;
	info[n++] = (uint8_t)tee->cluster_id_len;
	memcpy(info + n, tee->cluster_id, tee->cluster_id_len);
	n += tee->cluster_id_len;
	return tee_hkdf(secret, TEE_KEY_LEN, NULL, 0, info, n, tee->seal_root, TEE_KEY_LEN);
}

int tee_seal_key(struct tee *tee, const char *purpose, uint8_t out[TEE_KEY_LEN])
{
	uint8_t info[sizeof(seal_key_info) + 1 + TEE_PURPOSE_MAX];
	size_t plen, n = 0;

	if (purpose == NULL)
		return TEEMS_EINVAL;
	plen = strnlen(purpose, TEE_PURPOSE_MAX + 1);
	if (plen == 0 || plen > TEE_PURPOSE_MAX)
		return TEEMS_EINVAL;
	memcpy(info, seal_key_info, sizeof(seal_key_info));
	n += sizeof(seal_key_info);
	info[n++] = (uint8_t)plen;
	memcpy(info + n, purpose, plen);
	n += plen;
	return tee_hkdf(tee->seal_root, TEE_KEY_LEN, NULL, 0, info, n, out, TEE_KEY_LEN);
}

static int check_options(const struct tee_options *opts, char *errbuf)
{
	if (opts->cluster_id_len > TEE_CLUSTER_ID_MAX)
		return teems_errf(errbuf, TEEMS_EINVAL, "tee: cluster id longer than %d bytes",
				  TEE_CLUSTER_ID_MAX);
	if (opts->cluster_id_len > 0 && opts->cluster_id == NULL)
		return teems_errf(errbuf, TEEMS_EINVAL, "tee: cluster id is NULL");
	return TEEMS_OK;
}

int tee_open(const struct tee_options *opts, struct tee **out, char *errbuf)
{
	static const struct tee_options defaults;
	struct tee_backend_keys keys;
	struct tee_clock_options copts;
	struct tee *tee;
	int rv;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	rv = check_options(opts, errbuf);
	if (rv != TEEMS_OK)
		return rv;
	tee = teems_calloc(1, sizeof(*tee));
	if (tee == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "tee: out of memory");
	tee->backend = opts->backend != NULL ? opts->backend : &tee_backend_sim;
	tee->replica_id = opts->replica_id;
	tee->cluster_id_len = opts->cluster_id_len;
	if (opts->cluster_id_len > 0)
		memcpy(tee->cluster_id, opts->cluster_id, opts->cluster_id_len);
	tee->clock_rate_trusted = tee->backend->clock_rate_trusted && !opts->distrust_clock_rate;

	memset(&keys, 0, sizeof(keys));
	rv = tee->backend->open(opts, &keys, &tee->backend_state, errbuf);
	if (rv != TEEMS_OK)
		goto err_tee;
	memcpy(tee->measurement, keys.measurement, TEE_MEASUREMENT_LEN);
	memcpy(tee->root_pub, keys.root_public_key, TEE_PUBLIC_KEY_LEN);
	tee->has_root_pub = keys.has_root_public_key;
	rv = seal_root_derive(tee, keys.platform_secret);
	tee_wipe(&keys, sizeof(keys));
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tee: cannot derive the sealing root");
		goto err_tee;
	}
	rv = tee_seal_key(tee, "blob", tee->blob_key);
	if (rv != TEEMS_OK) {
		teems_errf(errbuf, rv, "tee: cannot derive the blob sealing key");
		goto err_tee;
	}

	if (!opts->no_clock) {
		copts = opts->clock;
		if (copts.source == NULL)
			copts.source = tee->backend->clock_source;
		rv = tee_clock_open(&copts, &tee->clock, errbuf);
		if (rv != TEEMS_OK)
			goto err_tee;
	}
	*out = tee;
	return TEEMS_OK;

err_tee:
	tee_close(tee);
	return rv;
}

void tee_close(struct tee *tee)
{
	if (tee == NULL)
		return;
	tee_clock_close(tee->clock);
	if (tee->backend_state != NULL)
		tee->backend->close(tee->backend_state);
	tee_wipe(tee, sizeof(*tee));
	teems_free(tee);
}

enum tee_platform tee_platform(const struct tee *tee)
{
	return tee->backend->platform;
}

const char *tee_platform_name(const struct tee *tee)
{
	return tee->backend->name;
}

uint32_t tee_replica_id(const struct tee *tee)
{
	return tee->replica_id;
}

void tee_measurement(const struct tee *tee, uint8_t out[TEE_MEASUREMENT_LEN])
{
	memcpy(out, tee->measurement, TEE_MEASUREMENT_LEN);
}

int tee_root_public_key(const struct tee *tee, uint8_t out[TEE_PUBLIC_KEY_LEN])
{
	if (!tee->has_root_pub)
		return TEEMS_EINVAL;
	memcpy(out, tee->root_pub, TEE_PUBLIC_KEY_LEN);
	return TEEMS_OK;
}

bool tee_clock_rate_trusted(const struct tee *tee)
{
	return tee->clock_rate_trusted;
}

struct tee_clock *tee_clock(struct tee *tee)
{
	return tee->clock;
}

int tee_seal(struct tee *tee, const void *ad, size_t ad_len, const void *pt, size_t len, void *out,
	     size_t *out_len)
{
	return tee_blob_seal(tee->blob_key, ad, ad_len, pt, len, out, out_len);
}

int tee_unseal(struct tee *tee, const void *ad, size_t ad_len, const void *in, size_t in_len,
	       void *out, size_t *out_len)
{
	return tee_blob_unseal(tee->blob_key, ad, ad_len, in, in_len, out, out_len);
}

int tee_quote(struct tee *tee, const uint8_t report_data[TEE_REPORT_DATA_LEN],
	      struct tee_quote *out)
{
	return tee->backend->quote(tee->backend_state, tee->measurement, report_data, out);
}
