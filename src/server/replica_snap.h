/* Snapshots in the replica engine: taking, sealing, compacting, installing and booting from
 * them, in the order src/core/paxos.h ("Snapshots and compaction") prescribes and the
 * simulator's shell follows (tests/sim/sim_world.c, sim_snapshot_persist). The operator's view
 * is docs/OPERATIONS.md, "Snapshots".
 *
 * Where the work runs. Serializing the key-value map (kv_snapshot) and building the core's
 * snapshot (paxos_snapshot_taken, which hashes it) run on the loop thread: both read state
 * only the loop thread may touch. Everything that touches the disk (making the WAL durable up
 * to the snapshot's position, sealing and writing the snapshot file, compacting the WAL) runs
 * in the engine's sync job on the worker thread (replica.h, replica_sync_*): a job that finds
 * a snapshot waiting carries it. So the loop never waits for a snapshot's I/O.
 *
 * Everything here runs on the loop thread except rp_snap_job_run (the worker). */
#ifndef TEEMS_SERVER_REPLICA_SNAP_H
#define TEEMS_SERVER_REPLICA_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct replica;
struct paxos_snapshot_out;
struct store_wal_pos;

/* Boot, on a core fresh from paxos_new and an empty kv, before the WAL is opened: derives the
 * snapshot key and loads DATA_DIR/snapshot. Outcomes:
 *   - none there: *loaded = false, why[0] = '\0';
 *   - it authenticated and restored: *loaded = true, *anchor is the WAL position it covers,
 *     the core holds its protocol state (paxos_restore_snapshot), the kv its map, and
 *     r->applied_index its slot;
 *   - it exists but cannot be used (does not authenticate, a format we do not speak, refused
 *     by the core or the kv): *loaded = false and `why` says so, as a predicate of "the
 *     sealed snapshot" ("does not authenticate (...)"); the details are logged. The core and
 *     the kv may then be half restored: the caller replaces both before using them.
 * Errors (boot fails): TEEMS_EIO, TEEMS_ENOMEM, TEEMS_ECRYPTO, with errbuf. */
int rp_snap_load(struct replica *r, struct store_wal_pos *anchor, bool *loaded, char *why,
		 size_t why_len, char *errbuf);

/* Between two steps (replica_tick): takes a snapshot when `snapshot_every` slots were applied
 * or `snapshot_bytes` WAL bytes appended since the last one, and none is waiting to be
 * persisted; then asks for a sync job (io.want_sync), which persists it. */
void rp_snap_tick(struct replica *r);

/* ready.snapshot of the ready being carried out, after its persist records were appended and
 * before its sends (paxos.h, "Installing one"): with `install`, replaces the kv by the
 * snapshot's state (a kv that refuses it halts the replica); in every case queues the blob to
 * be persisted, bound to the WAL position after those records. */
void rp_snap_from_ready(struct replica *r, const struct paxos_snapshot_out *s);

/* The sync job (replica_sync_prepare/run/done): prepare hands a waiting snapshot to the job
 * (true when it did); run, on the worker, after the WAL sync succeeded up to `synced`: seals
 * the snapshot bound to its position and then compacts the WAL; done reports and frees it.
 * A snapshot that fails to persist is logged and counted, not fatal: until a newer one is
 * durable the previous snapshot and the uncompacted WAL remain a consistent pair. */
bool rp_snap_job_prepare(struct replica *r);
void rp_snap_job_run(struct replica *r, const struct store_wal_pos *synced);
void rp_snap_job_done(struct replica *r);
/* A snapshot is waiting for a sync job. */
bool rp_snap_waiting(const struct replica *r);

/* Frees what is held; wipes the key. Not while a job runs. */
void rp_snap_free(struct replica *r);

/* TEEMS.STATUS lines ("key:value\r\n" each): snapshot_index (the core's newest snapshot: slots
 * up to it left the log), snapshots_taken and snapshots_installed (by this incarnation's
 * core), snapshots_persisted, snapshots_failed (sealed, or not, by this incarnation),
 * snapshot_restored (the slot of the snapshot this incarnation booted from, 0: none),
 * snapshot_bytes (the last one sealed). The text lives in r, valid until the next call. */
const char *replica_snap_status(struct replica *r);

#endif
