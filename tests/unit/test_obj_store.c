/* src/client/blobstore.c, blob_dir.c, blobcache.c, obj.c: store URLs, the dir store (round
 * trips, missing, list, delete, crash safety of temp-then-rename), the blob cache, and the
 * storage half of put/get against an adversarial store (missing, tampered, stale). */
#include <dirent.h>
#include <fcntl.h>
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

#include "client/blobcache.h"
#include "client/blobstore.h"
#include "client/blobstore_internal.h"
#include "client/obj.h"
#include "common/alloc.h"
#include "teems/err.h"
#include "test_obj_util.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/teems-obj-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- URLs and names */

static void test_url_good(void **state)
{
	struct blob_url u;
	char err[TEEMS_ERRBUF_LEN];
	(void)state;

	assert_int_equal(blob_url_parse("dir:///var/lib/teems/blobs", &u, err), TEEMS_OK);
	assert_int_equal(u.kind, BLOB_DIR);
	assert_string_equal(u.path, "/var/lib/teems/blobs");
	assert_int_equal(blob_url_parse("dir://relative/dir", &u, err), TEEMS_OK);
	assert_string_equal(u.path, "relative/dir");

	assert_int_equal(blob_url_parse("s3://my-bucket", &u, err), TEEMS_OK);
	assert_int_equal(u.kind, BLOB_S3);
	assert_string_equal(u.bucket, "my-bucket");
	assert_string_equal(u.prefix, "");
	assert_string_equal(u.region, "us-east-1");
	assert_string_equal(u.endpoint, "https://s3.us-east-1.amazonaws.com");

	assert_int_equal(blob_url_parse("s3://b.u.c/a/b/?region=eu-west-1", &u, err), TEEMS_OK);
	assert_string_equal(u.prefix, "a/b/");
	assert_string_equal(u.endpoint, "https://s3.eu-west-1.amazonaws.com");

	assert_int_equal(blob_url_parse("s3://bkt/pre?endpoint=http://127.0.0.1:9000&region=r1&"
					"timeout_ms=1500",
					&u, err),
			 TEEMS_OK);
	assert_string_equal(u.bucket, "bkt");
	assert_string_equal(u.prefix, "pre");
	assert_string_equal(u.endpoint, "http://127.0.0.1:9000");
	assert_string_equal(u.region, "r1");
	assert_int_equal(u.timeout_ms, 1500);
	assert_int_equal(u.part_size, 0);

	assert_int_equal(blob_url_parse("s3://bkt?part_size=5242880", &u, err), TEEMS_OK);
	assert_int_equal(u.part_size, 5242880);
	assert_int_equal(blob_url_parse("s3://bkt?part_size=5368709120", &u, err), TEEMS_OK);
	assert_int_equal(u.part_size, 5368709120ull);

	assert_int_equal(blob_url_parse("s3://bkt?endpoint=http%3A%2F%2Flocalhost%3A1%2F", &u, err),
			 TEEMS_OK);
	assert_string_equal(u.endpoint, "http://localhost:1");
}

static void test_url_bad(void **state)
{
	static const char *const bad[] = {
		NULL,
		"",
		"dir://",
		"file:///tmp",
		"s3://",
		"s3://ab",
		"s3://Bucket",
		"s3://-bucket",
		"s3://bucket-",
		"s3://buc..ket",
		"s3://bucket_x",
		"s3://bucket/../etc",
		"s3://bucket/a/./b",
		"s3://bucket/a//b",
		"s3://bucket/a b",
		"s3://bucket/%41",
		"s3://bucket?endpoint=ftp://x",
		"s3://bucket?endpoint=http://user:pw@host",
		"s3://bucket?endpoint=http://",
		"s3://bucket?endpoint=http://h%",
		"s3://bucket?endpoint=http://h%zz",
		"s3://bucket?endpoint=http://h%00",
		"s3://bucket?endpoint=http://a&endpoint=http://b",
		"s3://bucket?region=US",
		"s3://bucket?region=",
		"s3://bucket?timeout_ms=0",
		"s3://bucket?timeout_ms=-5",
		"s3://bucket?timeout_ms=12x",
		"s3://bucket?timeout_ms=99999999999",
		"s3://bucket?part_size=5242879",
		"s3://bucket?part_size=5368709121",
		"s3://bucket?part_size=64MiB",
		"s3://bucket?part_size=",
		"s3://bucket?part_size=99999999999999999999999",
		"s3://bucket?part_size=5242880&part_size=5242880",
		"s3://bucket?unknown=1",
		"s3://bucket?endpoint",
		"s3://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	struct blob_url u;
	char err[TEEMS_ERRBUF_LEN];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (blob_url_parse(bad[i], &u, err) != TEEMS_EINVAL)
			fail_msg("accepted bad URL '%s'", bad[i] ? bad[i] : "(null)");
		assert_true(err[0] != '\0');
	}
}

static void test_names(void **state)
{
	char a[BLOB_RANDOM_NAME_LEN + 1], b[BLOB_RANDOM_NAME_LEN + 1];
	char longname[OBJ_NAME_MAX + 2];
	(void)state;

	assert_int_equal(blobstore_random_name(a), TEEMS_OK);
	assert_int_equal(blobstore_random_name(b), TEEMS_OK);
	assert_int_equal(strlen(a), BLOB_RANDOM_NAME_LEN);
	assert_string_not_equal(a, b);
	assert_true(blob_name_valid(a));
	assert_true(blob_name_valid("a.b-c_D9"));
	assert_false(blob_name_valid(""));
	assert_false(blob_name_valid(".hidden"));
	assert_false(blob_name_valid(".tmp-0123"));
	assert_false(blob_name_valid("a/b"));
	assert_false(blob_name_valid(".."));
	assert_false(blob_name_valid("a b"));
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(blob_name_valid(longname));
	longname[OBJ_NAME_MAX] = '\0';
	assert_true(blob_name_valid(longname));
}

static int collect_key(void *arg, const char *key)
{
	char *out = arg;

	strcat(out, key);
	strcat(out, "|");
	return 0;
}

/* The S3 ListObjectsV2 parser, on what s3rver and AWS send (the fuzzer covers the rest). */
static void test_s3_list_parser(void **state)
{
	static const char page[] =
		"<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>"
		"<NextContinuationToken>tok/en=&amp;1</NextContinuationToken>"
		"<Contents><Key>p/a</Key><Size>1</Size></Contents>"
		"<Contents><Key>p/b&amp;c&lt;</Key></Contents></ListBucketResult>";
	static const char last[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
				   "</ListBucketResult>";
	char keys[256] = "", token[64];
	int truncated;
	(void)state;

	assert_int_equal(blob_s3_parse_list(page, strlen(page), collect_key, keys, &truncated,
					    token, sizeof(token), NULL),
			 TEEMS_OK);
	assert_string_equal(keys, "p/a|p/b&c<|");
	assert_true(truncated);
	assert_string_equal(token, "tok/en=&1");
	assert_int_equal(blob_s3_parse_list(last, strlen(last), collect_key, keys, &truncated,
					    token, sizeof(token), NULL),
			 TEEMS_OK);
	assert_false(truncated);
	/* refusals: not a listing, an unterminated key, a bad entity, truncated without a token,
	 * and a key cut off by the length (the parser never reads past it) */
	assert_int_equal(blob_s3_parse_list("<Error/>", 8, collect_key, keys, &truncated, token,
					    sizeof(token), NULL),
			 TEEMS_ECORRUPT);
	assert_int_equal(blob_s3_parse_list("<ListBucketResult><Key>x", 24, collect_key, keys,
					    &truncated, token, sizeof(token), NULL),
			 TEEMS_ECORRUPT);
	assert_int_equal(blob_s3_parse_list("<ListBucketResult><Key>&#65;</Key>", 34, collect_key,
					    keys, &truncated, token, sizeof(token), NULL),
			 TEEMS_ECORRUPT);
	assert_int_equal(blob_s3_parse_list("<ListBucketResult><IsTruncated>true</IsTruncated>", 49,
					    collect_key, keys, &truncated, token, sizeof(token),
					    NULL),
			 TEEMS_ECORRUPT);
	assert_int_equal(blob_s3_parse_list(page, strstr(page, "p/a</Key>") - page + 2, collect_key,
					    keys, &truncated, token, sizeof(token), NULL),
			 TEEMS_ECORRUPT);
}

/* ---------------------------------------------------------------- the dir store */

static struct blobstore *open_dir_store(const char *sub)
{
	char url[400], err[TEEMS_ERRBUF_LEN] = "";
	struct blobstore *st;

	snprintf(url, sizeof(url), "dir://%s/%s", tmpdir, sub);
	assert_int_equal(blobstore_open(url, NULL, &st, err), TEEMS_OK);
	assert_int_equal(blobstore_init(st, err), TEEMS_OK);
	return st;
}

static void put_bytes(struct blobstore *st, const char *name, const void *data, size_t len)
{
	struct obj_mem_src ms = {data, len, 0};
	struct obj_src src = obj_src_mem(&ms);
	char err[TEEMS_ERRBUF_LEN] = "";

	assert_int_equal(blobstore_put(st, name, &src, len, err), TEEMS_OK);
}

static int get_bytes(struct blobstore *st, const char *name, struct obj_mem_sink *out)
{
	struct obj_sink sink = obj_sink_mem(out);

	memset(out, 0, sizeof(*out));
	return blobstore_get(st, name, &sink, NULL);
}

struct names {
	char list[16][OBJ_NAME_MAX + 1];
	int n;
};

static int collect(void *arg, const char *name)
{
	struct names *ns = arg;

	assert_true(ns->n < 16);
	snprintf(ns->list[ns->n++], OBJ_NAME_MAX + 1, "%s", name);
	return 0;
}

static int has(const struct names *ns, const char *name)
{
	for (int i = 0; i < ns->n; i++)
		if (strcmp(ns->list[i], name) == 0)
			return 1;
	return 0;
}

static int count_files(const char *sub)
{
	char path[400];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, sub);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.' || strncmp(e->d_name, ".tmp-", 5) == 0;
	closedir(d);
	return n;
}

static void test_dir_round_trip(void **state)
{
	struct blobstore *st = open_dir_store("rt/nested");
	struct obj_mem_sink out;
	struct blob_stat bs;
	struct names ns = {0};
	uint8_t big[200000];
	(void)state;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7);
	put_bytes(st, "empty", "", 0);
	put_bytes(st, "one", "x", 1);
	put_bytes(st, "big", big, sizeof(big));
	assert_int_equal(get_bytes(st, "empty", &out), TEEMS_OK);
	assert_int_equal(out.len, 0);
	teems_free(out.data);
	assert_int_equal(get_bytes(st, "big", &out), TEEMS_OK);
	assert_int_equal(out.len, sizeof(big));
	assert_memory_equal(out.data, big, sizeof(big));
	teems_free(out.data);
	assert_int_equal(blobstore_stat(st, "big", &bs, NULL), TEEMS_OK);
	assert_int_equal(bs.size, sizeof(big));
	/* replace */
	put_bytes(st, "one", "yz", 2);
	assert_int_equal(get_bytes(st, "one", &out), TEEMS_OK);
	assert_int_equal(out.len, 2);
	assert_memory_equal(out.data, "yz", 2);
	teems_free(out.data);
	/* list, with and without prefix */
	assert_int_equal(blobstore_list(st, "", collect, &ns, NULL), TEEMS_OK);
	assert_int_equal(ns.n, 3);
	assert_true(has(&ns, "empty") && has(&ns, "one") && has(&ns, "big"));
	ns.n = 0;
	assert_int_equal(blobstore_list(st, "b", collect, &ns, NULL), TEEMS_OK);
	assert_int_equal(ns.n, 1);
	assert_true(has(&ns, "big"));
	assert_int_equal(blobstore_list(st, "../", collect, &ns, NULL), TEEMS_EINVAL);
	/* missing, delete */
	assert_int_equal(get_bytes(st, "nope", &out), TEEMS_ENOTFOUND);
	assert_int_equal(blobstore_stat(st, "nope", &bs, NULL), TEEMS_ENOTFOUND);
	assert_int_equal(blobstore_delete(st, "big", NULL), TEEMS_OK);
	assert_int_equal(get_bytes(st, "big", &out), TEEMS_ENOTFOUND);
	assert_int_equal(blobstore_delete(st, "big", NULL), TEEMS_OK);
	/* bad names never reach the file system */
	assert_int_equal(get_bytes(st, "../escape", &out), TEEMS_EINVAL);
	assert_int_equal(blobstore_delete(st, ".tmp-x", NULL), TEEMS_EINVAL);
	assert_int_equal(count_files("rt/nested"), 2);
	blobstore_close(st);
}

/* A source that fails after `ok` bytes, or kills the process (a crash mid-write). */
struct dying_src {
	uint64_t ok;
	int crash;
};

static int dying_read(void *arg, void *buf, size_t cap, size_t *got, char *errbuf)
{
	struct dying_src *d = arg;
	size_t n = cap < d->ok ? cap : (size_t)d->ok;

	if (n == 0) {
		if (d->crash)
			_exit(0);
		return teems_errf(errbuf, TEEMS_EIO, "source died");
	}
	memset(buf, 'N', n);
	d->ok -= n;
	*got = n;
	return TEEMS_OK;
}

static void test_dir_put_is_atomic(void **state)
{
	struct blobstore *st = open_dir_store("atomic");
	struct obj_mem_sink out;
	struct dying_src d = {100000, 0};
	struct obj_src src = {.read = dying_read, .arg = &d};
	pid_t pid;
	int status;
	(void)state;

	put_bytes(st, "obj", "old", 3);
	/* The source fails half-way: the put fails, the old blob stays, no temp file is left. */
	assert_int_equal(blobstore_put(st, "obj", &src, 200000, NULL), TEEMS_EIO);
	assert_int_equal(get_bytes(st, "obj", &out), TEEMS_OK);
	assert_int_equal(out.len, 3);
	teems_free(out.data);
	assert_int_equal(count_files("atomic"), 1);
	/* Wrong declared length either way. */
	{
		struct obj_mem_src ms = {(const uint8_t *)"abcdef", 6, 0};
		struct obj_src s6 = obj_src_mem(&ms);

		assert_int_equal(blobstore_put(st, "obj", &s6, 5, NULL), TEEMS_EIO);
		ms.pos = 0;
		assert_int_equal(blobstore_put(st, "obj", &s6, 7, NULL), TEEMS_EIO);
		assert_int_equal(count_files("atomic"), 1);
	}
	/* The process dies in the middle of a put (as with kill -9): the name still holds the
	 * old blob, the torn write is only an orphan temporary file that listings skip. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct dying_src dc = {150000, 1};
		struct obj_src sc = {.read = dying_read, .arg = &dc};

		blobstore_put(st, "obj", &sc, 300000, NULL);
		_exit(1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(get_bytes(st, "obj", &out), TEEMS_OK);
	assert_int_equal(out.len, 3);
	assert_memory_equal(out.data, "old", 3);
	teems_free(out.data);
	assert_int_equal(count_files("atomic"), 2); /* obj + the orphan */
	{
		struct names ns = {0};

		assert_int_equal(blobstore_list(st, "", collect, &ns, NULL), TEEMS_OK);
		assert_int_equal(ns.n, 1);
		assert_string_equal(ns.list[0], "obj");
	}
	blobstore_close(st);
}

static void test_dir_missing_directory(void **state)
{
	char url[400];
	struct blobstore *st;
	struct obj_mem_sink out;
	struct names ns = {0};
	(void)state;

	snprintf(url, sizeof(url), "dir://%s/never-created", tmpdir);
	assert_int_equal(blobstore_open(url, NULL, &st, NULL), TEEMS_OK);
	assert_int_equal(get_bytes(st, "x", &out), OBJ_EUNAVAIL);
	assert_int_equal(blobstore_list(st, "", collect, &ns, NULL), OBJ_EUNAVAIL);
	blobstore_close(st);
}

/* ---------------------------------------------------------------- the cache and obj_*_blob */

#define ID "photos/cat"

static void put_object(struct blobstore *st, struct obj_meta *m, const uint8_t *object_key,
		       uint64_t version, uint64_t size, uint64_t seed)
{
	struct gen_src g;
	struct obj_src src = gen_src_init(&g, seed, size);
	char err[TEEMS_ERRBUF_LEN] = "";

	memset(m, 0, sizeof(*m));
	memcpy(m->object_key, object_key, TEE_KEY_LEN);
	m->version = version;
	m->size = size;
	m->chunk_size = 4096;
	assert_int_equal(obj_put_blob(st, m, ID, strlen(ID), &src, err), TEEMS_OK);
	assert_true(blob_name_valid(m->store_name));
}

static int get_object(struct blobstore *st, struct blobcache *cache, const struct obj_meta *m)
{
	struct hash_sink h;
	struct obj_sink sink = hash_sink_init(&h);
	uint8_t d[32];
	char err[TEEMS_ERRBUF_LEN] = "";
	int rc = obj_get_blob(st, cache, m, ID, strlen(ID), &sink, err);

	hash_sink_final(&h, d);
	if (rc == TEEMS_OK) {
		assert_int_equal(h.total, m->size);
		assert_memory_equal(d, m->pt_sha256, 32);
	}
	return rc;
}

static void blob_path(const char *sub, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s/%s", tmpdir, sub, name);
}

static void copy_file(const char *from, const char *to)
{
	char cmd[1600];

	assert_true(snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to) < (int)sizeof(cmd));
	assert_int_equal(system(cmd), 0);
}

static void test_store_attacks_end_to_end(void **state)
{
	struct blobstore *st = open_dir_store("attacks");
	struct obj_meta v1, v2;
	uint8_t key[TEE_KEY_LEN];
	char p1[700], p2[700];
	struct obj_mem_sink out;
	(void)state;

	assert_int_equal(obj_new_object_key(key), TEEMS_OK);
	put_object(st, &v1, key, 1, 10000, 1);
	put_object(st, &v2, key, 2, 20000, 2);
	assert_string_not_equal(v1.store_name, v2.store_name);
	assert_int_equal(get_object(st, NULL, &v1), TEEMS_OK);
	assert_int_equal(get_object(st, NULL, &v2), TEEMS_OK);
	blob_path("attacks", v1.store_name, p1, sizeof(p1));
	blob_path("attacks", v2.store_name, p2, sizeof(p2));

	/* roll back: v2's name now holds v1's blob */
	assert_int_equal(get_bytes(st, v2.store_name, &out), TEEMS_OK);
	copy_file(p1, p2);
	assert_int_equal(get_object(st, NULL, &v2), OBJ_ESTALE);
	/* corrupt one byte in the middle */
	put_bytes(st, v2.store_name, out.data, out.len);
	assert_int_equal(get_object(st, NULL, &v2), TEEMS_OK);
	out.data[out.len / 2] ^= 0x40;
	put_bytes(st, v2.store_name, out.data, out.len);
	assert_int_equal(get_object(st, NULL, &v2), OBJ_ETAMPERED);
	/* cut the tail */
	out.data[out.len / 2] ^= 0x40;
	put_bytes(st, v2.store_name, out.data, out.len - 4096 - 16);
	assert_int_equal(get_object(st, NULL, &v2), OBJ_ETRUNCATED);
	/* delete */
	assert_int_equal(blobstore_delete(st, v2.store_name, NULL), TEEMS_OK);
	assert_int_equal(get_object(st, NULL, &v2), TEEMS_ENOTFOUND);
	teems_free(out.data);
	blobstore_close(st);
}

static void test_cache(void **state)
{
	struct blobstore *st = open_dir_store("cached-store");
	struct blobcache *cache;
	struct obj_meta v1, v2;
	uint8_t key[TEE_KEY_LEN];
	char cdir[400], cpath[700], hexname[65], err[TEEMS_ERRBUF_LEN] = "";
	struct stat sb;
	(void)state;

	snprintf(cdir, sizeof(cdir), "%s/cache", tmpdir);
	assert_int_equal(blobcache_open(cdir, 0, &cache, err), TEEMS_OK);
	assert_int_equal(obj_new_object_key(key), TEEMS_OK);
	put_object(st, &v1, key, 1, 30000, 3);
	put_object(st, &v2, key, 2, 30000, 4);
	for (int i = 0; i < 32; i++)
		sprintf(hexname + 2 * i, "%02x", v1.blob_digest[i]);
	snprintf(cpath, sizeof(cpath), "%s/%s", cdir, hexname);

	/* a miss fills the cache */
	assert_int_equal(get_object(st, cache, &v1), TEEMS_OK);
	assert_int_equal(stat(cpath, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, v1.blob_size);
	/* a hit needs no store: delete the blob from the store and read again */
	assert_int_equal(blobstore_delete(st, v1.store_name, NULL), TEEMS_OK);
	assert_int_equal(get_object(st, cache, &v1), TEEMS_OK);
	/* fresh metadata with another hash never uses the old entry: v2 comes from the store */
	assert_int_equal(get_object(st, cache, &v2), TEEMS_OK);
	/* an authentic blob of another version under v2's entry (the cache directory rolled
	 * back): refused by decryption before any plaintext goes out, dropped, and v2 is read
	 * from the store and cached again */
	{
		char v2path[700], v2hex[65];
		struct obj_mem_sink cached = {0};
		struct hash_sink h;
		struct obj_sink sink = hash_sink_init(&h);
		uint8_t d[32];

		for (int i = 0; i < 32; i++)
			sprintf(v2hex + 2 * i, "%02x", v2.blob_digest[i]);
		snprintf(v2path, sizeof(v2path), "%s/%s", cdir, v2hex);
		assert_int_equal(stat(v2path, &sb), 0);
		copy_file(cpath, v2path);
		assert_int_equal(get_object(st, cache, &v2), TEEMS_OK);
		assert_int_equal(blobcache_get(cache, v2.blob_digest, &sink, NULL), TEEMS_OK);
		hash_sink_final(&h, d);
		assert_int_equal(get_bytes(st, v2.store_name, &cached), TEEMS_OK);
		assert_int_equal(h.total, cached.len);
		tee_sha256(cached.data, cached.len, cached.data);
		assert_memory_equal(d, cached.data, 32);
		teems_free(cached.data);
	}
	/* a damaged cached copy is detected on use, dropped, and the store is asked */
	{
		FILE *f = fopen(cpath, "r+b");

		assert_non_null(f);
		fseek(f, 200, SEEK_SET);
		fputc('!', f);
		fclose(f);
	}
	assert_int_equal(get_object(st, cache, &v1), TEEMS_ENOTFOUND); /* store lost it too */
	assert_int_not_equal(stat(cpath, &sb), 0);
	/* a blob that fails to decrypt is not cached */
	{
		struct obj_meta bad = v2;
		char p[700];

		blob_path("cached-store", v1.store_name, p, sizeof(p));
		assert_int_equal(blobcache_drop(cache, v2.blob_digest, NULL), TEEMS_OK);
		bad.data_key[0] ^= 1;
		assert_int_equal(get_object(st, cache, &bad), OBJ_ETAMPERED);
		assert_int_equal(blobcache_get(cache, v2.blob_digest,
					       &(struct obj_sink){.write = hash_write, .arg = NULL},
					       NULL),
				 TEEMS_ENOTFOUND);
	}
	/* trim keeps the cache under its limit, oldest first */
	blobcache_close(cache);
	assert_int_equal(blobcache_open(cdir, v2.blob_size + 10, &cache, err), TEEMS_OK);
	put_object(st, &v1, key, 3, 30000, 5);
	assert_int_equal(get_object(st, cache, &v2), TEEMS_OK);
	sleep(1);
	assert_int_equal(get_object(st, cache, &v1), TEEMS_OK); /* evicts v2's entry */
	{
		struct hash_sink h;
		struct obj_sink sink = hash_sink_init(&h);
		uint8_t d[32];

		struct obj_mem_sink blob = {0};
		uint8_t want[32];

		assert_int_equal(blobcache_get(cache, v2.blob_digest, &sink, NULL),
				 TEEMS_ENOTFOUND);
		assert_int_equal(blobcache_get(cache, v1.blob_digest, &sink, NULL), TEEMS_OK);
		hash_sink_final(&h, d);
		/* the entry holds exactly the store's blob */
		assert_int_equal(get_bytes(st, v1.store_name, &blob), TEEMS_OK);
		tee_sha256(blob.data, blob.len, want);
		assert_memory_equal(d, want, 32);
		teems_free(blob.data);
	}
	blobcache_close(cache);
	blobstore_close(st);
}

/* Every allocation failure in a put or get gives TEEMS_ENOMEM (or, for the cache, which must
 * never fail a read, a read without the cache) and leaks nothing (the ASan build checks). */
static void test_allocation_failures(void **state)
{
	struct blobstore *st = open_dir_store("alloc");
	struct blobcache *cache;
	uint8_t key[TEE_KEY_LEN] = {3};
	char cdir[400];
	(void)state;

	snprintf(cdir, sizeof(cdir), "%s/alloc-cache", tmpdir);
	assert_int_equal(blobcache_open(cdir, 0, &cache, NULL), TEEMS_OK);
	for (long n = 0; n < 12; n++) {
		struct obj_meta m = {0};
		struct gen_src g;
		struct obj_src src = gen_src_init(&g, 1, 9000);
		int rc;

		memcpy(m.object_key, key, TEE_KEY_LEN);
		m.version = 1;
		m.size = 9000;
		m.chunk_size = 4096;
		teems_alloc_fault(n, 0);
		rc = obj_put_blob(st, &m, ID, strlen(ID), &src, NULL);
		teems_alloc_fault(-1, 0);
		assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		if (rc != TEEMS_OK)
			continue;
		teems_alloc_fault(n, 0);
		rc = get_object(st, cache, &m);
		teems_alloc_fault(-1, 0);
		assert_true(rc == TEEMS_OK || rc == TEEMS_ENOMEM);
		assert_int_equal(get_object(st, cache, &m), TEEMS_OK);
		assert_int_equal(blobstore_delete(st, m.store_name, NULL), TEEMS_OK);
	}
	blobcache_close(cache);
	blobstore_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_good),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_s3_list_parser),
		cmocka_unit_test(test_dir_round_trip),
		cmocka_unit_test(test_dir_put_is_atomic),
		cmocka_unit_test(test_dir_missing_directory),
		cmocka_unit_test(test_store_attacks_end_to_end),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_allocation_failures),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
