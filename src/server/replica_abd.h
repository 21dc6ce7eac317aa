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
 *   - its WAL is compacted with sealed snapshots in the same directory (docs/ABD.md "WAL
 *     compaction"; the order is replica_snap.c's): once snapshot_every records or
 *     snapshot_bytes bytes were appended since the last one, the loop thread, between two
 *     steps (every persist record of the core appended), asks the core for one record per
 *     register (abd_snapshot_records) bound to the WAL position after the last appended
 *     record; the next sync job makes the WAL durable at least to it, seals the snapshot
 *     (its own key, "abd-snap") and only then compacts the WAL up to it. A restart loads the
 *     snapshot, then the WAL records after it (the snapshot's position as the anchor).
 *
 * Everything here runs on the loop thread except rp_abd_sync_run (the worker, inside
 * replica_sync_run), which touches only the ABD WAL, the snapshot file and the job fields. */
#ifndef TEEMS_SERVER_REPLICA_ABD_H
#define TEEMS_SERVER_REPLICA_ABD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "net/commands.h"
#include "net/resp.h"
#include "store/wal.h"
#include "teems/err.h"

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

/* ---- the data plane's storage, on any VFS (the replica uses these; the tests drive them on
 * memvfs with power losses) ---- */

struct abd;
struct store_vfs;
struct store_wal;

/* Where the data plane's files are and the keys that seal them (borrowed). */
struct rp_abd_disk {
	struct store_vfs *vfs;
	const char *dir; /* <data_dir>/abd: the wal-* segments and the snapshot; must exist */
	uint64_t replica_id;
	const uint8_t *wal_key;	 /* tee_seal_key("abd-wal") */
	const uint8_t *snap_key; /* tee_seal_key("abd-snap"): never the WAL's */
	uint64_t segment_size;	 /* 0: the WAL's default */
};

/* The snapshot payload of core a (abd_snapshot_records; format in replica_abd.c). Call it
 * between two steps, every persist record appended. *payload (teems_malloc, at least one byte)
 * belongs to the caller; *records: how many records it holds. Errors: TEEMS_ENOMEM,
 * TEEMS_EINVAL (a record the encoding refuses: a bug). */
int rp_abd_snap_build(const struct abd *a, uint8_t **payload, size_t *len, uint64_t *records);

/* The sync job's part (worker side): with the WAL durable up to `synced` (store_wal_sync_run's
 * answer), seals payload bound to `covers` as d->dir's snapshot, then compacts the WAL up to
 * covers->index. *written: the snapshot is durable (a compaction error after it leaves the WAL
 * usable and longer than needed). Errors: TEEMS_EIO when `synced` is behind `covers` (nothing
 * is written), store_snapshot_write's and store_wal_compact's. */
int rp_abd_snap_persist(const struct rp_abd_disk *d, struct store_wal *wal,
			const struct store_wal_pos *synced, const struct store_wal_pos *covers,
			const void *payload, size_t len, bool *written, char *errbuf);

/* What rp_abd_disk_open found. */
struct rp_abd_opened {
	bool snapshot;		   /* a snapshot was restored */
	uint64_t snapshot_records; /* its records */
	struct store_wal_pos anchor;
	uint64_t wal_records; /* WAL records restored (after the snapshot, if any) */
	struct store_wal_info info;
	/* Not empty: a snapshot is there but was not used, and why; the WAL alone was restored
	 * because it still starts at its first record. */
	char why[TEEMS_ERRBUF_LEN];
};

/* Restart of the data plane: restores core a (new, never stepped) from d->dir, the sealed
 * snapshot first, then the WAL records after the position it covers, and opens the WAL for
 * writing (*wal belongs to the caller). A snapshot that does not authenticate or does not
 * decode is never half-restored: every record is checked before the first is fed to a; the
 * WAL alone is then used if it still starts at its first record (nothing was compacted), else
 * nothing is restored and the call fails with TEEMS_ECORRUPT and the operator's way out in
 * errbuf. A WAL that does not continue the snapshot (a rollback of one of the two) restores
 * the snapshot alone (out->info.stop == STORE_WAL_STOP_ANCHOR).
 * Errors: TEEMS_ECORRUPT, TEEMS_ENOMEM, TEEMS_EIO, TEEMS_ECRYPTO, TEEMS_EINVAL. */
int rp_abd_disk_open(const struct rp_abd_disk *d, struct abd *a, struct store_wal **wal,
		     struct rp_abd_opened *out, char *errbuf);

#endif
