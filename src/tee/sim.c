/* Platform `sim` (DESIGN.md section 10): a software stand-in for a TEE.
 *
 * A per-host "fused" secret — 32 random bytes in <platform dir>/fused_secret, mode 0600 — stands
 * in for the key a CPU keeps in fuses. Everything derives from it with HKDF: the sealing root (in
 * tee.c, bound to measurement and replica identity) and the Ed25519 root signing key that stands
 * in for the vendor's attestation key, so every replica on the host shares one root. Anyone who
 * can read the file (root on the host, at least) can unseal everything and forge any quote:
 * docs/SECURITY.md says so, and what that means for each guarantee. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/alloc.h"
#include "tee.h"
#include "teems/err.h"

#define SIM_SECRET_FILE "fused_secret"
#define SIM_SECRET_LEN 32

static const char root_info[] = "teems sim root signing key v1";

struct sim {
	EVP_PKEY *root; /* Ed25519, derived from the fused secret */
	uint8_t root_key_id[TEE_SHA256_LEN];
};

/* mkdir -p with mode 0700 for the components we create; existing ones are left alone. */
static int sim_mkdirs(const char *dir, char *errbuf)
{
	char path[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(path))
		return teems_errf(errbuf, TEEMS_EINVAL, "sim: bad platform directory '%s'", dir);
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return teems_errf(errbuf, TEEMS_EIO, "sim: cannot create directory %s: %s",
					  path, strerror(errno));
		path[i] = dir[i];
	}
	return TEEMS_OK;
}

static int sim_platform_dir(const struct tee_options *opts, char *out, size_t cap, char *errbuf)
{
	const char *env, *home;
	int n;

	if (opts->platform_dir != NULL)
		n = snprintf(out, cap, "%s", opts->platform_dir);
	else if ((env = getenv("TEEMS_SIM_DIR")) != NULL && env[0] != '\0')
		n = snprintf(out, cap, "%s", env);
	else if ((home = getenv("HOME")) != NULL && home[0] != '\0')
		n = snprintf(out, cap, "%s/.local/share/teems/sim", home);
	else
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "sim: no platform directory: set TEEMS_SIM_DIR or HOME");
	if (n <= 0 || (size_t)n >= cap)
		return teems_errf(errbuf, TEEMS_EINVAL, "sim: platform directory path too long");
	return TEEMS_OK;
}

static int read_full(int fd, uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = read(fd, buf + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = write(fd, buf + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		done += (size_t)r;
	}
	return 0;
}

/* Reads an existing secret, refusing a file that anyone but its owner could read or replace
 * the contents of. Errors: TEEMS_ENOTFOUND (no file), TEEMS_ECONFIG, TEEMS_ECORRUPT, TEEMS_EIO. */
static int sim_secret_read(const char *path, uint8_t secret[SIM_SECRET_LEN], char *errbuf)
{
	struct stat st;
	int fd, rv = TEEMS_OK;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return TEEMS_ENOTFOUND;
		if (errno == ELOOP)
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "sim: fused secret %s is a symbolic link; refusing",
					  path);
		return teems_errf(errbuf, TEEMS_EIO, "sim: cannot open fused secret %s: %s", path,
				  strerror(errno));
	}
	if (fstat(fd, &st) != 0) {
		rv = teems_errf(errbuf, TEEMS_EIO, "sim: cannot stat %s: %s", path,
				strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rv = teems_errf(errbuf, TEEMS_ECONFIG, "sim: fused secret %s is not a regular file",
				path);
	} else if (st.st_uid != geteuid()) {
		rv = teems_errf(errbuf, TEEMS_ECONFIG,
				"sim: fused secret %s is owned by uid %u, not by us (uid %u)", path,
				(unsigned)st.st_uid, (unsigned)geteuid());
	} else if ((st.st_mode & 077) != 0) {
		rv = teems_errf(errbuf, TEEMS_ECONFIG,
				"sim: fused secret %s has mode %04o: it must not be accessible by "
				"group or others (chmod 600 it, or delete it to lose every sealed "
				"state on this host)",
				path, (unsigned)(st.st_mode & 07777));
	} else if (st.st_size != SIM_SECRET_LEN) {
		rv = teems_errf(errbuf, TEEMS_ECORRUPT,
				"sim: fused secret %s has %lld bytes, expected %d", path,
				(long long)st.st_size, SIM_SECRET_LEN);
	} else if (read_full(fd, secret, SIM_SECRET_LEN) != 0) {
		rv = teems_errf(errbuf, TEEMS_EIO, "sim: cannot read fused secret %s", path);
	}
	close(fd);
	return rv;
}

/* Creates the secret race-free. The bytes go to a private temporary file (O_CREAT|O_EXCL, mode
 * 0600) which is fsynced and then hard-linked to the final name: link() never replaces an
 * existing file, so of two processes racing on first use exactly one wins and the loser reads the
 * winner's secret. Creating the final name directly with O_EXCL would let the loser open it
 * before the winner wrote the bytes and see a short file.
 * Errors: TEEMS_EEXIST (lost the race), TEEMS_EIO, TEEMS_ECRYPTO. */
static int sim_secret_create(const char *dir, const char *path, uint8_t secret[SIM_SECRET_LEN],
			     char *errbuf)
{
	char tmp[PATH_MAX];
	uint8_t nonce[8];
	int fd, dfd, rv;

	rv = tee_random(nonce, sizeof(nonce));
	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "sim: no randomness");
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.%02x%02x%02x%02x%02x%02x%02x%02x", dir,
		     SIM_SECRET_FILE, (long)getpid(), nonce[0], nonce[1], nonce[2], nonce[3],
		     nonce[4], nonce[5], nonce[6], nonce[7]) >= (int)sizeof(tmp))
		return teems_errf(errbuf, TEEMS_EINVAL, "sim: platform directory path too long");

	rv = tee_random(secret, SIM_SECRET_LEN);
	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "sim: no randomness for the fused secret");
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return teems_errf(errbuf, TEEMS_EIO, "sim: cannot create %s: %s", tmp,
				  strerror(errno));
	/* Whatever the umask, the owner must be able to read it back and nobody else at all. */
	if (fchmod(fd, 0600) != 0 || write_full(fd, secret, SIM_SECRET_LEN) != 0 ||
	    fsync(fd) != 0) {
		rv = teems_errf(errbuf, TEEMS_EIO, "sim: cannot write %s: %s", tmp,
				strerror(errno));
		close(fd);
		goto out_unlink;
	}
	close(fd);
	if (link(tmp, path) != 0) {
		if (errno == EEXIST)
			rv = TEEMS_EEXIST;
		else
			rv = teems_errf(errbuf, TEEMS_EIO, "sim: cannot link %s to %s: %s", tmp,
					path, strerror(errno));
		goto out_unlink;
	}
	/* The name must be durable before anything is sealed under the secret. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
out_unlink:
	unlink(tmp);
	if (rv != TEEMS_OK)
		tee_wipe(secret, SIM_SECRET_LEN);
	return rv;
}

static int sim_secret_load(const char *dir, uint8_t secret[SIM_SECRET_LEN], char *errbuf)
{
	char path[PATH_MAX];
	int rv;

	if (snprintf(path, sizeof(path), "%s/%s", dir, SIM_SECRET_FILE) >= (int)sizeof(path))
		return teems_errf(errbuf, TEEMS_EINVAL, "sim: platform directory path too long");
	rv = sim_secret_read(path, secret, errbuf);
	if (rv != TEEMS_ENOTFOUND)
		return rv;
	rv = sim_secret_create(dir, path, secret, errbuf);
	if (rv != TEEMS_EEXIST)
		return rv;
	/* Another process created it between our read and our link: use theirs. */
	rv = sim_secret_read(path, secret, errbuf);
	if (rv == TEEMS_ENOTFOUND)
		rv = teems_errf(errbuf, TEEMS_EIO, "sim: fused secret %s vanished", path);
	return rv;
}

/* SHA-256 of the running executable: what the measurement would be if the binary were the
 * enclave. Errors: TEEMS_EIO, TEEMS_ENOMEM, TEEMS_ECRYPTO. */
static int sim_measure_self(uint8_t out[TEE_MEASUREMENT_LEN], char *errbuf)
{
	uint8_t buf[16384];
	EVP_MD_CTX *md;
	unsigned int n = TEE_MEASUREMENT_LEN;
	ssize_t r;
	int fd, rv = TEEMS_OK;

	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return teems_errf(errbuf, TEEMS_EIO, "sim: cannot open /proc/self/exe: %s",
				  strerror(errno));
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		rv = teems_errf(errbuf, TEEMS_ECRYPTO, "sim: cannot hash the executable");
		goto out;
	}
	for (;;) {
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rv = teems_errf(errbuf, TEEMS_EIO, "sim: cannot read /proc/self/exe: %s",
					strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		if (EVP_DigestUpdate(md, buf, (size_t)r) != 1) {
			rv = teems_errf(errbuf, TEEMS_ECRYPTO, "sim: cannot hash the executable");
			goto out;
		}
	}
	if (EVP_DigestFinal_ex(md, out, &n) != 1)
		rv = teems_errf(errbuf, TEEMS_ECRYPTO, "sim: cannot hash the executable");
out:
	EVP_MD_CTX_free(md);
	close(fd);
	return rv;
}

/* The root signing key is a function of the fused secret alone, so every replica (and every
 * verifier given the public key) on this host agrees on it, the way every CPU of a vendor
 * chains to one vendor key. */
static int sim_root_key(const uint8_t secret[SIM_SECRET_LEN], EVP_PKEY **out,
			uint8_t pub[TEE_PUBLIC_KEY_LEN], char *errbuf)
{
	uint8_t seed[32];
	size_t n = TEE_PUBLIC_KEY_LEN;
	EVP_PKEY *key;
	int rv;

	rv = tee_hkdf(secret, SIM_SECRET_LEN, NULL, 0, root_info, sizeof(root_info) - 1, seed,
		      sizeof(seed));
	if (rv != TEEMS_OK)
		return teems_errf(errbuf, rv, "sim: cannot derive the root key");
	key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
	tee_wipe(seed, sizeof(seed));
	if (key == NULL) {
		ERR_clear_error();
		return teems_errf(errbuf, TEEMS_ECRYPTO, "sim: cannot load the root key");
	}
	if (EVP_PKEY_get_raw_public_key(key, pub, &n) != 1 || n != TEE_PUBLIC_KEY_LEN) {
		ERR_clear_error();
		EVP_PKEY_free(key);
		return teems_errf(errbuf, TEEMS_ECRYPTO, "sim: cannot export the root key");
	}
	*out = key;
	return TEEMS_OK;
}

static void sim_close(void *state)
{
	struct sim *sim = state;

	if (sim == NULL)
		return;
	EVP_PKEY_free(sim->root);
	tee_wipe(sim, sizeof(*sim));
	teems_free(sim);
}

static int sim_open(const struct tee_options *opts, struct tee_backend_keys *keys, void **state,
		    char *errbuf)
{
	char dir[PATH_MAX];
	uint8_t secret[SIM_SECRET_LEN];
	struct sim *sim;
	int rv;

	*state = NULL;
	sim = teems_calloc(1, sizeof(*sim));
	if (sim == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "sim: out of memory");

	if (opts->measurement != NULL)
		memcpy(keys->measurement, opts->measurement, TEE_MEASUREMENT_LEN);
	else if ((rv = sim_measure_self(keys->measurement, errbuf)) != TEEMS_OK)
		goto err_sim;

	rv = sim_platform_dir(opts, dir, sizeof(dir), errbuf);
	if (rv != TEEMS_OK)
		goto err_sim;
	rv = sim_mkdirs(dir, errbuf);
	if (rv != TEEMS_OK)
		goto err_sim;
	rv = sim_secret_load(dir, secret, errbuf);
	if (rv != TEEMS_OK)
		goto err_sim;
	rv = sim_root_key(secret, &sim->root, keys->root_public_key, errbuf);
	if (rv != TEEMS_OK)
		goto err_secret;
	tee_sha256(keys->root_public_key, TEE_PUBLIC_KEY_LEN, sim->root_key_id);
	keys->has_root_public_key = true;
	memcpy(keys->platform_secret, secret, SIM_SECRET_LEN);
	tee_wipe(secret, sizeof(secret));
	*state = sim;
	return TEEMS_OK;

err_secret:
	tee_wipe(secret, sizeof(secret));
err_sim:
	sim_close(sim);
	return rv;
}

static int sim_quote(void *state, const uint8_t measurement[TEE_MEASUREMENT_LEN],
		     const uint8_t report_data[TEE_REPORT_DATA_LEN], struct tee_quote *out)
{
	struct sim *sim = state;
	uint8_t tbs[TEE_QUOTE_TBS_LEN];
	EVP_MD_CTX *ctx;
	size_t n = TEE_SIGNATURE_LEN;
	int rv = TEEMS_OK;

	memset(out, 0, sizeof(*out));
	out->version = TEE_QUOTE_VERSION;
	out->platform = TEE_PLATFORM_SIM;
	memcpy(out->root_key_id, sim->root_key_id, sizeof(out->root_key_id));
	memcpy(out->measurement, measurement, TEE_MEASUREMENT_LEN);
	memcpy(out->report_data, report_data, TEE_REPORT_DATA_LEN);
	tee_quote_signed_bytes(out, tbs);

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return TEEMS_ENOMEM;
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, sim->root) != 1 ||
	    EVP_DigestSign(ctx, out->signature, &n, tbs, sizeof(tbs)) != 1 ||
	    n != TEE_SIGNATURE_LEN) {
		ERR_clear_error();
		rv = TEEMS_ECRYPTO;
	}
	EVP_MD_CTX_free(ctx);
	return rv;
}

const struct tee_backend tee_backend_sim = {
	.platform = TEE_PLATFORM_SIM,
	.name = "sim",
	/* By assumption: the sim clock is the real TSC, which TDX and SEV-SNP Secure TSC would
	 * protect from the host and which nothing protects here (DESIGN.md section 8). */
	.clock_rate_trusted = true,
	.clock_source = NULL,
	.open = sim_open,
	.quote = sim_quote,
	.close = sim_close,
};
