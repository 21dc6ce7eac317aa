/* teems-sim: runs the deterministic simulator over a range of seeds (sim.h; docs/TESTING.md).
 *
 *   teems-sim --engine paxos|abd --config N,F,M_R --seeds A-B --ops K --faults LIST
 *             [--unsafe NAME] [--sync always|rr|none] [--verbose] [--history FILE]
 *             [--reads mixed|log|index|local]
 *
 * --engine abd runs the RR-ABD data plane next to the Paxos control plane (sim_abd_run); its
 * --unsafe names are the ABD ones.
 * With --faults none, the mean message rounds per read and
 * per write are printed (ABD: the core's count per op; Paxos: ACCEPT rounds per op).
 *
 * For each failing seed it prints the violation and the command that replays it; the last
 * line of standard output is "N passed, N failed"; the exit status is 0 iff no seed failed
 * (2 for a usage error, 3 when the simulator itself failed). The measured speed (messages
 * stepped into cores per second of wall time) goes to standard error before the summary. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/quorum.h"
#include "sim.h"
#include "teems/err.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: teems-sim --engine paxos|abd --config N,F,M_R --seeds A-B --ops K\n"
		"                 --faults LIST [--unsafe NAME] [--sync always|rr|none]\n"
		"                 [--verbose] [--history FILE] [--reads mixed|log|index|local]\n"
		"  LIST: any of crash,rollback,fork,partition,loss,clock,total-crash, or all\n"
		"  NAME (paxos): %s\n"
		"  NAME (abd): %s\n"

		"  --history FILE: write the client history (of the last seed) for teems-check\n"
		"  --reads: GETs at random through the log or the core's read path (the leader\n"
		"           lease, else the read index) (mixed, the default), all through the "
		"log,\n"
		"           all through the core's read path (index), or (a negative control)\n"
		"           answered by any replica from its own state (local)\n",
		sim_unsafe_names(), sim_abd_unsafe_names());
}

static double wall_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sim_options o;
	const char *engine = "paxos", *config = "3,1,1", *seeds = "1-1", *faults = "none";
	const char *unsafe = NULL, *sync = "rr", *reads = "mixed";
	uint64_t seed_lo, seed_hi, passed = 0, failed = 0, messages = 0, quorums = 0, ops = 0;
	uint64_t unknown = 0, reads_ok = 0, read_rounds = 0, writes_ok = 0, write_rounds = 0;
	uint64_t lease_reads = 0, lease_ops = 0;
	bool abd = false;
	bool verbose = false, sim_error = false;
	char errbuf[256];
	double t0, dt;

	memset(&o, 0, sizeof(o));
	o.ops = 200;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--verbose") == 0) {
			verbose = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (v == NULL) {
			fprintf(stderr, "teems-sim: %s needs a value\n", a);
			usage(stderr);
			return 2;
		}
		i++;
		if (strcmp(a, "--engine") == 0)
			engine = v;
		else if (strcmp(a, "--config") == 0)
			config = v;
		else if (strcmp(a, "--seeds") == 0)
			seeds = v;
		else if (strcmp(a, "--ops") == 0)
			o.ops = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--faults") == 0)
			faults = v;
		else if (strcmp(a, "--unsafe") == 0)
			unsafe = v;
		else if (strcmp(a, "--sync") == 0)
			sync = v;
		else if (strcmp(a, "--history") == 0)
			o.history_path = v;
		else if (strcmp(a, "--reads") == 0)
			reads = v;
		else {
			fprintf(stderr, "teems-sim: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (strcmp(engine, "abd") == 0) {
		abd = true;
	} else if (strcmp(engine, "paxos") != 0) {
		fprintf(stderr, "teems-sim: unknown engine '%s' (paxos, abd)\n", engine);
		return 2;
	}
	if (sscanf(config, "%u,%u,%u", &o.n, &o.f, &o.m_r) != 3) {
		fprintf(stderr, "teems-sim: --config wants N,F,M_R, got '%s'\n", config);
		return 2;
	}
	{
		struct quorum q;
		char qerr[TEEMS_ERRBUF_LEN];

		if (quorum_init(&q, o.n, o.f, o.m_r, qerr) != TEEMS_OK) {
			fprintf(stderr, "teems-sim: --config %s: %s\n", config, qerr);
			return 2;
		}
	}
	if (sscanf(seeds, "%" SCNu64 "-%" SCNu64, &seed_lo, &seed_hi) != 2 || seed_lo > seed_hi) {
		if (sscanf(seeds, "%" SCNu64, &seed_lo) != 1) {
			fprintf(stderr, "teems-sim: --seeds wants A-B, got '%s'\n", seeds);
			return 2;
		}
		seed_hi = seed_lo;
	}
	if (o.ops == 0) {
		fprintf(stderr, "teems-sim: --ops must be at least 1\n");
		return 2;
	}
	if (!sim_parse_faults(faults, &o.faults, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "teems-sim: %s\n", errbuf);
		return 2;
	}
	if (strcmp(sync, "always") == 0)
		o.sync = PAXOS_SYNC_ALWAYS;
	else if (strcmp(sync, "rr") == 0)
		o.sync = PAXOS_SYNC_RR;
	else if (strcmp(sync, "none") == 0)
		o.sync = PAXOS_SYNC_NONE;
	else {
		fprintf(stderr, "teems-sim: --sync wants always, rr or none, got '%s'\n", sync);
		return 2;
	}
	if (strcmp(reads, "log") == 0) {
		o.reads = SIM_READS_LOG;
	} else if (strcmp(reads, "index") == 0) {
		o.reads = SIM_READS_INDEX;
	} else if (strcmp(reads, "local") == 0) {
		o.reads = SIM_READS_LOCAL;
	} else if (strcmp(reads, "mixed") == 0) {
		o.reads = SIM_READS_MIXED;
	} else {
		fprintf(stderr, "teems-sim: --reads wants mixed, log, index or local, got '%s'\n",
			reads);
		return 2;
	}
	if (unsafe != NULL && !(abd ? sim_abd_parse_unsafe(unsafe, &o.unsafe)
				    : sim_parse_unsafe(unsafe, &o.unsafe))) {
		fprintf(stderr,
			"teems-sim: --unsafe %s: the core has no such switch (yet); known: %s\n",
			unsafe, abd ? sim_abd_unsafe_names() : sim_unsafe_names());
		return 2;
	}

	t0 = wall_seconds();
	for (uint64_t seed = seed_lo; seed <= seed_hi; seed++) {
		struct sim_report rep;
		int rc;

		o.seed = seed;
		o.trace = verbose ? stdout : NULL;
		rc = abd ? sim_abd_run(&o, &rep) : sim_run(&o, &rep);
		messages += rep.messages;
		reads_ok += rep.reads_ok;
		read_rounds += rep.read_rounds;
		writes_ok += rep.writes_ok;
		write_rounds += rep.write_rounds;
		quorums += rep.quorums;
		lease_reads += rep.lease_reads;
		lease_ops += rep.lease_ops;
		ops += rep.ops_ok + rep.ops_unknown;
		unknown += rep.ops_unknown;
		if (rc != TEEMS_OK) {
			printf("seed %" PRIu64 ": simulator error: %s\n", seed, teems_strerror(rc));
			sim_error = true;
			failed++;
		} else if (rep.failed) {
			printf("seed %" PRIu64 ": VIOLATION: %s\n", seed, rep.violation);
			failed++;
		} else {
			passed++;
		}
		if (rc != TEEMS_OK || rep.failed) {
			printf("  replay: %s --engine %s --config %s --seeds %" PRIu64 "-%" PRIu64
			       " --ops %u --faults %s%s%s --sync %s%s%s\n",
			       argv[0], engine, config, seed, seed, o.ops, faults,
			       unsafe ? " --unsafe " : "", unsafe ? unsafe : "", sync, " --reads ",
			       reads);
		}
		fflush(stdout);
	}
	dt = wall_seconds() - t0;
	if (o.faults == 0 && (reads_ok > 0 || writes_ok > 0))
		printf("rounds: %s %s: %.3f per read (%" PRIu64 " reads), %.3f per write (%" PRIu64
		       " writes)\n",
		       engine, config, reads_ok ? (double)read_rounds / (double)reads_ok : 0.0,
		       reads_ok, writes_ok ? (double)write_rounds / (double)writes_ok : 0.0,
		       writes_ok);
	fprintf(stderr,
		"checked: %" PRIu64 " client ops (%" PRIu64 " unknown), %" PRIu64
		" counted quorums\n",
		ops, unknown, quorums);
	if (!abd)
		fprintf(stderr,
			"leases: %" PRIu64 " reads answered from a leader lease, %" PRIu64
			" client-lease operations\n",
			lease_reads, lease_ops);
	fprintf(stderr, "speed: %" PRIu64 " messages stepped in %.2f s wall = %.0f messages/s\n",
		messages, dt, dt > 0 ? (double)messages / dt : 0.0);
	printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
	if (sim_error)
		return 3;
	return failed ? 1 : 0;
}
