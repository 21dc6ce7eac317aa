/* The replica engine's private parts, shared by replica.c (platform, WAL, core, peer frames,
 * sync) and replica_client.c (client commands, forwarding, local commands). Nothing outside
 * src/server/replica*.c includes this. */
#ifndef TEEMS_SERVER_REPLICA_INTERNAL_H
#define TEEMS_SERVER_REPLICA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/lease.h"
#include "core/msg.h"
#include "core/paxos.h"
#include "kv/kv.h"
#include "net/commands.h"
#include "server/replica.h"
#include "store/vfs.h"
#include "store/wal.h"
#include "tee/tee.h"

/* Timings the configuration does not name, chosen for replicas on one host or one LAN. */
#define RP_MS 1000000ull
#define RP_ELECTION_NS (300 * RP_MS) /* randomized in [300, 600) ms by the core */
#define RP_HEARTBEAT_NS (50 * RP_MS) /* the leader's COMMIT heartbeat */
/* recovery = auto: T_restart (epoch restart) is max(RP_RESTART_NS, 5 T_op), long enough that a
 * short outage of the whole cluster is ridden out by elections, not an epoch restart. */
#define RP_RESTART_NS (10 * RP_ELECTION_NS)
#define RP_GROUP_SYNC_NS (2 * RP_MS)	       /* sync = rr: the periodic group fsync */
#define RP_NO_LEADER_NS (2000 * RP_MS)	       /* how long a request waits for some leader */
#define RP_RETRY_NS (20 * RP_MS)	       /* retry period while no leader is known */
#define RP_BUSY_RETRY_NS (10 * RP_MS)	       /* retry period after BUSY */
#define RP_READ_FORWARD_NS (500 * RP_MS)       /* a forwarded read is re-routed after this */
#define RP_WRITE_FORWARD_MIN_NS (5000 * RP_MS) /* a forwarded write's answer, at least */
#define RP_FORWARDED_IN_NS (60000 * RP_MS)     /* forget a forwarded request after this */
#define RP_MAX_SLOT_BYTES (2u << 20)	       /* one slot's batch: a 1 MiB value fits */
#define RP_MAX_ACCEPT_SLOTS 4u		       /* 4 * 2 MiB = MSG_MAX_FRAME / 2 */

/* The flag byte in front of the command bytes of a MSG_CLIENT_REQUEST (the message has no
 * field for it): what the receiving leader must do with the command. */
#define RP_FWD_WRITE 0u	  /* propose it */
#define RP_FWD_READ 1u	  /* run it after a read-index barrier */
#define RP_FWD_GENESIS 2u /* the genesis check's probe (replica_genesis.c), not a command */

enum rp_state {
	RP_IN_CORE,    /* waiting for the core's note (or the apply of its slot) */
	RP_FORWARDED,  /* sent to `fwd_to` as MSG_CLIENT_REQUEST; waiting for MSG_CLIENT_REPLY */
	RP_RETRY,      /* not proposed (no leader, busy): tried again at `timer_ns` */
	RP_LEASE_HELD, /* read from the lease, in lease.held until replica_flush confirms it */
};

/* One client request in flight, keyed in the core by (client_id, request_id). Local requests
 * use this incarnation's client id; requests other replicas forwarded to us (forwarded_in)
 * keep the forwarder's ids, which are unique across replicas and incarnations (random client
 * ids), so the two kinds never collide. */
struct rp_pending {
	struct rp_pending *hnext;	  /* hash chain */
	struct rp_pending *tprev, *tnext; /* the timed list (timer_ns is armed) */
	bool timed;
	uint64_t client_id, request_id;
	bool forwarded_in; /* from replica `origin`: answered with MSG_CLIENT_REPLY */
	uint16_t origin;
	uint64_t conn, req; /* local: the connection and request number to answer */
	int proto;
	bool gone;		     /* the connection closed: answer nobody */
	const struct cmd_spec *spec; /* local only */
	bool read;
	enum rp_state state;
	uint16_t fwd_to;
	uint64_t timer_ns;    /* hi clock: next action (RP_RETRY, RP_FORWARDED, forwarded_in) */
	uint64_t deadline_ns; /* hi clock: give up waiting for a leader */
	/* wire[0] is the RP_FWD_* flag, wire + 1 the encoded state-machine command. Owned. */
	uint8_t *wire;
	size_t wire_len;
};

/* An input the core produced during a step that must go back into it after the step's ready
 * has been carried out (the ready is reused by every step). */
struct rp_deferred {
	bool exec; /* a PAXOS_IN_EXEC_RESULT; else a frame to ourselves */
	uint16_t to;
	uint64_t nonce, applied;
	uint8_t *bytes; /* owned */
	size_t len;
};

struct rp_stats {
	uint64_t bad_frames;   /* peer frames the engine refused (decode, sender, shape) */
	uint64_t bad_quotes;   /* REGISTERs whose quote did not verify or bind */
	uint64_t forwarded;    /* client requests this replica forwarded to a leader */
	uint64_t forwarded_in; /* requests other replicas forwarded to this one */
	uint64_t self_frames;  /* frames the core addressed to this replica itself */
	uint64_t applied_cmds;
	uint64_t fsyncs;
};

struct replica {
	struct teems_config cfg;
	struct replica_io io;
	uint16_t self, n;
	bool halted;

	/* platform */
	struct tee *tee;
	struct tee_clock *clock;
	struct tee_incarnation *inc;
	uint8_t pub[TEE_PUBLIC_KEY_LEN];
	uint8_t quote[TEE_QUOTE_LEN];
	uint8_t root_pub[TEE_PUBLIC_KEY_LEN];
	uint8_t measurement[TEE_MEASUREMENT_LEN];
	struct paxos_time now; /* the last clock reading */
	uint64_t start_lo_ns;
	uint64_t rng;
	bool first_boot;
	uint64_t restored_records;

	/* WAL: appended_seq is the persist seq of the record at WAL index appended_index. A sync
	 * job covers every record appended before its prepare, so its covered seq is the
	 * appended_seq of that moment. */
	struct store_vfs *vfs;
	struct store_wal *wal;
	uint64_t appended_index, appended_seq, prepared_index, synced_seq;
	bool urgent;	   /* a record marked sync is not covered by a prepared job yet */
	bool sync_running; /* between replica_sync_prepare and replica_sync_done */
	uint64_t last_group_sync_hi;

	/* core and state machine */
	struct paxos *p;
	struct paxos_ready rd;
	struct kv *kv;
	uint64_t applied_index;
	bool draining;
	struct rp_deferred *deferred;
	size_t n_deferred, cap_deferred;
	int last_role, last_lc;

	/* clients */
	uint64_t client_id, next_request;
	struct rp_pending **buckets;
	size_t n_buckets, n_pending;
	struct rp_pending *timed_head;

	uint8_t *buf; /* encoding scratch */
	size_t cap_buf;
	struct replica_net_stats net;
	struct rp_stats stats;

	/* ---- leases (replica_client.c, "Leases"; docs/LEASES.md) ----
	 * The leader's client-lease expiry timers (never replicated) and the leader-lease read
	 * counters. `tm` is in office exactly while this replica is the fresh leader. */
	struct {
		struct lease_timers tm;
		uint64_t office_epoch; /* paxos_epoch when it took office */
		uint64_t client_id;    /* the (client_id, request_id) of its EXPIRE proposals */
		uint64_t next_request;
		uint64_t expires;	 /* EXPIRE proposals made */
		uint64_t read_fallbacks; /* lease reads that failed the check after the read */
		/* Lease reads run during the current batch of client calls, each with its
		 * result, waiting for replica_flush to confirm them with one clock reading. */
		struct rp_lease_read {
			struct rp_pending *pe;
			uint8_t *res; /* owned */
			size_t len;
		} * held;
		size_t n_held, cap_held;
		bool in_client;	  /* inside replica_client_as: lease reads wait for the flush */
		bool batch_clock; /* the clock was read in this batch: client reads reuse it */
	} lease;

	/* ---- the genesis check (replica_genesis.c) ---- */
	struct {
		bool pending;	   /* first boot: the core gets no input until it is decided */
		uint64_t nonce;	   /* the current probe round */
		uint64_t answered; /* bit i: replica i answered "pristine" to this round */
		uint64_t next_probe_ns;
		uint64_t rounds;
	} genesis;

	/* ---- snapshots (replica_snap.c, replica_snap.h; docs/OPERATIONS.md "Snapshots") ----
	 * At most two snapshots are held: `pend`, taken or installed and waiting for a sync job,
	 * and `job`, which the running sync job is sealing to disk. The worker thread reads the
	 * job's fields and writes job_rc/job_err between replica_sync_prepare and the end of
	 * replica_sync_run; the loop thread touches them only outside that window. */
	struct {
		uint8_t key[TEE_KEY_LEN]; /* tee_seal_key("snapshot"): sealing root key */
		uint64_t wal_bytes;	  /* WAL bytes appended since the last snapshot */
		uint64_t restored_slot;	  /* the snapshot this incarnation booted from (0: none) */
		uint8_t *pend;		  /* owned copy of a blob waiting for a job; NULL: none */
		size_t pend_len;
		uint64_t pend_slot;
		bool pend_install;
		struct store_wal_pos pend_covers; /* the WAL position it is bound to */
		bool in_job;			  /* the running sync job seals `job` */
		uint8_t *job;
		size_t job_len;
		uint64_t job_slot;
		bool job_install;
		struct store_wal_pos job_covers;
		int job_rc;	  /* the first failure of the job's snapshot work */
		bool job_written; /* the snapshot is durable (compaction may still have failed) */
		char job_err[256];
		uint64_t next_try_ns; /* hi clock: after a failed take, not before this */
		uint64_t persisted, failed, last_len; /* counters; bytes of the last one sealed */
		char status[512];		      /* replica_snap_status's text */
	} snap;

	/* ---- engine = abd (replica_abd.c) ---- NULL with engine = paxos. */
	struct rp_abd *abd;
};

/* replica.c */
void rp_log(struct replica *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rp_halt(struct replica *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One input into the core (a fresh clock reading is filled in), then its ready, then any
 * deferred inputs. Returns paxos_step's result (TEEMS_ENOMEM halts the replica). */
int rp_step(struct replica *r, struct paxos_input *in);
void rp_read_clock(struct replica *r);
/* Encodes m into r->buf and hands it to io.send. Errors: TEEMS_EINVAL (msg_encode refuses m,
 * e.g. a field over its cap), TEEMS_ENOMEM; nothing is sent then. */
int rp_send_msg(struct replica *r, uint16_t to, const struct msg *m);
/* The sender fields of a message from this incarnation. */
void rp_msg_header(struct replica *r, struct msg *m);

/* Replaces the core and the map by empty ones (restarted: a new incarnation that registers,
 * fences and recovers; else a member of the initial configuration). */
int rp_new_core(struct replica *r, bool restarted, char *errbuf);

/* replica_genesis.c: may an empty first boot join as a genesis member? */
void rp_genesis_begin(struct replica *r);
void rp_genesis_tick(struct replica *r);
/* Consumes the check's probes and answers (true), whoever sends them. */
bool rp_genesis_frame(struct replica *r, uint16_t from, const struct msg *m);
bool rp_genesis_pending(const struct replica *r);

/* replica_client.c */
void rp_clients_init(struct replica *r);
void rp_clients_free(struct replica *r);
void rp_client_note(struct replica *r, const struct paxos_note *n);
/* The command (client_id, request_id) was applied with result rc (result owned by callee). */
void rp_client_applied(struct replica *r, uint64_t client_id, uint64_t request_id, int rc,
		       uint8_t *result, size_t len);
void rp_client_timers(struct replica *r);
void rp_client_request_frame(struct replica *r, uint16_t from, const struct msg *m);
/* Client leases at the leader (docs/LEASES.md, "Hooking client leases into the daemon"):
 * rp_lease_office after every ready (takes office on becoming the fresh leader or a new epoch,
 * steps down otherwise); rp_lease_applied after each applied command (res is its result, which
 * it may complete with the leader's remaining time); rp_lease_tick proposes the due EXPIREs
 * (never inside a step). */
void rp_lease_office(struct replica *r);
void rp_lease_applied(struct replica *r, const uint8_t *cmd, size_t len, uint8_t *res,
		      size_t res_len);
void rp_lease_tick(struct replica *r);
void rp_client_reply_frame(struct replica *r, uint16_t from, const struct msg *m);

/* The quote's report data for an incarnation (DESIGN.md section 4, Boot): SHA-256 of
 * ("teems register v1\0" | u16 replica | incarnation public key | cluster id), then 32 zero
 * bytes. */
void rp_report_data(uint16_t replica, const uint8_t key[TEE_PUBLIC_KEY_LEN],
		    const uint8_t cluster_id[CONFIG_CLUSTER_ID_LEN],
		    uint8_t out[TEE_REPORT_DATA_LEN]);

#endif
