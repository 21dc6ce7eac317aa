/* teemsd's configuration (docs/OPERATIONS.md is the reference for every setting).
 *
 * Sources, later ones win: built-in defaults, the file named by --config, then --flags.
 * File format (one setting per line, UTF-8/ASCII text):
 *     # comment            (a line whose first non-blank character is '#' or ';')
 *     key = value          (blanks around key and value are dropped; the value may be
 *                           wrapped in double quotes, which are removed; no escapes)
 * Every key is also a flag: --key=value or --key value, with '-', '_' and '.' interchangeable
 * (--replica-id 2, --t_op=500ms, clock.verify = counter). A key may appear only once in a file.
 *
 * Peers: `peers = 0@127.0.0.1:7000, 1@127.0.0.1:7001, 2@[::1]:7002`; N is the number of
 * peers, ids must be exactly 0..N-1, and the replica's own id must be among them.
 * Durations take a unit: us, ms, s, m (`500ms`, `2s`). Sizes take an optional unit:
 * B, KiB, MiB, GiB (also k/K, m/M, g/G meaning the same powers of 1024).
 *
 * Every refusal is TEEMS_ECONFIG with a message that names the setting and the value, e.g.
 *   config: teemsd.conf:4: sync = "sometimes": must be always, rr or none
 *   config: f = 3: N=3 does not fit F=3, M_R=0: N must be max(M_R, F) + F + 1 = 7
 * File existence (data_dir, TLS files, operator_key) is checked by the daemon at startup,
 * not here: this module is pure (no I/O except config_load_file reading the file). */
#ifndef TEEMS_SERVER_CONFIG_H
#define TEEMS_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/quorum.h"

#define CONFIG_MAX_PATH 1024
#define CONFIG_MAX_HOST 256
#define CONFIG_CLUSTER_ID_LEN 16 /* bytes; 32 hex digits in the file */

enum config_engine { CONFIG_ENGINE_PAXOS, CONFIG_ENGINE_ABD };
enum config_sync { CONFIG_SYNC_ALWAYS, CONFIG_SYNC_RR, CONFIG_SYNC_NONE };
enum config_recovery { CONFIG_RECOVERY_AUTO, CONFIG_RECOVERY_OPERATOR };
enum config_clock_verify { CONFIG_CLOCK_VERIFY_MONOTONIC, CONFIG_CLOCK_VERIFY_COUNTER };

struct config_addr {
	char host[CONFIG_MAX_HOST]; /* a name or an address; IPv6 without brackets */
	uint16_t port;
};

struct config_peer {
	unsigned id;
	struct config_addr addr;
};

struct teems_config {
	unsigned replica_id;
	struct config_peer peers[QUORUM_MAX_REPLICAS];
	unsigned n_peers; /* N */
	unsigned f, m_r;
	enum config_engine engine;
	char data_dir[CONFIG_MAX_PATH];
	enum config_sync sync;
	uint64_t t_op_us, t_lease_us, t_cfg_us;
	double rho;
	/* The trusted clock's verifiers (DESIGN.md section 8, src/tee/tee.h "Trusted clock"): the
	 * host monotonic clock always; with counter also a spinning counter thread (one core),
	 * calibrated at its fastest rate times 1 + clock_counter_margin. */
	enum config_clock_verify clock_verify;
	double clock_counter_margin;
	enum config_recovery recovery;
	char operator_key[CONFIG_MAX_PATH]; /* public key; needed with recovery = operator */
	struct config_addr listen;	    /* RESP clients */
	char tls_cert[CONFIG_MAX_PATH], tls_key[CONFIG_MAX_PATH], tls_ca[CONFIG_MAX_PATH];
	/* The cluster this replica belongs to: bound into sealing keys, quotes and RA-TLS
	 * certificates, so replicas of two clusters on one platform never accept each other. */
	uint8_t cluster_id[CONFIG_CLUSTER_ID_LEN];
	/* sim platform: directory of the fused secret; "" means $TEEMS_SIM_DIR, else
	 * ~/.local/share/teems/sim (tee_options.platform_dir = NULL). */
	char platform_dir[CONFIG_MAX_PATH];
	bool client_tls; /* TLS for RESP clients; off only when `listen` is loopback */
	/* This replica's sealed service-CA key; "" means DATA_DIR/service-ca.sealed
	 * (config_service_ca_sealed gives the effective path). */
	char service_ca_sealed[CONFIG_MAX_PATH];
	/* subjectAltNames of the client certificate, comma-separated; "" means the listen host,
	 * 127.0.0.1 and localhost (config_tls_names gives the effective list). */
	char tls_names[CONFIG_MAX_PATH];
	/* RESP limits (net/resp.h) */
	uint64_t max_args, max_bulk, max_inline, max_request;
	/* Snapshots (docs/OPERATIONS.md, "Snapshots"): one is taken once this many slots were
	 * applied since the last one, or once this many WAL bytes were appended since it,
	 * whichever comes first; 0 turns that trigger off (both 0: never). */
	uint64_t snapshot_every, snapshot_bytes;
	/* WAL segment size (the rollover threshold): compaction deletes whole segments, so after a
	 * snapshot the WAL keeps about one segment more than the records after it. */
	uint64_t wal_segment_bytes;
	struct quorum quorum; /* filled by config_validate */
};

/* The defaults: a single loopback replica (N=1, F=0, M_R=0), paxos, sync rr, plaintext. */
void config_defaults(struct teems_config *c);

/* Sets one setting from its text. key accepts '-' for '_'. origin (may be NULL) prefixes the
 * message ("teemsd.conf:4", "--sync"). Errors: TEEMS_ECONFIG (unknown key, bad value). */
int config_set(struct teems_config *c, const char *key, const char *value, const char *origin,
	       char *errbuf);

/* Parses a whole file's text (len bytes, need not be NUL-terminated). name is used in
 * messages. On error c may hold some of the file's settings. Errors: TEEMS_ECONFIG. */
int config_parse_text(struct teems_config *c, const char *text, size_t len, const char *name,
		      char *errbuf);

/* Reads path and parses it. Errors: TEEMS_EIO (cannot read: the message says why),
 * TEEMS_ECONFIG. */
int config_load_file(struct teems_config *c, const char *path, char *errbuf);

/* Applies argv[1..argc) on top of c: --config FILE is loaded first wherever it appears, then
 * every other flag in order. Does not validate. Errors: TEEMS_ECONFIG, TEEMS_EIO. */
int config_parse_args(struct teems_config *c, int argc, char *const argv[], char *errbuf);

/* The rules that involve several settings: N/F/M_R (quorum_init), peer ids exactly 0..N-1 and
 * addresses distinct, replica_id among the peers, TLS files all set or all empty, plaintext
 * clients (client_tls = off) only when `listen` is loopback, operator_key with
 * recovery = operator, limits consistent. Peer channels are RA-TLS (src/net/tls.h) and need no
 * files; teemsd runs them in plaintext only in the development mode (client_tls = off and every
 * address loopback, src/server/teemsd.c). Fills c->quorum. Errors: TEEMS_ECONFIG. */
int config_validate(struct teems_config *c, char *errbuf);

/* The effective service_ca_sealed path (the setting, or DATA_DIR/service-ca.sealed) into
 * out[0..len). Returns false if it does not fit. */
bool config_service_ca_sealed(const struct teems_config *c, char *out, size_t len);
/* The effective tls_names (the setting, or "<listen host>,127.0.0.1,localhost" without
 * duplicates) into out[0..len), comma-separated. Returns false if it does not fit. */
bool config_tls_names(const struct teems_config *c, char *out, size_t len);

/* The peer entry of c->replica_id, or NULL. */
const struct config_peer *config_self(const struct teems_config *c);

/* True for "localhost", 127.0.0.0/8 and ::1. */
bool config_is_loopback(const char *host);

/* Parsers shared with tests: "500ms" -> 500000; "64MiB" -> 67108864. Return false if bad. */
bool config_parse_duration(const char *s, uint64_t *us);
bool config_parse_size(const char *s, uint64_t *bytes);

/* Prints every setting with its flag, default and range (for --help). */
void config_usage(FILE *out);

#endif
