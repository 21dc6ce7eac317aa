/* The deterministic cluster simulator (DESIGN.md section 11; docs/TESTING.md, "Simulator").
 *
 * One seed gives one run, bit for bit: a single splitmix64 stream drives every choice (network
 * delays, loss, partitions, clocks, clients, the adversary, memvfs power-loss decisions through
 * per-replica seeds drawn from it); no wall clock and no rand() enter the run. Time is virtual
 * nanoseconds in an event queue that is stepped one event at a time (canonical/raft's
 * raft_fixture), with cheap invariant checks after every step.
 *
 * What runs: N instances of the real RR-Paxos core (src/core/paxos.h), each with its own
 * trusted clock (rate error within rho, an offset, taint epochs), its own memvfs with the real
 * sealed WAL (src/store/wal.h) holding the core's persist records, a group fsync on a short
 * timer, and the key-value state machine (src/kv) applying what commits. Every message is
 * encoded with msg_encode and decoded with msg_decode in transit. Clients issue GET, SET and CAS
 * through random replicas and record a history in the form of tests/sim/history.h; GETs go
 * through the log or the leader lease / read index; lease clients acquire, renew and release
 * client leases (kv/lease_table.h) through the log; each replica also has a host clock the
 * adversary moves (docs/TESTING.md, "Leases").
 *
 * Checkers: after every step, agreement of applied slots across all replicas and incarnations,
 * exactly-once commits of client requests, no two incarnations of one replica in a quorum
 * the core reports (ready.counted), lease exclusivity against real time (leader leases and
 * client leases) and no stale lease read; after the run, linearizability of the history (lincheck;
 * a budget exceeded is a failure) including final reads of every key after the heal, no lost
 * acknowledged write, and progress (final reads done and every replica fresh again within
 * 30 s of virtual time after the heal). docs/TESTING.md, "Simulator", has the details. */
#ifndef TEEMS_SIM_SIM_H
#define TEEMS_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/paxos.h"

/* Faults (--faults). */
#define SIM_FAULT_CRASH 0x01u	    /* crash + power loss of one replica, restart later */
#define SIM_FAULT_ROLLBACK 0x02u    /* restart on an earlier synced version of its files */
#define SIM_FAULT_FORK 0x04u	    /* a second instance from an earlier version, both live */
#define SIM_FAULT_PARTITION 0x08u   /* symmetric, asymmetric, leader isolation, splits */
#define SIM_FAULT_LOSS 0x10u	    /* message loss and duplication */
#define SIM_FAULT_CLOCK 0x20u	    /* clock taints, descheduled replicas */
#define SIM_FAULT_TOTAL_CRASH 0x40u /* every replica loses power, then all restart */
#define SIM_FAULT_ALL 0x7fu

enum sim_reads {
	SIM_READS_LOG = 0,   /* through the log, like writes (default) */
	SIM_READS_INDEX = 1, /* the core's read index (PAXOS_IN_READ) */
	SIM_READS_LOCAL = 2, /* negative control: any replica answers from its own state at once */
	SIM_READS_MIXED = 3, /* each GET at random through the log or PAXOS_IN_READ (the leader
				lease while it holds one, else the read index) */
};

struct sim_options {
	unsigned n, f, m_r;
	uint64_t seed;
	unsigned ops;	 /* client operations to issue before the heal (final reads extra) */
	unsigned faults; /* SIM_FAULT_* */
	unsigned unsafe; /* PAXOS_UNSAFE_* */
	enum paxos_sync_policy sync;
	unsigned keys;		  /* key space (default 6) */
	unsigned clients;	  /* concurrent clients (default 2N) */
	FILE *trace;		  /* event trace (--verbose), or NULL */
	const char *history_path; /* write the client history here (teems-check reads it) */
	enum sim_reads reads;	  /* how GETs are served (--reads) */
};

struct sim_report {
	bool failed;
	char violation[4096]; /* what failed, when (every checker that failed, one per line) */
	uint64_t messages;    /* messages stepped into a core */
	uint64_t events;
	uint64_t quorums;    /* counted quorums the core reported (and the simulator checked) */
	uint64_t virtual_ns; /* simulated time at the end */
	unsigned ops_ok, ops_unknown, ops_failed;
	/* Message rounds of the client ops that completed ok (the ABD core's abd_reply.rounds;
	 * the Paxos engine leaves them 0). */
	uint64_t reads_ok, read_rounds, writes_ok, write_rounds;
	/* Leases (the Paxos engine): reads answered from a leader lease; client-lease
	 * operations that completed ok. */
	uint64_t lease_reads, lease_ops;
};

/* Parses a fault list ("crash,partition" or "all"). Returns false on an unknown name (errbuf
 * names it). */
bool sim_parse_faults(const char *list, unsigned *out, char *errbuf, size_t errlen);

/* Maps an --unsafe name to PAXOS_UNSAFE_* bits; false if the core has no such switch. */
bool sim_parse_unsafe(const char *name, unsigned *out);
/* The names sim_parse_unsafe knows in this build, comma-separated. */
const char *sim_unsafe_names(void);

/* Runs one seed. Returns 0, or a negative teems error for a simulator failure (out of memory,
 * a core that refused its configuration); a protocol violation is a successful run with
 * report->failed set. */
int sim_run(const struct sim_options *opt, struct sim_report *report);

/* ---- the ABD engine (sim_abd.c; docs/TESTING.md, "ABD engine") ----
 * The same options, faults, adversary and report, with each replica running the RR-ABD core
 * (data plane) next to the RR-Paxos core (control plane: REGISTER, fence). For this engine
 * opt->unsafe holds ABD_UNSAFE_* bits (sim_abd_parse_unsafe) and opt->reads is ignored. A
 * total crash is survived through the control plane's epoch restart (paxos t_restart_ns). */
int sim_abd_run(const struct sim_options *opt, struct sim_report *report);
bool sim_abd_parse_unsafe(const char *name, unsigned *out);
const char *sim_abd_unsafe_names(void);

#endif
