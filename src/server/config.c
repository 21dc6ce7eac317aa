/* teemsd configuration: defaults, file, flags, validation (config.h). One table drives the
 * parser, the --help text and, by hand, docs/OPERATIONS.md: keep the three in step. */
#include "server/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "teems/err.h"

enum kind {
	K_UINT,
	K_U64,
	K_DURATION,
	K_DURATION_OFF, /* a K_DURATION, or 0 (with or without a unit) or "off" for off */
	K_SIZE,
	K_FRACTION, /* a number in (0, max / 1000) */
	K_ENUM,
	K_PATH,
	K_ADDR,
	K_PEERS,
	K_HEX16, /* exactly 32 hex digits into 16 bytes */
	K_BOOL,	 /* on | off */
	K_NAMES, /* comma list of DNS names or IP addresses */
};

struct setting {
	const char *name;
	enum kind kind;
	size_t off;
	uint64_t min, max;	  /* K_UINT, K_U64, K_DURATION (us), K_SIZE; K_FRACTION */
	const char *const *words; /* K_ENUM, NULL-terminated; the value is the index */
	const char *enum_msg;	  /* "must be paxos or abd" */
	const char *def;	  /* default, as text */
	const char *help;
};

static const char *const engines[] = {"paxos", "abd", NULL};
static const char *const syncs[] = {"always", "rr", "none", NULL};
static const char *const recoveries[] = {"auto", "operator", NULL};
static const char *const clock_verifies[] = {"monotonic", "counter", NULL};

#define OFF(f) offsetof(struct teems_config, f)
#define MS 1000ull
#define SEC 1000000ull
#define MIB (1ull << 20)

static const struct setting settings[] = {
	{"replica_id", K_UINT, OFF(replica_id), 0, QUORUM_MAX_REPLICAS - 1, NULL, NULL, "0",
	 "this replica's id, one of the peers' ids"},
	{"peers", K_PEERS, OFF(peers), 0, 0, NULL, NULL, "0@127.0.0.1:7000",
	 "every replica as id@host:port, comma-separated; N is their number"},
	{"f", K_UINT, OFF(f), 0, QUORUM_MAX_F, NULL, NULL, "0",
	 "F: most replicas unreachable at once"},
	{"m_r", K_UINT, OFF(m_r), 0, QUORUM_MAX_MR, NULL, NULL, "0",
	 "M_R: most replicas rolled back or forked at once"},
	{"engine", K_ENUM, OFF(engine), 0, 0, engines, "must be paxos or abd", "paxos",
	 "replication engine for keys"},
	{"data_dir", K_PATH, OFF(data_dir), 0, 0, NULL, NULL, "teems-data",
	 "directory of the sealed WAL and snapshots"},
	{"sync", K_ENUM, OFF(sync), 0, 0, syncs, "must be always, rr or none", "rr",
	 "sync policy (DESIGN.md section 7)"},
	{"t_op", K_DURATION, OFF(t_op_us), 1 * MS, 3600 * SEC, NULL, NULL, "2s",
	 "T_op: how long a collection of replies stays open"},
	{"t_lease", K_DURATION_OFF, OFF(t_lease_us), 1 * MS, 3600 * SEC, NULL, NULL, "2s",
	 "T_lease: leader lease; 0 turns lease reads off (every read takes the read index)"},
	{"t_cfg", K_DURATION, OFF(t_cfg_us), 1 * MS, 3600 * SEC, NULL, NULL, "5s",
	 "T_cfg: configuration lease"},
	{"rho", K_FRACTION, OFF(rho), 0, 500, NULL, NULL, "0.01",
	 "bound on the trusted timer's rate error, in (0, 0.5)"},
	{"clock_verify", K_ENUM, OFF(clock_verify), 0, 0, clock_verifies,
	 "must be monotonic or counter", "monotonic",
	 "trusted clock verifiers: monotonic (host clock), or counter (also a spinning counter "
	 "thread: costs a core)"},
	{"clock_counter_margin", K_FRACTION, OFF(clock_counter_margin), 0, 1000, NULL, NULL, "0.05",
	 "clock_verify = counter: headroom over the counter's calibrated rate, in (0, 1)"},
	{"recovery", K_ENUM, OFF(recovery), 0, 0, recoveries, "must be auto or operator", "auto",
	 "full-cluster restart: automatic, or only with an operator's signature"},
	{"operator_key", K_PATH, OFF(operator_key), 0, 0, NULL, NULL, "",
	 "operator public key (PEM); required with recovery = operator"},
	{"listen", K_ADDR, OFF(listen), 0, 0, NULL, NULL, "127.0.0.1:6379",
	 "host:port for RESP clients"},
	{"tls_cert", K_PATH, OFF(tls_cert), 0, 0, NULL, NULL, "", "TLS certificate (PEM)"},
	{"tls_key", K_PATH, OFF(tls_key), 0, 0, NULL, NULL, "", "TLS private key (PEM)"},
	{"tls_ca", K_PATH, OFF(tls_ca), 0, 0, NULL, NULL, "", "CA bundle for peers (PEM)"},
	{"cluster_id", K_HEX16, OFF(cluster_id), 0, 0, NULL, NULL,
	 "00000000000000000000000000000000",
	 "this cluster's id, 32 hex digits (bound into keys, quotes, certificates)"},
	{"platform_dir", K_PATH, OFF(platform_dir), 0, 0, NULL, NULL, "",
	 "sim platform secret directory (empty: $TEEMS_SIM_DIR, else ~/.local/share/teems/sim)"},
	{"client_tls", K_BOOL, OFF(client_tls), 0, 0, NULL, NULL, "on",
	 "TLS for RESP clients, on or off (off only with a loopback listen address)"},
	{"service_ca_sealed", K_PATH, OFF(service_ca_sealed), 0, 0, NULL, NULL, "",
	 "sealed service-CA key (empty: DATA_DIR/service-ca.sealed)"},
	{"tls_names", K_NAMES, OFF(tls_names), 0, 0, NULL, NULL, "",
	 "client certificate names, comma-separated (empty: listen host, 127.0.0.1, localhost)"},
	{"max_args", K_U64, OFF(max_args), 1, 1024 * 1024, NULL, NULL, "1048576",
	 "RESP: arguments in one request"},
	{"max_bulk", K_SIZE, OFF(max_bulk), 1024, 512 * MIB, NULL, NULL, "64MiB",
	 "RESP: bytes in one argument"},
	{"max_inline", K_SIZE, OFF(max_inline), 1024, 64 * MIB, NULL, NULL, "64KiB",
	 "RESP: bytes in an inline request line"},
	{"max_request", K_SIZE, OFF(max_request), 1024, 1024 * MIB, NULL, NULL, "128MiB",
	 "RESP: bytes in one request"},
	{"snapshot_every", K_U64, OFF(snapshot_every), 0, 1ull << 40, NULL, NULL, "10000",
	 "take a snapshot after this many applied slots (0: not by slots)"},
	{"snapshot_bytes", K_SIZE, OFF(snapshot_bytes), 0, 1024 * 1024 * MIB, NULL, NULL, "64MiB",
	 "take a snapshot after this many WAL bytes (0: not by bytes)"},
	{"wal_segment_bytes", K_SIZE, OFF(wal_segment_bytes), 4096, 1024 * MIB, NULL, NULL, "64MiB",
	 "WAL segment file size (compaction deletes whole segments)"},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

/* K_ENUM settings are written through an int pointer. */
_Static_assert(sizeof(enum config_engine) == sizeof(int) &&
		       sizeof(enum config_sync) == sizeof(int) &&
		       sizeof(enum config_recovery) == sizeof(int) &&
		       sizeof(enum config_clock_verify) == sizeof(int),
	       "config enums must be int-sized");

static const struct setting *find_setting(const char *key, size_t len)
{
	char norm[40];

	if (len == 0 || len >= sizeof(norm))
		return NULL;
	for (size_t i = 0; i < len; i++) /* '.': the spelling `clock.verify` (issue 6) */
		norm[i] =
			key[i] == '-' || key[i] == '.' ? '_' : (char)tolower((unsigned char)key[i]);
	norm[len] = '\0';
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].name, norm) == 0)
			return &settings[i];
	return NULL;
}

/* Strict unsigned decimal: digits only, no sign, no blanks. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static size_t digits(const char *s)
{
	size_t n = 0;

	while (s[n] >= '0' && s[n] <= '9')
		n++;
	return n;
}

bool config_parse_duration(const char *s, uint64_t *us)
{
	static const struct {
		const char *unit;
		uint64_t mul;
	} units[] = {{"us", 1}, {"ms", MS}, {"s", SEC}, {"m", 60 * SEC}};
	size_t n = digits(s);
	uint64_t v;

	if (!parse_u64(s, n, &v))
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s + n, units[i].unit) == 0) {
			if (v > UINT64_MAX / units[i].mul)
				return false;
			*us = v * units[i].mul;
			return true;
		}
	}
	return false;
}

bool config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *unit;
		unsigned shift;
	} units[] = {{"", 0},	 {"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
		     {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30}};
	size_t n = digits(s);
	uint64_t v;

	if (!parse_u64(s, n, &v))
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s + n, units[i].unit) == 0) {
			if (v > (UINT64_MAX >> units[i].shift))
				return false;
			*bytes = v << units[i].shift;
			return true;
		}
	}
	return false;
}

bool config_is_loopback(const char *host)
{
	uint64_t octet;
	size_t n;
	const char *p;

	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0)
		return true;
	if (strncmp(host, "127.", 4) != 0)
		return false;
	p = host + 4;
	for (int i = 0; i < 3; i++) { /* three more octets: 127.a.b.c */
		n = digits(p);
		if (n == 0 || n > 3 || !parse_u64(p, n, &octet) || octet > 255)
			return false;
		p += n;
		if (i < 2) {
			if (*p != '.')
				return false;
			p++;
		}
	}
	return *p == '\0';
}

/* host:port, [v6]:port. Returns NULL or a static reason. */
static const char *parse_addr(const char *s, size_t len, struct config_addr *a)
{
	const char *colon, *host;
	size_t host_len;
	uint64_t port;

	if (len == 0)
		return "expected host:port";
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (close == NULL || (size_t)(close - s) + 1 >= len || close[1] != ':')
			return "expected [address]:port";
		host = s + 1;
		host_len = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = NULL;
		for (size_t i = len; i > 0; i--)
			if (s[i - 1] == ':') {
				colon = s + i - 1;
				break;
			}
		if (colon == NULL)
			return "expected host:port";
		host = s;
		host_len = (size_t)(colon - s);
		if (memchr(host, ':', host_len) != NULL)
			return "an IPv6 address needs brackets: [address]:port";
	}
	if (host_len == 0)
		return "empty host";
	if (host_len >= CONFIG_MAX_HOST)
		return "host name too long";
	for (size_t i = 0; i < host_len; i++)
		if (!isalnum((unsigned char)host[i]) && host[i] != '.' && host[i] != '-' &&
		    host[i] != ':' && host[i] != '_')
			return "bad character in host";
	if (!parse_u64(colon + 1, len - (size_t)(colon + 1 - s), &port) || port == 0 ||
	    port > 65535)
		return "port must be 1 to 65535";
	memcpy(a->host, host, host_len);
	a->host[host_len] = '\0';
	a->port = (uint16_t)port;
	return NULL;
}

static void trim(const char **s, size_t *len)
{
	while (*len > 0 && isspace((unsigned char)(*s)[0])) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

static int set_peers(struct teems_config *c, const char *v, const char **why, char *detail,
		     size_t detail_len)
{
	struct config_peer peers[QUORUM_MAX_REPLICAS];
	unsigned n = 0;
	const char *p = v;

	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *at, *e = p;
		size_t el = len;
		uint64_t id;

		trim(&e, &el);
		if (el == 0) {
			*why = "empty peer entry (expected id@host:port)";
			return -1;
		}
		if (n == QUORUM_MAX_REPLICAS) {
			*why = "more than 64 peers";
			return -1;
		}
		at = memchr(e, '@', el);
		if (at == NULL || !parse_u64(e, (size_t)(at - e), &id) ||
		    id >= QUORUM_MAX_REPLICAS) {
			snprintf(detail, detail_len,
				 "peer \"%.*s\": expected id@host:port with id 0 to 63",
				 (int)(el > 64 ? 64 : el), e);
			*why = detail;
			return -1;
		}
		peers[n].id = (unsigned)id;
		*why = parse_addr(at + 1, el - (size_t)(at + 1 - e), &peers[n].addr);
		if (*why != NULL) {
			snprintf(detail, detail_len, "peer \"%.*s\": %s", (int)(el > 64 ? 64 : el),
				 e, *why);
			*why = detail;
			return -1;
		}
		for (unsigned i = 0; i < n; i++) {
			if (peers[i].id == id) {
				snprintf(detail, detail_len, "peer id %u appears twice",
					 peers[n].id);
				*why = detail;
				return -1;
			}
		}
		n++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	memcpy(c->peers, peers, n * sizeof(peers[0]));
	c->n_peers = n;
	return 0;
}

/* tls_names: empty (the default list), or names separated by commas, each a DNS name (letters,
 * digits, '-', '.', a leading "*." wildcard) or an IP address (digits, '.', hex and ':'),
 * 1..253 bytes. Returns NULL or the reason (possibly in detail). */
static const char *check_names(const char *v, char *detail, size_t detail_len)
{
	const char *p = v;
	unsigned n = 0;

	if (strlen(v) >= CONFIG_MAX_PATH)
		return "too long (at most 1023 bytes)";
	if (*v == '\0')
		return NULL;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *e = p;
		size_t el = len;

		trim(&e, &el);
		if (el == 0)
			return "empty name in the list";
		if (el > 253) {
			snprintf(detail, detail_len, "name %u is longer than 253 bytes", n + 1);
			return detail;
		}
		for (size_t i = 0; i < el; i++) {
			unsigned char ch = (unsigned char)e[i];

			if (!isalnum(ch) && ch != '-' && ch != '.' && ch != ':' &&
			    !(ch == '*' && i == 0 && el > 2 && e[1] == '.')) {
				snprintf(detail, detail_len,
					 "name \"%.*s\": only letters, digits, '-', '.', ':' and a "
					 "leading \"*.\"",
					 (int)(el > 64 ? 64 : el), e);
				return detail;
			}
		}
		n++;
		if (comma == NULL)
			return NULL;
		p = comma + 1;
	}
}

static int fail_setting(char *errbuf, const char *origin, const char *key, const char *value,
			const char *why)
{
	return teems_errf(errbuf, TEEMS_ECONFIG, "config: %s%s%s = \"%.80s\": %s",
			  origin ? origin : "", origin ? ": " : "", key, value, why);
}

int config_set(struct teems_config *c, const char *key, const char *value, const char *origin,
	       char *errbuf)
{
	const struct setting *s = find_setting(key, strlen(key));
	char *base = (char *)c;
	char detail[160];
	const char *why = NULL;
	uint64_t v;

	if (s == NULL)
		return teems_errf(errbuf, TEEMS_ECONFIG, "config: %s%sunknown setting \"%.64s\"",
				  origin ? origin : "", origin ? ": " : "", key);
	switch (s->kind) {
	case K_UINT:
	case K_U64:
		if (!parse_u64(value, strlen(value), &v)) {
			why = "not a non-negative integer";
		} else if (v < s->min || v > s->max) {
			snprintf(detail, sizeof(detail), "must be %llu to %llu",
				 (unsigned long long)s->min, (unsigned long long)s->max);
			why = detail;
		} else if (s->kind == K_UINT) {
			*(unsigned *)(base + s->off) = (unsigned)v;
		} else {
			*(uint64_t *)(base + s->off) = v;
		}
		break;
	case K_DURATION:
	case K_DURATION_OFF:
		if (s->kind == K_DURATION_OFF &&
		    (strcmp(value, "0") == 0 || strcmp(value, "off") == 0)) {
			*(uint64_t *)(base + s->off) = 0;
		} else if (!config_parse_duration(value, &v)) {
			why = "not a duration (a whole number with a unit: us, ms, s or m, e.g. "
			      "500ms)";
		} else if (s->kind == K_DURATION_OFF && v == 0) {
			*(uint64_t *)(base + s->off) = 0;
		} else if (v < s->min || v > s->max) {
			why = s->kind == K_DURATION_OFF ? "must be 0 (off) or 1ms to 60m"
							: "must be 1ms to 60m";
		} else {
			*(uint64_t *)(base + s->off) = v;
		}
		break;
	case K_SIZE:
		if (!config_parse_size(value, &v)) {
			why = "not a size (a whole number with an optional unit: B, KiB, MiB, GiB)";
		} else if (v < s->min || v > s->max) {
			snprintf(detail, sizeof(detail), "must be %lluKiB to %lluMiB",
				 (unsigned long long)(s->min >> 10),
				 (unsigned long long)(s->max >> 20));
			why = detail;
		} else {
			*(uint64_t *)(base + s->off) = v;
		}
		break;
	case K_FRACTION: {
		char *end;
		double d;

		errno = 0;
		d = strtod(value, &end);
		if (value[0] == '\0' || *end != '\0' || errno != 0 ||
		    isspace((unsigned char)value[0])) {
			why = "not a number";
		} else if (!(d > 0.0 && d < (double)s->max / 1000)) { /* also refuses NaN */
			snprintf(detail, sizeof(detail), "must be in (0, %g)",
				 (double)s->max / 1000);
			why = detail;
		} else {
			*(double *)(base + s->off) = d;
		}
		break;
	}
	case K_ENUM: {
		size_t i;

		for (i = 0; s->words[i] != NULL; i++)
			if (strcmp(value, s->words[i]) == 0)
				break;
		if (s->words[i] == NULL)
			why = s->enum_msg;
		else
			*(int *)(base + s->off) = (int)i; /* the enums are int-sized, 0-based */
		break;
	}
	case K_PATH:
		if (strlen(value) >= CONFIG_MAX_PATH)
			why = "path too long (at most 1023 bytes)";
		else
			memcpy(base + s->off, value, strlen(value) + 1);
		break;
	case K_ADDR: {
		struct config_addr a;

		why = parse_addr(value, strlen(value), &a);
		if (why == NULL)
			*(struct config_addr *)(base + s->off) = a;
		break;
	}
	case K_PEERS:
		set_peers(c, value, &why, detail, sizeof(detail));
		break;
	case K_HEX16: {
		uint8_t id[CONFIG_CLUSTER_ID_LEN];

		if (strlen(value) != 2 * sizeof(id)) {
			why = "must be 32 hex digits (16 bytes)";
			break;
		}
		for (size_t i = 0; i < sizeof(id) && why == NULL; i++) {
			int hi = hex_digit_value(value[2 * i]),
			    lo = hex_digit_value(value[2 * i + 1]);

			if (hi < 0 || lo < 0)
				why = "must be 32 hex digits (16 bytes)";
			else
				id[i] = (uint8_t)(hi << 4 | lo);
		}
		if (why == NULL)
			memcpy(base + s->off, id, sizeof(id));
		break;
	}
	case K_BOOL:
		if (strcmp(value, "on") == 0)
			*(bool *)(base + s->off) = true;
		else if (strcmp(value, "off") == 0)
			*(bool *)(base + s->off) = false;
		else
			why = "must be on or off";
		break;
	case K_NAMES:
		why = check_names(value, detail, sizeof(detail));
		if (why == NULL)
			memcpy(base + s->off, value, strlen(value) + 1);
		break;
	}
	if (why != NULL)
		return fail_setting(errbuf, origin, s->name, value, why);
	return TEEMS_OK;
}

void config_defaults(struct teems_config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < N_SETTINGS; i++) {
		int rc = config_set(c, settings[i].name, settings[i].def, NULL, NULL);

		(void)rc; /* the defaults are valid: tests/unit/test_config.c checks it */
	}
}

int config_parse_text(struct teems_config *c, const char *text, size_t len, const char *name,
		      char *errbuf)
{
	bool seen[N_SETTINGS] = {false};
	size_t pos = 0;
	unsigned line_no = 0;

	while (pos < len) {
		const char *line = text + pos, *eq, *key, *val;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - line) : len - pos;
		size_t key_len, val_len;
		char origin[CONFIG_MAX_PATH + 32], keybuf[64], valbuf[4096];
		const struct setting *s;
		int rc;

		pos += line_len + (nl ? 1 : 0);
		line_no++;
		snprintf(origin, sizeof(origin), "%.1000s:%u", name ? name : "(config)", line_no);
		if (memchr(line, '\0', line_len) != NULL)
			return teems_errf(errbuf, TEEMS_ECONFIG, "config: %s: NUL byte in line",
					  origin);
		trim(&line, &line_len);
		if (line_len == 0 || line[0] == '#' || line[0] == ';')
			continue;
		if (line[0] == '[')
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "config: %s: sections are not used; write key = value "
					  "(peers = id@host:port, ...)",
					  origin);
		eq = memchr(line, '=', line_len);
		if (eq == NULL)
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "config: %s: expected key = value, got \"%.*s\"", origin,
					  (int)(line_len > 64 ? 64 : line_len), line);
		key = line;
		key_len = (size_t)(eq - line);
		val = eq + 1;
		val_len = line_len - key_len - 1;
		trim(&key, &key_len);
		trim(&val, &val_len);
		if (val_len >= 2 && val[0] == '"' && val[val_len - 1] == '"') {
			val++;
			val_len -= 2;
		}
		s = find_setting(key, key_len);
		if (s == NULL)
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "config: %s: unknown setting \"%.*s\"", origin,
					  (int)(key_len > 64 ? 64 : key_len), key);
		if (seen[s - settings])
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "config: %s: %s is set twice in this file", origin,
					  s->name);
		seen[s - settings] = true;
		if (val_len >= sizeof(valbuf))
			return teems_errf(errbuf, TEEMS_ECONFIG, "config: %s: %s: value too long",
					  origin, s->name);
		memcpy(keybuf, s->name, strlen(s->name) + 1);
		memcpy(valbuf, val, val_len);
		valbuf[val_len] = '\0';
		rc = config_set(c, keybuf, valbuf, origin, errbuf);
		if (rc != TEEMS_OK)
			return rc;
	}
	return TEEMS_OK;
}

int config_load_file(struct teems_config *c, const char *path, char *errbuf)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (f == NULL)
		return teems_errf(errbuf, TEEMS_EIO, "config: %s: %s", path, strerror(errno));
	for (;;) {
		size_t got;

		if (len == cap) {
			char *t;

			if (cap >= (1u << 20)) {
				rc = teems_errf(errbuf, TEEMS_ECONFIG,
						"config: %s: larger than 1 MiB", path);
				goto out;
			}
			cap = cap ? cap * 2 : 4096;
			t = teems_realloc(text, cap);
			if (t == NULL) {
				rc = TEEMS_ENOMEM;
				goto out;
			}
			text = t;
		}
		got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		rc = teems_errf(errbuf, TEEMS_EIO, "config: %s: read error", path);
		goto out;
	}
	rc = config_parse_text(c, text, len, path, errbuf);
out:
	teems_free(text);
	fclose(f);
	return rc;
}

int config_parse_args(struct teems_config *c, int argc, char *const argv[], char *errbuf)
{
	int rc;

	for (int pass = 0; pass < 2; pass++) {
		for (int i = 1; i < argc; i++) {
			const char *a = argv[i], *eq, *val;
			char key[64], origin[80];
			size_t key_len;
			bool is_config;

			if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
				return teems_errf(errbuf, TEEMS_ECONFIG,
						  "config: unexpected argument \"%.64s\" (settings "
						  "are --key=value or --key value)",
						  a);
			a += 2;
			eq = strchr(a, '=');
			key_len = eq ? (size_t)(eq - a) : strlen(a);
			if (eq != NULL) {
				val = eq + 1;
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				return teems_errf(errbuf, TEEMS_ECONFIG,
						  "config: --%.64s needs a value", a);
			}
			if (key_len >= sizeof(key))
				return teems_errf(errbuf, TEEMS_ECONFIG,
						  "config: unknown flag --%.64s", a);
			memcpy(key, a, key_len);
			key[key_len] = '\0';
			is_config = strcmp(key, "config") == 0;
			if (pass == 0 && is_config) {
				rc = config_load_file(c, val, errbuf);
				if (rc != TEEMS_OK)
					return rc;
			} else if (pass == 1 && !is_config) {
				snprintf(origin, sizeof(origin), "--%s", key);
				rc = config_set(c, key, val, origin, errbuf);
				if (rc != TEEMS_OK)
					return rc;
			}
		}
	}
	return TEEMS_OK;
}

bool config_service_ca_sealed(const struct teems_config *c, char *out, size_t len)
{
	int n;

	if (c->service_ca_sealed[0] != '\0')
		n = snprintf(out, len, "%s", c->service_ca_sealed);
	else
		n = snprintf(out, len, "%s/service-ca.sealed", c->data_dir);
	return n >= 0 && (size_t)n < len;
}

bool config_tls_names(const struct teems_config *c, char *out, size_t len)
{
	const char *extra[2] = {"127.0.0.1", "localhost"};
	size_t used;
	int n;

	if (c->tls_names[0] != '\0') {
		n = snprintf(out, len, "%s", c->tls_names);
		return n >= 0 && (size_t)n < len;
	}
	n = snprintf(out, len, "%s", c->listen.host);
	if (n < 0 || (size_t)n >= len)
		return false;
	used = (size_t)n;
	for (int i = 0; i < 2; i++) {
		if (strcasecmp(c->listen.host, extra[i]) == 0)
			continue;
		n = snprintf(out + used, len - used, ",%s", extra[i]);
		if (n < 0 || (size_t)n >= len - used)
			return false;
		used += (size_t)n;
	}
	return true;
}

const struct config_peer *config_self(const struct teems_config *c)
{
	for (unsigned i = 0; i < c->n_peers; i++)
		if (c->peers[i].id == c->replica_id)
			return &c->peers[i];
	return NULL;
}

static bool same_addr(const struct config_addr *a, const struct config_addr *b)
{
	return a->port == b->port && strcasecmp(a->host, b->host) == 0;
}

int config_validate(struct teems_config *c, char *errbuf)
{
	char qerr[TEEMS_ERRBUF_LEN];
	int tls_set = (c->tls_cert[0] != '\0') + (c->tls_key[0] != '\0') + (c->tls_ca[0] != '\0');
	const struct config_peer *self;

	if (c->n_peers == 0)
		return teems_errf(errbuf, TEEMS_ECONFIG, "config: peers: no peers");
	if (quorum_init(&c->quorum, c->n_peers, c->f, c->m_r, qerr) != TEEMS_OK)
		return teems_errf(errbuf, TEEMS_ECONFIG, "config: f = %u, m_r = %u, %u peers: %s",
				  c->f, c->m_r, c->n_peers, qerr);
	for (unsigned i = 0; i < c->n_peers; i++) {
		if (c->peers[i].id >= c->n_peers)
			return teems_errf(errbuf, TEEMS_ECONFIG,
					  "config: peers: id %u with %u peers: ids must be 0 to %u",
					  c->peers[i].id, c->n_peers, c->n_peers - 1);
		for (unsigned j = 0; j < i; j++)
			if (same_addr(&c->peers[i].addr, &c->peers[j].addr))
				return teems_errf(errbuf, TEEMS_ECONFIG,
						  "config: peers: %s:%u is the address of both "
						  "%u and %u",
						  c->peers[i].addr.host, c->peers[i].addr.port,
						  c->peers[j].id, c->peers[i].id);
	}
	self = config_self(c);
	if (self == NULL)
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: replica_id = %u: not among the peers' ids (0 to %u)",
				  c->replica_id, c->n_peers - 1);
	if (same_addr(&self->addr, &c->listen))
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: listen = \"%s:%u\": also this replica's peer address",
				  c->listen.host, c->listen.port);
	if (tls_set != 0 && tls_set != 3)
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: tls_%s: tls_cert, tls_key and tls_ca go together: set "
				  "all three or none",
				  c->tls_cert[0] == '\0'  ? "cert"
				  : c->tls_key[0] == '\0' ? "key"
							  : "ca");
	/* Peer channels are RA-TLS whatever the addresses (src/net/tls.h); only the client
	 * channel can be plaintext, and then only on loopback. */
	if (!c->client_tls && !config_is_loopback(c->listen.host))
		return teems_errf(
			errbuf, TEEMS_ECONFIG,
			"config: client_tls = \"off\": listen = \"%s:%u\" is not loopback; "
			"plaintext clients are allowed on loopback only",
			c->listen.host, c->listen.port);
	if (c->recovery == CONFIG_RECOVERY_OPERATOR && c->operator_key[0] == '\0')
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: recovery = \"operator\": needs operator_key");
	if (c->max_bulk > c->max_request)
		return teems_errf(errbuf, TEEMS_ECONFIG,
				  "config: max_bulk = %llu: larger than max_request = %llu",
				  (unsigned long long)c->max_bulk,
				  (unsigned long long)c->max_request);
	if (c->data_dir[0] == '\0')
		return teems_errf(errbuf, TEEMS_ECONFIG, "config: data_dir = \"\": must be set");
	return TEEMS_OK;
}

void config_usage(FILE *out)
{
	fprintf(out, "teemsd settings (file: key = value; flag: --key value):\n");
	for (size_t i = 0; i < N_SETTINGS; i++)
		fprintf(out, "  --%-13s %s (default: %s)\n", settings[i].name, settings[i].help,
			settings[i].def[0] ? settings[i].def : "none");
	fprintf(out, "  --%-13s read settings from FILE first\n", "config");
}
