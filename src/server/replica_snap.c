/* Snapshots in the replica engine (replica_snap.h): the shell's side of paxos.h "Snapshots and
 * compaction", as the simulator runs it (tests/sim/sim.c maybe_snapshot, install_snapshot;
 * tests/sim/sim_world.c sim_snapshot_persist), with the disk work moved into the sync job.
 *
 * The order, for a snapshot taken here (paxos.h, steps 1-4):
 *   1-2. loop thread, between two steps: kv_snapshot at the applied slot k, then
 *        paxos_snapshot_taken (the core keeps the blob and drops log entries <= k); we copy
 *        the blob and note the WAL position after every record appended so far (`covers`);
 *   3.   the sync job that carries it is prepared after step 2, and a prepare closes every
 *        group appended before it, so once that job's WAL sync returns the WAL is durable at
 *        least to `covers` (rp_snap_job_run checks it); the job then seals the blob bound to
 *        `covers` (store_snapshot_write: temporary file, fsync, rename, directory fsync);
 *   4.   only then compacts the WAL up to `covers` (store_wal_compact).
 * A crash anywhere leaves the old snapshot with the whole WAL after it, or the new one with the
 * WAL that continues it (store_wal_open with its position as the anchor).
 *
 * Installed snapshots (ready.snapshot.install) follow paxos.h "Installing one": the ready's
 * persist records are appended first (replica.c), then the kv is replaced here, then the
 * blob is queued exactly as above, then the ready's sends and applies run. The one difference
 * from the simulator: the seal is on disk a little later, when the sync job runs, not before the
 * sends leave. paxos.h allows a crash at that point ("A crash before 3. completes restarts on
 * the old snapshot and a WAL whose INSTALLED record tells paxos_restore not to trust the commit
 * indexes after it"), and the INSTALLED record itself is durable before any synced
 * acknowledgement that follows it (records are synced in order). Slots up to k were committed
 * before any replica snapshotted them, so an acknowledgement naming them counts toward nothing
 * (a leader counts acknowledgements of open slots only, paxos_accept.c). */
#include "server/replica_snap.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/replica_internal.h"
#include "store/snapshot.h"
#include "teems/err.h"

/* After a failed take (out of memory), wait this long before the next attempt. */
#define SNAP_RETRY_NS (1000 * RP_MS)

int rp_snap_load(struct replica *r, struct store_wal_pos *anchor, bool *loaded, char *why,
		 size_t why_len, char *errbuf)
{
	char lerr[TEEMS_ERRBUF_LEN] = "";
	const uint8_t *state = NULL;
	size_t len = 0, state_len = 0;
	uint64_t slot = 0;
	void *payload = NULL;
	int rc;

	*loaded = false;
	why[0] = '\0';
	rc = tee_seal_key(r->tee, "snapshot", r->snap.key);
	if (rc != TEEMS_OK)
		return teems_errf(errbuf, rc, "engine: snapshot key: %s", teems_strerror(rc));
	rc = store_snapshot_load(r->vfs, r->cfg.data_dir, r->self, r->snap.key, &payload, &len,
				 anchor, lerr);
	switch (rc) {
	case TEEMS_OK:
		break;
	case TEEMS_ENOTFOUND:
		return TEEMS_OK;
	case TEEMS_EAUTH:
	case TEEMS_ECORRUPT:
	case TEEMS_EVERSION:
		/* The host altered, truncated or swapped the file (or it is another replica's,
		 * or another cluster's): the caller decides whether the WAL alone will do. */
		rp_log(r, "the sealed snapshot in %s does not load: %s", r->cfg.data_dir,
		       lerr[0] ? lerr : teems_strerror(rc));
		snprintf(why, why_len, "does not authenticate (%s)", teems_strerror(rc));
		return TEEMS_OK;
	default:
		return teems_errf(errbuf, rc, "engine: %s", lerr[0] ? lerr : teems_strerror(rc));
	}
	rc = paxos_restore_snapshot(r->p, payload, len, &slot, &state, &state_len);
	if (rc == TEEMS_OK) {
		rc = kv_restore(r->kv, state, state_len);
		if (rc != TEEMS_OK && rc != TEEMS_ENOMEM)
			snprintf(why, why_len,
				 "of slot %" PRIu64 " is refused by the key-value state (%s)", slot,
				 teems_strerror(rc));
	} else if (rc != TEEMS_ENOMEM) {
		snprintf(why, why_len, "is refused by the protocol core (%s)", teems_strerror(rc));
	}
	tee_wipe(payload, len);
	teems_free(payload);
	if (rc == TEEMS_ENOMEM)
		return teems_errf(errbuf, rc, "engine: out of memory loading the snapshot");
	if (rc != TEEMS_OK)
		return TEEMS_OK; /* why says it */
	*loaded = true;
	r->snap.restored_slot = slot;
	r->applied_index = slot;
	rp_log(r, "snapshot of slot %" PRIu64 " loaded (%zu bytes, WAL position %" PRIu64 ")", slot,
	       len, anchor->index);
	return TEEMS_OK;
}

bool rp_snap_waiting(const struct replica *r)
{
	return r->snap.pend != NULL;
}

/* Holds a copy of `blob` until a sync job seals it, bound to the WAL position after every
 * record appended so far. A newer snapshot replaces one that is still waiting: the older one
 * was never written, and nothing was compacted for it. */
static void queue(struct replica *r, const uint8_t *blob, size_t len, uint64_t slot, bool install)
{
	uint8_t *copy = teems_malloc(len ? len : 1);

	if (copy == NULL) {
		/* Not persisted: the previous snapshot and the whole WAL stay a consistent pair. */
		r->snap.failed++;
		rp_log(r, "snapshot of slot %" PRIu64 " not persisted: out of memory", slot);
		return;
	}
	memcpy(copy, blob, len);
	teems_free(r->snap.pend);
	r->snap.pend = copy;
	r->snap.pend_len = len;
	r->snap.pend_slot = slot;
	r->snap.pend_install = install;
	store_wal_position(r->wal, &r->snap.pend_covers, NULL);
	r->snap.wal_bytes = 0;
	r->io.want_sync(r->io.ctx);
}

static void take(struct replica *r)
{
	uint64_t slot = r->applied_index;
	uint8_t *state = NULL;
	const uint8_t *blob = NULL;
	size_t len = 0, blob_len = 0;
	int rc;

	rc = kv_snapshot(r->kv, &state, &len);
	if (rc == TEEMS_OK)
		rc = paxos_snapshot_taken(r->p, slot, state, len, &blob, &blob_len);
	teems_free(state);
	if (rc != TEEMS_OK) {
		/* Nothing changed in the core (paxos.h): try again later. */
		r->snap.failed++;
		r->snap.next_try_ns = r->now.hi_ns + SNAP_RETRY_NS;
		rp_log(r, "snapshot of slot %" PRIu64 " not taken: %s", slot, teems_strerror(rc));
		return;
	}
	queue(r, blob, blob_len, slot, false);
}

void rp_snap_tick(struct replica *r)
{
	uint64_t base, applied = r->applied_index;
	bool due;

	if (r->halted || r->snap.pend != NULL || r->snap.in_job ||
	    r->now.hi_ns < r->snap.next_try_ns)
		return;
	base = paxos_snapshot_index(r->p);
	if (applied <= base)
		return;
	due = (r->cfg.snapshot_every && applied - base >= r->cfg.snapshot_every) ||
	      (r->cfg.snapshot_bytes && r->snap.wal_bytes >= r->cfg.snapshot_bytes);
	if (due)
		take(r);
}

void rp_snap_from_ready(struct replica *r, const struct paxos_snapshot_out *s)
{
	if (s->install) {
		int rc = kv_restore(r->kv, s->state, s->state_len);

		if (rc != TEEMS_OK) {
			/* The core has moved to slot s->slot: applying on the old map would
			 * diverge from every other replica. */
			rp_halt(r,
				"engine: the snapshot of slot %" PRIu64
				" installed from a peer does not load into the key-value state: %s",
				s->slot, teems_strerror(rc));
			return;
		}
		r->applied_index = s->slot;
		rp_log(r, "installed a snapshot of slot %" PRIu64 " from a peer (%zu bytes)",
		       s->slot, s->blob_len);
	}
	queue(r, s->blob, s->blob_len, s->slot, s->install);
}

bool rp_snap_job_prepare(struct replica *r)
{
	if (r->snap.pend == NULL || r->snap.in_job)
		return false;
	r->snap.job = r->snap.pend;
	r->snap.job_len = r->snap.pend_len;
	r->snap.job_slot = r->snap.pend_slot;
	r->snap.job_install = r->snap.pend_install;
	r->snap.job_covers = r->snap.pend_covers;
	r->snap.pend = NULL;
	r->snap.job_rc = TEEMS_OK;
	r->snap.job_written = false;
	r->snap.job_err[0] = '\0';
	r->snap.in_job = true;
	return true;
}

void rp_snap_job_run(struct replica *r, const struct store_wal_pos *synced)
{
	char err[TEEMS_ERRBUF_LEN] = "";
	int rc;

	if (!r->snap.in_job)
		return;
	/* Step 3: the WAL durable up to the position the snapshot is bound to. */
	if (synced->index < r->snap.job_covers.index) {
		r->snap.job_rc = TEEMS_EIO;
		snprintf(r->snap.job_err, sizeof(r->snap.job_err),
			 "the WAL is durable to record %" PRIu64
			 " only, the snapshot needs %" PRIu64,
			 synced->index, r->snap.job_covers.index);
		return;
	}
	rc = store_snapshot_write(r->vfs, r->cfg.data_dir, r->self, r->snap.key,
				  &r->snap.job_covers, r->snap.job, r->snap.job_len, err);
	if (rc != TEEMS_OK) {
		r->snap.job_rc = rc;
		snprintf(r->snap.job_err, sizeof(r->snap.job_err), "%s",
			 err[0] ? err : teems_strerror(rc));
		return;
	}
	r->snap.job_written = true;
	/* Step 4, only now: the records up to `covers` are in a durable snapshot. */
	rc = store_wal_compact(r->wal, r->snap.job_covers.index, err);
	if (rc != TEEMS_OK) {
		r->snap.job_rc = rc;
		snprintf(r->snap.job_err, sizeof(r->snap.job_err), "%s",
			 err[0] ? err : teems_strerror(rc));
	}
}

void rp_snap_job_done(struct replica *r)
{
	if (!r->snap.in_job)
		return;
	r->snap.in_job = false;
	if (r->snap.job_written) {
		r->snap.persisted++;
		r->snap.last_len = r->snap.job_len;
		rp_log(r,
		       "snapshot of slot %" PRIu64 " sealed%s (%zu bytes), WAL compacted up to "
		       "record %" PRIu64,
		       r->snap.job_slot, r->snap.job_install ? " (installed)" : "", r->snap.job_len,
		       r->snap.job_covers.index);
		if (r->snap.job_rc != TEEMS_OK)
			rp_log(r, "WAL compaction failed (the WAL stays usable): %s",
			       r->snap.job_err);
	} else if (r->snap.job_rc != TEEMS_OK) {
		r->snap.failed++;
		rp_log(r,
		       "snapshot of slot %" PRIu64 " not persisted (the previous snapshot and the "
		       "whole WAL remain): %s",
		       r->snap.job_slot, r->snap.job_err);
	}
	teems_free(r->snap.job);
	r->snap.job = NULL;
	r->snap.job_len = 0;
}

void rp_snap_free(struct replica *r)
{
	teems_free(r->snap.pend);
	teems_free(r->snap.job);
	r->snap.pend = r->snap.job = NULL;
	tee_wipe(r->snap.key, sizeof(r->snap.key));
}

const char *replica_snap_status(struct replica *r)
{
	struct paxos_snapshot_stats st;

	paxos_snapshot_stats(r->p, &st);
	snprintf(r->snap.status, sizeof(r->snap.status),
		 "snapshot_index:%" PRIu64 "\r\nsnapshots_taken:%" PRIu64
		 "\r\nsnapshots_installed:%" PRIu64 "\r\nsnapshots_persisted:%" PRIu64
		 "\r\nsnapshots_failed:%" PRIu64 "\r\nsnapshot_restored:%" PRIu64
		 "\r\nsnapshot_bytes:%" PRIu64 "\r\n",
		 paxos_snapshot_index(r->p), st.taken, st.installed, r->snap.persisted,
		 r->snap.failed, r->snap.restored_slot, r->snap.last_len);
	return r->snap.status;
}
