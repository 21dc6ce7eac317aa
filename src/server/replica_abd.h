/* engine = abd inside the replica engine (DESIGN.md section 6; docs/ABD.md; replica.h): the
 * RR-ABD core (src/core/abd.h) as the data plane beside the RR-Paxos core, which stays the
 * control plane (REGISTER of incarnations, fence, epoch restart) and commits no client command.
 *
 * This is the simulator's ABD shell (tests/sim/sim_abd.c) on the daemon's real parts:
 *   - the ABD core has its own sealed WAL in <data_dir>/abd (its own sealing key, "abd-wal"),
 *     synced by the same fsync job as the Paxos WAL;
 *   - after every Paxos step the applied registration vector goes to abd_set_config; a
 *     restarted incarnation calls abd_begin_recovery once Paxos has it registered and fenced
 *     (lifecycle RECOVERING or FRESH); an epoch restart that names this incarnation continues
 *     the data plane under the new registration (abd_set_registration);
 *   - the configuration lease is src/core/abd_lease.h, as in the simulator: after every Paxos
 *     step and tick the applied and accepted configuration indexes and the fence go to
 *     abd_lease_configure, a renewal leaves for every peer when due (MSG_LEASE_RENEW on the
 *     peer channel), rp_abd_frame answers peers' renewals and counts their replies, and the
 *     result goes to abd_set_lease;
 *   - GET, SET key value and DEL key are coordinated at the replica the client talks to; no
 *     forwarding. Every other key-value command is refused with
 *     "ERR '<cmd>' is not supported with engine = abd" (rp_abd_client says why for each).
 *
 * Everything here runs on the loop thread except rp_abd_sync_run (the worker, inside
 * replica_sync_run), which touches only the ABD WAL and the job fields. */
#ifndef TEEMS_SERVER_REPLICA_ABD_H
#define TEEMS_SERVER_REPLICA_ABD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "net/commands.h"
#include "net/resp.h"

struct replica;

/* After the Paxos core is open (open_core): the ABD core, its WAL restored from
 * <data_dir>/abd. Sets r->abd. Errors: TEEMS_EIO, TEEMS_ECORRUPT, TEEMS_ENOMEM,
 * TEEMS_ECRYPTO, TEEMS_EINVAL, with the reason in errbuf. */
int rp_abd_open(struct replica *r, char *errbuf);
/* r->abd may be NULL. Not while a sync job runs (replica_close's rule). */
void rp_abd_close(struct replica *r);

/* A decoded peer frame: true if it was the data plane's (MSG_ABD_*, or the configuration
 * lease's MSG_LEASE_RENEW and MSG_LEASE_REPLY), which it consumed. */
bool rp_abd_frame(struct replica *r, const struct msg *m);
/* After the Paxos core stepped on message m: the glue and the configuration lease. */
void rp_abd_after_paxos(struct replica *r, const struct msg *m);
/* Every replica_tick, after the Paxos tick: glue, the ABD tick, retries, the group fsync. */
void rp_abd_tick(struct replica *r);

/* A checked client command (after the shell's local commands and the permission gate). True:
 * answered (now or later, exactly once, through io.reply); false: not a data command, the
 * Paxos path serves it (AUTH and the read-only ACL commands). user: who the command runs as
 * (KV_USER_ANON for a connection that never authenticated), after the local gate. */
bool rp_abd_client(struct replica *r, uint64_t conn, uint64_t req, const char *user,
		   const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		   int proto);
void rp_abd_client_gone(struct replica *r, uint64_t conn);

/* The sync job (replica.h). wanted: records wait for an fsync. prepare (loop thread) closes
 * the ABD WAL's group; run (worker) fsyncs it; done (loop) reports the result to the core. */
bool rp_abd_sync_wanted(const struct replica *r);
void rp_abd_sync_prepare(struct replica *r);
void rp_abd_sync_run(struct replica *r);
void rp_abd_sync_done(struct replica *r);

/* TEEMS.STATUS lines ("key:value\r\n"), valid until the next call. */
const char *rp_abd_status(struct replica *r);

#endif
