/* Internals shared by the files of the `teems` command-line tool (src/cli/teems*.c).
 *
 * Exit codes (the same for every command; README and `teems --help`):
 *   0 ok, 1 the operation failed (an -ERR reply, a lost compare-and-set, a refused cluster
 *   operation), 2 usage error, 3 the service cannot be reached.
 * Messages for humans go to stderr and start with "teems: "; results go to stdout. */
#ifndef TEEMS_CLI_TEEMS_CLI_H
#define TEEMS_CLI_TEEMS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/conn.h"

enum cli_exit {
	CLI_OK = 0,
	CLI_FAILED = 1,
	CLI_USAGE = 2,
	CLI_UNREACHABLE = 3,
};

#define CLI_DEFAULT_DIR "teems-cluster"
#define CLI_MAX_REPLICAS 16
#define CLI_HOST_LEN 256
#define CLI_PATH_LEN 4096

void cli_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line of DIR/cluster.conf (docs/OPERATIONS.md, "Local clusters"):
 * "<id> <pid> <client host:port> <peer host:port>"; pid 0 when stopped. */
struct cli_replica {
	unsigned id;
	pid_t pid;
	char client_host[CLI_HOST_LEN];
	uint16_t client_port;
	char peer_host[CLI_HOST_LEN];
	uint16_t peer_port;
};

struct cli_cluster {
	char dir[CLI_PATH_LEN]; /* as given */
	char ca[CLI_PATH_LEN];	/* DIR/ca.pem */
	struct cli_replica r[CLI_MAX_REPLICAS];
	unsigned n;
};

/* Reads DIR/cluster.conf. Returns 0, or -1 with a message in err (TEEMS_ERRBUF_LEN) when the
 * file is missing or malformed. */
int cli_cluster_load(const char *dir, struct cli_cluster *cl, char *err);

/* The pid in DIR/r<id>/teemsd.pid if that process is alive and is a teemsd; else 0. */
pid_t cli_replica_pid(const char *dir, unsigned id);

/* "host:port" parsing (IPv6 in brackets). Returns false if malformed. */
bool cli_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port);

/* Where to send a command: the replicas of a cluster directory, or one server. */
struct cli_target {
	bool from_dir;
	struct cli_cluster cluster; /* from_dir */
	char host[CLI_HOST_LEN];    /* !from_dir */
	uint16_t port;
	const char *cacert; /* NULL: plaintext */
	unsigned timeout_ms;
};

/* The credentials of --user/--pass (or TEEMS_USER/TEEMS_PASS) into o; NULL when not given. */
void cli_credentials(struct conn_options *o);
/* Connection options for replica i of the target (one replica when !from_dir). */
void cli_target_options(const struct cli_target *t, unsigned i, struct conn_options *o);
unsigned cli_target_count(const struct cli_target *t);

/* `teems cluster ...`: argv[0] is "cluster". Returns an exit code. */
int cli_cluster_main(int argc, char **argv, const char *dir);

/* The target options given before the command, as main parsed them (NULL / 0 / false: not
 * given), for commands that parse their own (`teems obj`). */
struct cli_globals {
	const char *dir, *host, *cacert;
	unsigned long port, timeout_ms;
	bool plaintext;
};

/* `teems obj ...` (teems_obj.c): argv[0] is "obj". Returns an exit code. */
int cli_obj_main(int argc, char **argv, const struct cli_globals *g);

#endif
