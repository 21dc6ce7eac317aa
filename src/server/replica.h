/* One replica's engine inside teemsd (DESIGN.md section 1: wiring core + store + kv): it owns
 * the protocol core (RR-Paxos), the sealed WAL, the key-value state machine and the platform
 * handle, and turns client commands and peer frames into protocol inputs and the core's ready
 * batches into WAL appends, peer frames and client replies.
 *
 * It does no socket I/O and starts no threads: the shell (teemsd.c, the libuv loop) feeds it
 * and carries out what it asks through struct replica_io. Every function runs on the loop
 * thread except replica_sync_run, which the shell runs on a worker thread (uv_queue_work) so the
 * loop never waits for the disk.
 *
 *	replica_open(cfg, &io, &r, err);
 *	every ~1 ms:              replica_tick(r);
 *	a whole peer frame:       replica_peer_frame(r, from, bytes, len);
 *	a parsed RESP command:    replica_client_as(r, conn, req, user, argv, argc, proto);
 *	io.want_sync() was called and no job is running:
 *		replica_sync_prepare(r, &job);        // loop thread
 *		replica_sync_run(&job);               // worker thread
 *		replica_sync_done(r, &job);           // loop thread, after the worker finished
 *
 * Replies: every replica_client call is answered by exactly one io.reply with the same
 * (conn, req), now or later, unless replica_client_gone(conn) was called first. Replies to
 * one connection may come out of order (a write waits for its commit, a later read may not);
 * the shell puts them back in request order (req increases per connection). The shell also
 * holds a read back while an earlier write of the same connection is unanswered, so a
 * pipelined SET k v; GET k sees its own write, as Redis clients expect (linearizability alone
 * would allow the GET to be ordered first).
 *
 * Not thread-safe except as described for the sync job. */
#ifndef TEEMS_SERVER_REPLICA_H
#define TEEMS_SERVER_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/resp.h"
#include "server/config.h"

struct replica;

struct replica_io {
	void *ctx;
	/* Send one encoded frame (msg_encode) to replica `to`. The bytes are borrowed for the
	 * call; the shell copies or writes them before returning. Best effort: a frame to an
	 * unreachable peer is dropped (the protocol retries). */
	void (*send)(void *ctx, uint16_t to, const uint8_t *frame, size_t len);
	/* The complete RESP reply (already encoded for the connection's protocol version) to
	 * request `req` of connection `conn`. Borrowed for the call. */
	void (*reply)(void *ctx, uint64_t conn, uint64_t req, const uint8_t *resp, size_t len);
	/* WAL records are waiting for an fsync: start a sync job when none is running. */
	void (*want_sync)(void *ctx);
	/* This incarnation must stop (a newer incarnation of this replica registered, or the
	 * engine hit an error it cannot continue after: the message says which). The shell
	 * logs `why` and exits with a non-zero status; it calls nothing else on r. */
	void (*halt)(void *ctx, const char *why);
	/* Optional (NULL: silent). One event worth a line in the log (boot, lifecycle and role
	 * changes, refused quotes), without prefix or newline: the shell adds its timestamp and
	 * r<id>. Borrowed for the call. */
	void (*log)(void *ctx, const char *line);
};

/* Opens the platform (sim) for cfg->replica_id, the WAL under cfg->data_dir (created on
 * first boot), restores the core from the WAL (a restart: a new incarnation that registers,
 * fences and recovers) or starts a member of the initial configuration on first boot.
 * Errors: TEEMS_EIO, TEEMS_ECORRUPT (the WAL does not authenticate, or a record of it does not
 * restore), TEEMS_ECONFIG (cfg does not validate), TEEMS_ECRYPTO, TEEMS_ENOMEM,
 * TEEMS_ECLOCK (the trusted clock cannot start), TEEMS_EINVAL (a callback missing), with the
 * reason in errbuf. cfg is copied. */
int replica_open(const struct teems_config *cfg, const struct replica_io *io, struct replica **out,
		 char *errbuf);
/* Closes the WAL (no sync: a clean stop is a crash, as far as the protocol knows). Not while a
 * sync job is between replica_sync_prepare and the end of replica_sync_run. r may be NULL. */
void replica_close(struct replica *r);

/* Timers: elections, heartbeats, retries, the periodic group fsync of sync=rr. */
void replica_tick(struct replica *r);

/* One whole frame received from the peer connection of replica `from` (the identity the
 * channel proved). Bad frames are counted and dropped, never fatal. */
void replica_peer_frame(struct replica *r, uint16_t from, const uint8_t *frame, size_t len);

/* A parsed RESP command (argv borrowed for the call) on connection `conn`, request number
 * `req`, to be answered in RESP `proto` (2 or 3), from a connection that never authenticated
 * (replica_client_as below, user NULL). Connection-level commands (HELLO, QUIT, SELECT, ...)
 * are the shell's; AUTH (and HELLO's AUTH, as "AUTH user pass") and everything else come
 * here. */
void replica_client(struct replica *r, uint64_t conn, uint64_t req, const struct resp_arg *argv,
		    size_t argc, int proto);
/* replica_client, on behalf of `user`: the name the connection authenticated as (borrowed for
 * the call), or NULL if it never did; replica_client(...) is replica_client_as(..., NULL, ...).
 * Users and permissions (kv.h, "Users, permissions and policies"; docs/OPERATIONS.md):
 *   - user NULL: the connection acts as "default" while the applied state has "default" on and
 *     nopass; otherwise every command is answered "-NOAUTH Authentication required.";
 *   - a command for the state machine carries the user name (cmd_request_as; KV_USER_ANON for
 *     a connection that never authenticated) and is checked there: a write when it is applied
 *     (on every replica alike), a read where it runs (after its read barrier, possibly at the
 *     leader a follower forwarded it to): the user must exist and be on (else NOAUTH: deleted
 *     or disabled since it authenticated), hold the command's category (else "-NOPERM this
 *     user has no permissions to run the '<cmd>' command"), and reach its keys (patterns and
 *     policies). This replica's own state is not asked, as it may lag. A forwarded request
 *     carries the name too; the leader trusts the attested forwarding replica's word.
 *   - local commands (PING, INFO, TEEMS.STATUS) are checked on this replica's state;
 *   - AUTH [user] pass is answered here too, as a linearizable read of the user table (so a
 *     user created a moment ago on the leader is known to a lagging follower): "+OK" when the
 *     credentials are good, else the Redis error. The shell remembers the user on "+OK".
 *   - ACL WHOAMI is answered from `user`. */
void replica_client_as(struct replica *r, uint64_t conn, uint64_t req, const char *user,
		       const struct resp_arg *argv, size_t argc, int proto);
/* True while connections that never authenticated act as "default" (it is on and nopass in
 * the applied state): the shell's own commands (SELECT, CLIENT, ...) need AUTH otherwise. */
bool replica_default_open(struct replica *r);
/* True: this engine has users (the shell sends AUTH here). The shell links weak fallbacks of
 * these three (and replica_flush) for stand-in engines without users (tests/system/fake_replica.c).
 */
bool replica_has_users(struct replica *r);
/* The connection closed: drop its pending replies (their commands may still commit). */
void replica_client_gone(struct replica *r, uint64_t conn);
/* Ends a batch of replica_client_as calls: the reads that ran on the leader lease during it
 * are confirmed with one clock reading and answered (or, if the lease ended, go again through
 * the read index). Until then their replies are held. The shell calls it before it writes out
 * replies, once per event-loop turn; a caller that never does gets no lease-read replies. */
void replica_flush(struct replica *r);

/* The fsync job. prepare (loop thread) says what the job covers; run (worker thread) does the
 * fsync and, when the job carries a snapshot, seals it and then compacts the WAL (it touches
 * only the WAL and r's snapshot job fields); done (loop thread) reports the result to the core.
 * A failed fsync is fatal (io.halt): after a failed fsync nothing is known about the file. */
struct replica_sync {
	struct replica *r;
	uint64_t upto; /* private */
	int rc;	       /* private */
	char err[256]; /* private */
};
/* Returns false when nothing needs syncing (then there is no job to run). */
bool replica_sync_prepare(struct replica *r, struct replica_sync *job);
void replica_sync_run(struct replica_sync *job);
void replica_sync_done(struct replica *r, struct replica_sync *job);

/* The client address this replica listens on (for INFO), and what the shell tells the engine
 * about its channels, for TEEMS.STATUS. */
struct replica_net_stats {
	uint64_t peers_connected;
	uint64_t clients_connected;
	uint64_t bad_frames; /* frames refused by the channel (not by the engine) */
};
void replica_set_net_stats(struct replica *r, const struct replica_net_stats *s);

/* The platform handle the engine opened (owned by r, valid until replica_close), and this
 * incarnation's public key (the key REGISTER binds, DESIGN.md section 4): what the shell needs
 * for the attested peer channel (tls_ctx_peer) and the service certificate. */
struct tee;
struct tee *replica_tee(struct replica *r);
void replica_incarnation_key(struct replica *r, uint8_t out[32]);

#endif
