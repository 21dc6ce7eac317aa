/* etcd_put: a closed-loop load driver for etcd's JSON gateway, shaped like redis-benchmark so
 * bench/compare.sh can put etcd beside Redis and teems in one table.
 *
 *   etcd_put -u http://127.0.0.1:2379 [-t put|get] [-c CLIENTS] [-n REQUESTS] [-d BYTES]
 *            [-r KEYSPACE] [-T SECONDS]
 *
 * Why our own: etcd's `benchmark` tool is not in Debian (golang-etcd-server-dev ships no
 * tools/benchmark), and `etcdctl check perf` only runs fixed-rate 60 s loads. This does what
 * `redis-benchmark -t set|get -d BYTES -c CLIENTS -n REQUESTS -r KEYSPACE` does: CLIENTS
 * connections (HTTP/1.1 keep-alive, one request in flight on each, no pipelining), REQUESTS
 * requests in all, keys "key:%012u" drawn uniformly from [0, KEYSPACE), values of BYTES 'x'.
 * put: POST /v3/kv/put {"key","value"} (base64); get: POST /v3/kv/range {"key"}, which etcd
 * serves linearizably (serializable=false, the default), the same guarantee as a teems GET.
 * Latency is measured per request from handing it to libcurl until its reply is complete.
 *
 * Prints redis-benchmark's --csv shape (test name PUT or RANGE):
 *   "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
 *   "p99_latency_ms","max_latency_ms"
 * Any failed request (transport error, HTTP status other than 200, a body without etcd's
 * "header") makes it print the first failure and exit 1 with no CSV: a run with errors is not a
 * measurement. -T bounds the whole run (default 120 s; exit 1 when reached). */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MAX_VALUE (1024 * 1024)
#define MAX_REQUESTS 100000000L
#define REPLY_CAP 4096 /* a put or single-key range reply is a few hundred bytes */

struct slot {
	CURL *easy;
	char *body; /* JSON request body, rebuilt for every request */
	char reply[REPLY_CAP];
	size_t reply_len;
	bool reply_truncated;
	uint64_t start_ns;
};

static struct {
	const char *url;
	bool get;
	long clients, requests, value_len, keyspace, time_limit_s;
	char *value_b64; /* the value, base64 once for all requests */
	uint64_t *lat_ns;
	long done, started, failed;
	char first_error[512];
	uint64_t rng;
} g = {
	.clients = 50,
	.requests = 10000,
	.value_len = 64,
	.keyspace = 100000,
	.time_limit_s = 120,
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: key choice only needs to spread, not to be unpredictable. */
static uint64_t rng_next(void)
{
	g.rng ^= g.rng >> 12;
	g.rng ^= g.rng << 25;
	g.rng ^= g.rng >> 27;
	return g.rng * 2685821657736338717ull;
}

static size_t base64(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t left = len - i;

		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = left > 1 ? tab[(v >> 6) & 63] : '=';
		out[o++] = left > 2 ? tab[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	if (g.failed++ == 0) {
		va_start(ap, fmt);
		vsnprintf(g.first_error, sizeof(g.first_error), fmt, ap);
		va_end(ap);
	}
}

static size_t on_reply(char *data, size_t size, size_t nmemb, void *arg)
{
	struct slot *s = arg;
	size_t n = size * nmemb;
	size_t room = REPLY_CAP - 1 - s->reply_len;

	if (n > room) {
		s->reply_truncated = true;
		n = room;
	}
	memcpy(s->reply + s->reply_len, data, n);
	s->reply_len += n;
	s->reply[s->reply_len] = '\0';
	return size * nmemb;
}

/* Sets up the slot's next request; the easy handle keeps its connection between requests. */
static void prepare(struct slot *s)
{
	char key[32], key_b64[48];
	int klen = snprintf(key, sizeof(key), "key:%012" PRIu64, rng_next() % (uint64_t)g.keyspace);

	base64((const unsigned char *)key, (size_t)klen, key_b64);
	if (g.get)
		sprintf(s->body, "{\"key\":\"%s\"}", key_b64);
	else
		sprintf(s->body, "{\"key\":\"%s\",\"value\":\"%s\"}", key_b64, g.value_b64);
	s->reply_len = 0;
	s->reply[0] = '\0';
	s->reply_truncated = false;
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
	s->start_ns = now_ns();
	g.started++;
}

static void finish(struct slot *s, CURLcode rc)
{
	uint64_t lat = now_ns() - s->start_ns;
	long status = 0;

	if (rc != CURLE_OK) {
		fail("transport: %s", curl_easy_strerror(rc));
		return;
	}
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		fail("HTTP status %ld: %.200s", status, s->reply);
		return;
	}
	if (s->reply_truncated || !strstr(s->reply, "\"header\"")) {
		fail("unexpected reply: %.200s", s->reply);
		return;
	}
	g.lat_ns[g.done++] = lat;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The smallest sample with at least p of all samples at or below it (as HdrHistogram, which
 * redis-benchmark uses, reports percentiles). */
static double pct_ms(double p)
{
	long i = (long)(p * (double)g.done + 0.999999) - 1;

	if (i < 0)
		i = 0;
	if (i >= g.done)
		i = g.done - 1;
	return (double)g.lat_ns[i] / 1e6;
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "etcd_put: %s = \"%s\": must be an integer in %ld..%ld\n", what, s,
			lo, hi);
		exit(2);
	}
	return v;
}

static void usage(void)
{
	fprintf(stderr, "usage: etcd_put -u URL [-t put|get] [-c CLIENTS] [-n REQUESTS] "
			"[-d BYTES] [-r KEYSPACE] [-T SECONDS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct slot *slots;
	CURLM *multi;
	char url[1024];
	unsigned char *raw;
	uint64_t t0, t1, deadline;
	double sum = 0;
	int opt;

	while ((opt = getopt(argc, argv, "u:t:c:n:d:r:T:")) != -1) {
		switch (opt) {
		case 'u':
			g.url = optarg;
			break;
		case 't':
			if (strcmp(optarg, "put") && strcmp(optarg, "get"))
				usage();
			g.get = strcmp(optarg, "get") == 0;
			break;
		case 'c':
			g.clients = parse_long(optarg, "-c", 1, MAX_CLIENTS);
			break;
		case 'n':
			g.requests = parse_long(optarg, "-n", 1, MAX_REQUESTS);
			break;
		case 'd':
			g.value_len = parse_long(optarg, "-d", 0, MAX_VALUE);
			break;
		case 'r':
			g.keyspace = parse_long(optarg, "-r", 1, 1000000000L);
			break;
		case 'T':
			g.time_limit_s = parse_long(optarg, "-T", 1, 3600);
			break;
		default:
			usage();
		}
	}
	if (!g.url || optind != argc || strlen(g.url) > 900)
		usage();
	if (g.clients > g.requests)
		g.clients = g.requests;
	snprintf(url, sizeof(url), "%s%s", g.url, g.get ? "/v3/kv/range" : "/v3/kv/put");
	g.rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() ^ now_ns();

	raw = malloc((size_t)g.value_len + 1);
	g.value_b64 = malloc(((size_t)g.value_len + 2) / 3 * 4 + 1);
	g.lat_ns = malloc((size_t)g.requests * sizeof(*g.lat_ns));
	slots = calloc((size_t)g.clients, sizeof(*slots));
	if (!raw || !g.value_b64 || !g.lat_ns || !slots) {
		fprintf(stderr, "etcd_put: out of memory\n");
		return 1;
	}
	memset(raw, 'x', (size_t)g.value_len);
	base64(raw, (size_t)g.value_len, g.value_b64);
	free(raw);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(multi = curl_multi_init())) {
		fprintf(stderr, "etcd_put: libcurl does not initialise\n");
		return 1;
	}
	/* One connection per client and no more: the same shape as redis-benchmark -c. */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, g.clients);
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, g.clients);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);

	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	for (long i = 0; i < g.clients; i++) {
		struct slot *s = &slots[i];

		s->body = malloc(strlen(g.value_b64) + 128);
		s->easy = curl_easy_init();
		if (!s->body || !s->easy) {
			fprintf(stderr, "etcd_put: out of memory\n");
			return 1;
		}
		curl_easy_setopt(s->easy, CURLOPT_URL, url);
		curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
		curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
		curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 10000L);
		curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_reply);
		curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
		curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
	}

	t0 = now_ns();
	deadline = t0 + (uint64_t)g.time_limit_s * 1000000000u;
	for (long i = 0; i < g.clients; i++) {
		prepare(&slots[i]);
		curl_multi_add_handle(multi, slots[i].easy);
	}
	for (int running = 1; running > 0 || g.started < g.requests;) {
		CURLMsg *m;
		int left;

		if (curl_multi_perform(multi, &running) != CURLM_OK) {
			fprintf(stderr, "etcd_put: curl_multi_perform failed\n");
			return 1;
		}
		while ((m = curl_multi_info_read(multi, &left))) {
			struct slot *s;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			finish(s, m->data.result);
			curl_multi_remove_handle(multi, s->easy);
			if (g.started < g.requests && g.failed == 0) {
				prepare(s);
				curl_multi_add_handle(multi, s->easy);
				running++;
			}
		}
		if (g.failed)
			break;
		if (now_ns() > deadline) {
			fprintf(stderr,
				"etcd_put: time limit of %lds reached after %ld of %ld requests\n",
				g.time_limit_s, g.done, g.requests);
			return 1;
		}
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	t1 = now_ns();
	if (g.failed) {
		fprintf(stderr, "etcd_put: %ld failed request(s); first: %s\n", g.failed,
			g.first_error);
		return 1;
	}

	qsort(g.lat_ns, (size_t)g.done, sizeof(*g.lat_ns), cmp_u64);
	for (long i = 0; i < g.done; i++)
		sum += (double)g.lat_ns[i];
	printf("\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\","
	       "\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n");
	printf("\"%s\",\"%.2f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\",\"%.3f\"\n",
	       g.get ? "RANGE" : "PUT", (double)g.done / ((double)(t1 - t0) / 1e9),
	       sum / (double)g.done / 1e6, (double)g.lat_ns[0] / 1e6, pct_ms(0.50), pct_ms(0.95),
	       pct_ms(0.99), (double)g.lat_ns[g.done - 1] / 1e6);

	for (long i = 0; i < g.clients; i++) {
		curl_multi_remove_handle(multi, slots[i].easy);
		curl_easy_cleanup(slots[i].easy);
		free(slots[i].body);
	}
	curl_slist_free_all(hdrs);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	free(slots);
	free(g.lat_ns);
	free(g.value_b64);
	return 0;
}
