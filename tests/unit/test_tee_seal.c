/* The sim platform's fused secret and the sealing API (src/tee/sim.c, tee.c, seal.c):
 * the secret file's creation and refusals, the key hierarchy's bindings, and the sealed-blob
 * format's refusal of wrong keys, wrong associated data, tampering and truncation. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "tee/tee.h"
#include "teems/err.h"

static const uint8_t meas_a[TEE_MEASUREMENT_LEN] = {0xa1, 0xa2, 0xa3};
static const uint8_t meas_b[TEE_MEASUREMENT_LEN] = {0xb1, 0xb2, 0xb3};

struct fixture {
	char dir[PATH_MAX];
	char errbuf[TEEMS_ERRBUF_LEN];
};

/* out = a "/" b; PATH_MAX bytes. */
static void join(char *out, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	assert_true(la + 1 + lb < PATH_MAX);
	memcpy(out, a, la);
	out[la] = '/';
	memcpy(out + la + 1, b, lb + 1);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/teems-tee-seal-XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void subdir(const struct fixture *f, const char *name, char *out)
{
	join(out, f->dir, name);
}

static int open_sim(const char *dir, uint32_t replica, const char *cluster, const uint8_t *meas,
		    struct tee **out, char *errbuf)
{
	struct tee_options o;

	memset(&o, 0, sizeof(o));
	o.platform_dir = dir;
	o.replica_id = replica;
	o.cluster_id = cluster;
	o.cluster_id_len = cluster != NULL ? strlen(cluster) : 0;
	o.measurement = meas;
	o.no_clock = true;
	return tee_open(&o, out, errbuf);
}

static struct tee *must_open(const char *dir, uint32_t replica, const char *cluster,
			     const uint8_t *meas)
{
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct tee *tee = NULL;
	int rv = open_sim(dir, replica, cluster, meas, &tee, errbuf);

	if (rv != TEEMS_OK)
		print_error("tee_open: %s: %s\n", teems_strerror(rv), errbuf);
	assert_int_equal(rv, TEEMS_OK);
	assert_non_null(tee);
	return tee;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* ---- the fused secret ---- */

static void test_secret_created_0600(void **state)
{
	struct fixture *f = *state;
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st;
	struct tee *tee;
	mode_t old = umask(0); /* a permissive umask must not loosen the file */

	subdir(f, "plat", dir);
	tee = must_open(dir, 1, "c", meas_a);
	umask(old);
	join(path, dir, "fused_secret");
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 32);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_string_equal(tee_platform_name(tee), "sim");
	assert_int_equal(tee_platform(tee), TEE_PLATFORM_SIM);
	assert_int_equal(tee_replica_id(tee), 1);
	assert_null(tee_clock(tee));
	tee_close(tee);

	/* A strict umask must not make it unreadable to its owner either. */
	subdir(f, "plat2", dir);
	old = umask(0377);
	tee = must_open(dir, 1, "c", meas_a);
	umask(old);
	join(path, dir, "fused_secret");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	tee_close(tee);
	tee = must_open(dir, 1, "c", meas_a);
	tee_close(tee);
}

static void test_secret_stable_across_opens(void **state)
{
	struct fixture *f = *state;
	uint8_t k1[TEE_KEY_LEN], k2[TEE_KEY_LEN], r1[32], r2[32], blob[64], pt[16];
	size_t n = sizeof(blob), m = sizeof(pt);
	struct tee *tee;

	tee = must_open(f->dir, 7, "c", meas_a);
	assert_int_equal(tee_seal_key(tee, "wal", k1), TEEMS_OK);
	assert_int_equal(tee_root_public_key(tee, r1), TEEMS_OK);
	assert_int_equal(tee_seal(tee, "ad", 2, "persisted state", 15, blob, &n), TEEMS_OK);
	tee_close(tee);

	/* A restart of the same replica: same keys, and yesterday's blob opens. */
	tee = must_open(f->dir, 7, "c", meas_a);
	assert_int_equal(tee_seal_key(tee, "wal", k2), TEEMS_OK);
	assert_int_equal(tee_root_public_key(tee, r2), TEEMS_OK);
	assert_memory_equal(k1, k2, sizeof(k1));
	assert_memory_equal(r1, r2, sizeof(r1));
	assert_int_equal(tee_unseal(tee, "ad", 2, blob, n, pt, &m), TEEMS_OK);
	assert_int_equal(m, 15);
	assert_memory_equal(pt, "persisted state", 15);
	tee_close(tee);
}

static void test_secret_refuses_group_or_world_access(void **state)
{
	static const mode_t modes[] = {0640, 0604, 0620, 0602, 0660, 0644, 0601, 0610};
	struct fixture *f = *state;
	char path[PATH_MAX];
	uint8_t secret[32] = {1};
	struct tee *tee = (struct tee *)1;

	join(path, f->dir, "fused_secret");
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		write_file(path, secret, sizeof(secret), modes[i]);
		f->errbuf[0] = '\0';
		assert_int_equal(open_sim(f->dir, 1, NULL, meas_a, &tee, f->errbuf), TEEMS_ECONFIG);
		assert_null(tee);
		assert_non_null(strstr(f->errbuf, "group or others"));
	}
	/* Fixing the mode is enough. */
	assert_int_equal(chmod(path, 0600), 0);
	tee = must_open(f->dir, 1, NULL, meas_a);
	tee_close(tee);
	/* 0400 (read-only) is fine too. */
	assert_int_equal(chmod(path, 0400), 0);
	tee = must_open(f->dir, 1, NULL, meas_a);
	tee_close(tee);
}

static void test_secret_refuses_wrong_size(void **state)
{
	static const size_t sizes[] = {0, 1, 31, 33, 64};
	struct fixture *f = *state;
	char path[PATH_MAX];
	uint8_t junk[64] = {0};
	struct tee *tee;

	join(path, f->dir, "fused_secret");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unlink(path);
		write_file(path, junk, sizes[i], 0600);
		f->errbuf[0] = '\0';
		assert_int_equal(open_sim(f->dir, 1, NULL, meas_a, &tee, f->errbuf),
				 TEEMS_ECORRUPT);
		assert_non_null(strstr(f->errbuf, "expected 32"));
	}
}

static void test_secret_refuses_symlink_and_directory(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX], target[PATH_MAX];
	uint8_t secret[32] = {2};
	struct tee *tee;

	join(path, f->dir, "fused_secret");
	join(target, f->dir, "elsewhere");
	write_file(target, secret, sizeof(secret), 0600);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(open_sim(f->dir, 1, NULL, meas_a, &tee, f->errbuf), TEEMS_ECONFIG);
	assert_non_null(strstr(f->errbuf, "symbolic link"));
	assert_int_equal(unlink(path), 0);

	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(open_sim(f->dir, 1, NULL, meas_a, &tee, f->errbuf), TEEMS_ECONFIG);
	assert_non_null(strstr(f->errbuf, "regular file"));
}

static void test_platform_dir_unusable(void **state)
{
	struct fixture *f = *state;
	char file[PATH_MAX], dir[PATH_MAX];
	struct tee *tee;

	subdir(f, "file", file);
	write_file(file, "x", 1, 0600);
	join(dir, file, "below");
	assert_int_equal(open_sim(dir, 1, NULL, meas_a, &tee, f->errbuf), TEEMS_EIO);
	assert_null(tee);
}

/* Many processes opening a fresh platform directory at once agree on one secret, and leave no
 * temporary files behind. */
static void test_secret_creation_race(void **state)
{
	enum { N = 8 };
	struct fixture *f = *state;
	int go[2], res[2], status;
	uint8_t roots[N][32];
	pid_t pids[N];
	char dir[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int entries = 0;

	subdir(f, "race", dir);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(res), 0);
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct tee *tee;
			uint8_t root[32];
			char c;

			close(go[1]);
			if (read(go[0], &c, 1) != 0) /* wait for the start: EOF */
				_exit(2);
			if (open_sim(dir, (uint32_t)i, NULL, meas_a, &tee, NULL) != TEEMS_OK)
				_exit(3);
			tee_root_public_key(tee, root);
			tee_close(tee);
			if (write(res[1], root, sizeof(root)) != (ssize_t)sizeof(root))
				_exit(4);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]); /* everyone starts now */
	close(res[1]);
	for (int i = 0; i < N; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	for (int i = 0; i < N; i++) {
		size_t got = 0;
		while (got < 32) {
			ssize_t r = read(res[0], roots[i] + got, 32 - got);
			assert_true(r > 0);
			got += (size_t)r;
		}
		assert_memory_equal(roots[i], roots[0], 32);
	}
	close(res[0]);

	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		assert_string_equal(de->d_name, "fused_secret");
		entries++;
	}
	closedir(d);
	assert_int_equal(entries, 1);
}

static void restore_env(const char *name, const char *saved)
{
	if (saved != NULL)
		setenv(name, saved, 1);
	else
		unsetenv(name);
}

static void test_default_platform_dir(void **state)
{
	struct fixture *f = *state;
	char *saved_sim = getenv("TEEMS_SIM_DIR"), *saved_home = getenv("HOME");
	char env_dir[PATH_MAX], home[PATH_MAX], path[PATH_MAX];
	struct stat st;
	struct tee *tee;

	saved_sim = saved_sim != NULL ? strdup(saved_sim) : NULL;
	saved_home = saved_home != NULL ? strdup(saved_home) : NULL;

	/* $TEEMS_SIM_DIR, created with its parents. */
	join(env_dir, f->dir, "env/a/b");
	setenv("TEEMS_SIM_DIR", env_dir, 1);
	tee = must_open(NULL, 1, NULL, meas_a);
	tee_close(tee);
	join(path, env_dir, "fused_secret");
	assert_int_equal(stat(path, &st), 0);

	/* Else $HOME/.local/share/teems/sim (a fake HOME: the test never touches the real one). */
	unsetenv("TEEMS_SIM_DIR");
	join(home, f->dir, "home");
	setenv("HOME", home, 1);
	tee = must_open(NULL, 1, NULL, meas_a);
	tee_close(tee);
	join(path, home, ".local/share/teems/sim/fused_secret");
	assert_int_equal(stat(path, &st), 0);

	/* Neither: a clear configuration error. */
	unsetenv("HOME");
	assert_int_equal(open_sim(NULL, 1, NULL, meas_a, &tee, f->errbuf), TEEMS_ECONFIG);
	assert_non_null(strstr(f->errbuf, "TEEMS_SIM_DIR"));

	restore_env("TEEMS_SIM_DIR", saved_sim);
	restore_env("HOME", saved_home);
	free(saved_sim);
	free(saved_home);
}

static void test_open_invalid_options(void **state)
{
	struct fixture *f = *state;
	char big[TEE_CLUSTER_ID_MAX + 2];
	struct tee_options o;
	struct tee *tee;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(open_sim(f->dir, 1, big, meas_a, &tee, f->errbuf), TEEMS_EINVAL);
	big[TEE_CLUSTER_ID_MAX] = '\0';
	tee = must_open(f->dir, 1, big, meas_a);
	tee_close(tee);

	memset(&o, 0, sizeof(o));
	o.platform_dir = f->dir;
	o.cluster_id_len = 3;
	o.no_clock = true;
	assert_int_equal(tee_open(&o, &tee, f->errbuf), TEEMS_EINVAL);
	assert_null(tee);
}

/* Every allocation tee_open makes can fail; each failure is reported as ENOMEM and leaks
 * nothing (the sanitizer build checks the leaks). */
static void test_open_allocation_failures(void **state)
{
	struct fixture *f = *state;
	struct tee *tee;
	int rv;
	long n;

	tee_close(must_open(f->dir, 1, NULL, meas_a)); /* the secret exists already */
	for (n = 0;; n++) {
		teems_alloc_fault(n, 0);
		rv = open_sim(f->dir, 1, NULL, meas_a, &tee, f->errbuf);
		teems_alloc_fault(-1, 0);
		if (rv == TEEMS_OK)
			break;
		assert_int_equal(rv, TEEMS_ENOMEM);
		assert_null(tee);
	}
	assert_true(n >= 2); /* the handle and the sim state at least */
	tee_close(tee);
}

static void test_default_measurement_is_executable_hash(void **state)
{
	struct fixture *f = *state;
	uint8_t want[TEE_MEASUREMENT_LEN], got[TEE_MEASUREMENT_LEN];
	static uint8_t exe[64 << 20];
	struct tee *tee;
	size_t n = 0;
	ssize_t r;
	int fd;

	fd = open("/proc/self/exe", O_RDONLY);
	assert_true(fd >= 0);
	while ((r = read(fd, exe + n, sizeof(exe) - n)) > 0)
		n += (size_t)r;
	close(fd);
	assert_true(n > 0 && n < sizeof(exe));
	tee_sha256(exe, n, want);

	tee = must_open(f->dir, 1, NULL, NULL);
	tee_measurement(tee, got);
	assert_memory_equal(got, want, sizeof(want));
	tee_close(tee);
	tee = must_open(f->dir, 1, NULL, meas_b);
	tee_measurement(tee, got);
	assert_memory_equal(got, meas_b, sizeof(got));
	tee_close(tee);
}

/* ---- the key hierarchy ---- */

static void seal_key_of(const char *dir, uint32_t replica, const char *cluster, const uint8_t *meas,
			const char *purpose, uint8_t out[TEE_KEY_LEN])
{
	struct tee *tee = must_open(dir, replica, cluster, meas);

	assert_int_equal(tee_seal_key(tee, purpose, out), TEEMS_OK);
	tee_close(tee);
}

static void test_seal_key_bindings(void **state)
{
	struct fixture *f = *state;
	char other[PATH_MAX];
	uint8_t base[TEE_KEY_LEN], again[TEE_KEY_LEN], k[6][TEE_KEY_LEN];

	subdir(f, "other-host", other);
	seal_key_of(f->dir, 1, "cluster", meas_a, "wal", base);
	seal_key_of(f->dir, 1, "cluster", meas_a, "wal", again);
	assert_memory_equal(base, again, TEE_KEY_LEN);

	seal_key_of(f->dir, 2, "cluster", meas_a, "wal", k[0]);	     /* replica id */
	seal_key_of(f->dir, 1, "cluster", meas_b, "wal", k[1]);	     /* measurement */
	seal_key_of(other, 1, "cluster", meas_a, "wal", k[2]);	     /* platform secret */
	seal_key_of(f->dir, 1, "cluster2", meas_a, "wal", k[3]);     /* cluster id */
	seal_key_of(f->dir, 1, "cluster", meas_a, "snapshot", k[4]); /* purpose */
	seal_key_of(f->dir, 1, NULL, meas_a, "wal", k[5]);	     /* no cluster id */
	for (int i = 0; i < 6; i++) {
		assert_memory_not_equal(k[i], base, TEE_KEY_LEN);
		for (int j = 0; j < i; j++)
			assert_memory_not_equal(k[i], k[j], TEE_KEY_LEN);
	}
}

static void test_seal_key_invalid_purpose(void **state)
{
	struct fixture *f = *state;
	char big[TEE_PURPOSE_MAX + 2];
	uint8_t k[TEE_KEY_LEN];
	struct tee *tee = must_open(f->dir, 1, NULL, meas_a);

	memset(big, 'p', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(tee_seal_key(tee, NULL, k), TEEMS_EINVAL);
	assert_int_equal(tee_seal_key(tee, "", k), TEEMS_EINVAL);
	assert_int_equal(tee_seal_key(tee, big, k), TEEMS_EINVAL);
	big[TEE_PURPOSE_MAX] = '\0';
	assert_int_equal(tee_seal_key(tee, big, k), TEEMS_OK);
	tee_close(tee);
}

/* ---- sealed blobs ---- */

static void test_seal_round_trip(void **state)
{
	static const size_t lens[] = {0, 1, 31, 32, 33, 1000, 65536};
	static uint8_t pt[65536], blob[65536 + TEE_SEAL_OVERHEAD], blob2[sizeof(blob)], back[65536];
	struct fixture *f = *state;
	struct tee *tee = must_open(f->dir, 1, "c", meas_a);

	assert_int_equal(tee_random(pt, sizeof(pt)), TEEMS_OK);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t len = lens[i], n = sizeof(blob), n2 = sizeof(blob2), m = sizeof(back);

		assert_int_equal(tee_seal(tee, "ad", 2, pt, len, blob, &n), TEEMS_OK);
		assert_int_equal(n, len + TEE_SEAL_OVERHEAD);
		assert_int_equal(blob[0], TEE_SEAL_VERSION);
		assert_int_equal(tee_unseal(tee, "ad", 2, blob, n, back, &m), TEEMS_OK);
		assert_int_equal(m, len);
		assert_memory_equal(back, pt, len);

		/* Sealing twice gives two unrelated blobs (fresh salt, fresh key), both valid. */
		assert_int_equal(tee_seal(tee, "ad", 2, pt, len, blob2, &n2), TEEMS_OK);
		assert_memory_not_equal(blob + 1, blob2 + 1, n - 1);
		m = sizeof(back);
		assert_int_equal(tee_unseal(tee, "ad", 2, blob2, n2, back, &m), TEEMS_OK);
		assert_memory_equal(back, pt, len);

		/* No associated data at all. */
		n = sizeof(blob);
		m = sizeof(back);
		assert_int_equal(tee_seal(tee, NULL, 0, pt, len, blob, &n), TEEMS_OK);
		assert_int_equal(tee_unseal(tee, NULL, 0, blob, n, back, &m), TEEMS_OK);
		assert_memory_equal(back, pt, len);
	}
	tee_close(tee);
}

/* Seals under (replica 1, cluster "c", meas_a, f->dir) and checks that every other identity's
 * unseal says EAUTH and leaves no plaintext in the output. */
static void test_unseal_wrong_key(void **state)
{
	struct fixture *f = *state;
	const char secret_msg[] = "replica one's secret state";
	uint8_t blob[128], out[128];
	size_t n = sizeof(blob), m;
	char other[PATH_MAX];
	struct tee *tee, *wrong[5];

	subdir(f, "other-host", other);
	tee = must_open(f->dir, 1, "c", meas_a);
	assert_int_equal(tee_seal(tee, "ad", 2, secret_msg, sizeof(secret_msg), blob, &n),
			 TEEMS_OK);
	wrong[0] = must_open(f->dir, 2, "c", meas_a);
	wrong[1] = must_open(f->dir, 1, "c", meas_b);
	wrong[2] = must_open(other, 1, "c", meas_a);
	wrong[3] = must_open(f->dir, 1, "d", meas_a);
	wrong[4] = must_open(f->dir, 1, NULL, meas_a);
	for (int i = 0; i < 5; i++) {
		memset(out, 0xee, sizeof(out));
		m = sizeof(out);
		assert_int_equal(tee_unseal(wrong[i], "ad", 2, blob, n, out, &m), TEEMS_EAUTH);
		assert_int_equal(m, sizeof(out)); /* untouched on error */
		assert_null(memmem(out, sizeof(out), "secret", 6));
		tee_close(wrong[i]);
	}
	m = sizeof(out);
	assert_int_equal(tee_unseal(tee, "ad", 2, blob, n, out, &m), TEEMS_OK);
	assert_memory_equal(out, secret_msg, sizeof(secret_msg));
	tee_close(tee);
}

static void test_unseal_wrong_ad(void **state)
{
	static const char *const wrong_ads[] = {"segment 8", "segment ", "segment 7!", NULL};
	struct fixture *f = *state;
	const char msg[] = "the plaintext under test";
	uint8_t blob[sizeof(msg) + TEE_SEAL_OVERHEAD], out[64];
	size_t n = sizeof(blob), m;
	struct tee *tee = must_open(f->dir, 1, NULL, meas_a);

	assert_int_equal(tee_seal(tee, "segment 7", 9, msg, sizeof(msg), blob, &n), TEEMS_OK);
	for (size_t i = 0; i < sizeof(wrong_ads) / sizeof(wrong_ads[0]); i++) {
		const char *ad = wrong_ads[i];

		m = sizeof(out);
		memset(out, 0, sizeof(out));
		assert_int_equal(tee_unseal(tee, ad, ad != NULL ? strlen(ad) : 0, blob, n, out, &m),
				 TEEMS_EAUTH);
		/* The right key decrypts before the tag fails: nothing of it may remain. */
		assert_null(memmem(out, sizeof(out), "plaintext", 9));
	}
	m = sizeof(out);
	assert_int_equal(tee_unseal(tee, "segment 7", 9, blob, n, out, &m), TEEMS_OK);
	assert_int_equal(m, sizeof(msg));
	assert_memory_equal(out, msg, sizeof(msg));
	tee_close(tee);
}

static void test_unseal_every_byte_tampered(void **state)
{
	static const uint8_t masks[] = {0x01, 0x80, 0xff};
	struct fixture *f = *state;
	uint8_t blob[100 + TEE_SEAL_OVERHEAD], out[100], pt[100];
	size_t n = sizeof(blob), m;
	struct tee *tee = must_open(f->dir, 1, NULL, meas_a);

	memset(pt, 'x', sizeof(pt));
	assert_int_equal(tee_seal(tee, "ad", 2, pt, sizeof(pt), blob, &n), TEEMS_OK);
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < sizeof(masks); k++) {
			int want;

			blob[i] ^= masks[k];
			if (i == 0)
				want = blob[0] == 0 ? TEEMS_ECORRUPT : TEEMS_EVERSION;
			else
				want = TEEMS_EAUTH;
			m = sizeof(out);
			assert_int_equal(tee_unseal(tee, "ad", 2, blob, n, out, &m), want);
			blob[i] ^= masks[k];
		}
	}
	m = sizeof(out);
	assert_int_equal(tee_unseal(tee, "ad", 2, blob, n, out, &m), TEEMS_OK);
	tee_close(tee);
}

static void test_unseal_truncated_or_extended(void **state)
{
	struct fixture *f = *state;
	uint8_t blob[40 + TEE_SEAL_OVERHEAD + 1], out[64];
	size_t n = sizeof(blob), m;
	struct tee *tee = must_open(f->dir, 1, NULL, meas_a);

	assert_int_equal(
		tee_seal(tee, NULL, 0, "0123456789012345678901234567890123456789", 40, blob, &n),
		TEEMS_OK);
	assert_int_equal(n, 40 + TEE_SEAL_OVERHEAD);
	for (size_t len = 0; len < n; len++) {
		m = sizeof(out);
		assert_int_equal(tee_unseal(tee, NULL, 0, blob, len, out, &m),
				 len == 0 ? TEEMS_ECORRUPT : TEEMS_EAUTH);
	}
	blob[n] = 0;
	m = sizeof(out);
	assert_int_equal(tee_unseal(tee, NULL, 0, blob, n + 1, out, &m), TEEMS_EAUTH);
	tee_close(tee);
}

static void test_unseal_header_versions(void **state)
{
	struct fixture *f = *state;
	uint8_t blob[8 + TEE_SEAL_OVERHEAD], out[8];
	size_t n = sizeof(blob), m = sizeof(out);
	struct tee *tee = must_open(f->dir, 1, NULL, meas_a);

	assert_int_equal(tee_seal(tee, NULL, 0, "12345678", 8, blob, &n), TEEMS_OK);
	blob[0] = 0;
	assert_int_equal(tee_unseal(tee, NULL, 0, blob, n, out, &m), TEEMS_ECORRUPT);
	blob[0] = 2;
	assert_int_equal(tee_unseal(tee, NULL, 0, blob, n, out, &m), TEEMS_EVERSION);
	assert_int_equal(tee_unseal(tee, NULL, 0, blob, 1, out, &m), TEEMS_EVERSION);
	blob[0] = TEE_SEAL_VERSION;
	assert_int_equal(tee_unseal(tee, NULL, 0, blob, n, out, &m), TEEMS_OK);
	tee_close(tee);
}

static void test_seal_buffer_sizes(void **state)
{
	struct fixture *f = *state;
	uint8_t blob[10 + TEE_SEAL_OVERHEAD], out[10];
	size_t n, m;
	struct tee *tee = must_open(f->dir, 1, NULL, meas_a);

	n = 10 + TEE_SEAL_OVERHEAD - 1;
	assert_int_equal(tee_seal(tee, NULL, 0, "0123456789", 10, blob, &n), TEEMS_EINVAL);
	assert_int_equal(n, 10 + TEE_SEAL_OVERHEAD - 1);
	n = sizeof(blob);
	assert_int_equal(tee_seal(tee, NULL, 0, "0123456789", TEE_SEAL_MAX_PLAINTEXT + 1, blob, &n),
			 TEEMS_EINVAL);
	assert_int_equal(tee_seal(tee, NULL, 0, "0123456789", 10, blob, &n), TEEMS_OK);
	m = 9;
	assert_int_equal(tee_unseal(tee, NULL, 0, blob, n, out, &m), TEEMS_EINVAL);
	m = 10;
	assert_int_equal(tee_unseal(tee, NULL, 0, blob, n, out, &m), TEEMS_OK);
	assert_memory_equal(out, "0123456789", 10);
	tee_close(tee);
}

static void test_blob_under_purpose_key(void **state)
{
	struct fixture *f = *state;
	uint8_t snap[TEE_KEY_LEN], wal[TEE_KEY_LEN], blob[16 + TEE_SEAL_OVERHEAD], out[16];
	size_t n = sizeof(blob), m = sizeof(out);
	struct tee *tee = must_open(f->dir, 1, NULL, meas_a);

	assert_int_equal(tee_seal_key(tee, "snapshot", snap), TEEMS_OK);
	assert_int_equal(tee_seal_key(tee, "wal", wal), TEEMS_OK);
	assert_int_equal(tee_blob_seal(snap, "s", 1, "snapshot payload", 16, blob, &n), TEEMS_OK);
	assert_int_equal(tee_blob_unseal(wal, "s", 1, blob, n, out, &m), TEEMS_EAUTH);
	assert_int_equal(tee_unseal(tee, "s", 1, blob, n, out, &m), TEEMS_EAUTH);
	assert_int_equal(tee_blob_unseal(snap, "s", 1, blob, n, out, &m), TEEMS_OK);
	assert_memory_equal(out, "snapshot payload", 16);
	tee_close(tee);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_secret_created_0600, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_stable_across_opens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_refuses_group_or_world_access, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_secret_refuses_wrong_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_refuses_symlink_and_directory, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_platform_dir_unusable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_creation_race, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_platform_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_invalid_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_allocation_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_measurement_is_executable_hash, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_seal_key_bindings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_key_invalid_purpose, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unseal_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unseal_wrong_ad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unseal_every_byte_tampered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unseal_truncated_or_extended, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unseal_header_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_buffer_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blob_under_purpose_key, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
