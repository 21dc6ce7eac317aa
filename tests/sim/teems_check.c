/* teems-check: checks a recorded client history (tests/sim/history.h gives the file format).
 *
 *   teems-check [--monotonic-reads] [--max-states N] HISTORY     ("-" reads standard input)
 *
 * Prints one verdict line per check (and the explanation of a violation under it) and exits
 * 0 if every check passed, 1 if one found a violation, 2 if none did but the linearizability
 * search ran out of budget (no verdict), 3 if the history could not be read or parsed (or the
 * command line is wrong), 4 if memory ran out. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "teems/err.h"

#include "history.h"
#include "lincheck.h"

enum {
	EXIT_PASS = 0,
	EXIT_VIOLATION = 1,
	EXIT_NO_VERDICT = 2,
	EXIT_BAD_INPUT = 3,
	EXIT_NOMEM = 4,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: teems-check [--monotonic-reads] [--max-states N] HISTORY\n"
		"  Checks that a client history is linearizable (per-key WGL search).\n"
		"  --monotonic-reads  also check that no client's reads go backwards\n"
		"  --max-states N     search budget per key (default %u)\n"
		"  exit: 0 ok, 1 violation, 2 budget exceeded, 3 bad input, 4 out of memory\n",
		LINCHECK_DEFAULT_MAX_STATES);
}

static void print_key(struct history_bytes key)
{
	struct history_str s = {0};

	history_str_bytes(&s, key, 64);
	fputs(s.data ? s.data : "?", stdout);
	history_str_free(&s);
}

int main(int argc, char **argv)
{
	struct lincheck_options opt = {0};
	struct lincheck_result res;
	struct history h;
	char errbuf[TEEMS_ERRBUF_LEN];
	const char *path = NULL;
	bool monotonic = false;
	int status = EXIT_PASS, rv;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--monotonic-reads") == 0) {
			monotonic = true;
		} else if (strcmp(argv[i], "--max-states") == 0 && i + 1 < argc) {
			char *end;

			opt.max_states_per_key = strtoull(argv[++i], &end, 10);
			if (*argv[i] == '\0' || *end != '\0' || opt.max_states_per_key == 0) {
				fprintf(stderr, "teems-check: bad --max-states '%s'\n", argv[i]);
				return EXIT_BAD_INPUT;
			}
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_PASS;
		} else if (path == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			path = argv[i];
		} else {
			usage(stderr);
			return EXIT_BAD_INPUT;
		}
	}
	if (path == NULL) {
		usage(stderr);
		return EXIT_BAD_INPUT;
	}

	history_init(&h);
	rv = history_read_file(&h, path, errbuf);
	if (rv != 0) {
		fprintf(stderr, "teems-check: %s\n", errbuf);
		history_free(&h);
		return rv == TEEMS_ENOMEM ? EXIT_NOMEM : EXIT_BAD_INPUT;
	}

	rv = lincheck_check(&h, &opt, &res, errbuf);
	if (rv != 0) {
		fprintf(stderr, "teems-check: %s\n", errbuf);
		history_free(&h);
		return rv == TEEMS_ENOMEM ? EXIT_NOMEM : EXIT_BAD_INPUT;
	}
	switch (res.verdict) {
	case LINCHECK_OK:
		printf("linearizable: %zu ops, %zu keys\n", res.ops, res.keys);
		break;
	case LINCHECK_VIOLATION:
		printf("NOT linearizable: key ");
		print_key(res.key);
		printf("\n%s", res.explanation);
		status = EXIT_VIOLATION;
		break;
	case LINCHECK_UNKNOWN:
		printf("unknown: budget exceeded (key ");
		print_key(res.key);
		printf("; %zu ops, %zu keys; raise --max-states)\n%s", res.ops, res.keys,
		       res.explanation);
		status = EXIT_NO_VERDICT;
		break;
	}
	lincheck_result_free(&res);

	if (monotonic) {
		rv = lincheck_monotonic_reads(&h, &res, errbuf);
		if (rv != 0) {
			fprintf(stderr, "teems-check: %s\n", errbuf);
			history_free(&h);
			return rv == TEEMS_ENOMEM ? EXIT_NOMEM : EXIT_BAD_INPUT;
		}
		if (res.verdict == LINCHECK_OK) {
			printf("monotonic reads: %zu ops, %zu keys\n", res.ops, res.keys);
		} else {
			printf("NOT monotonic reads: key ");
			print_key(res.key);
			printf("\n%s", res.explanation);
			status = EXIT_VIOLATION;
		}
		lincheck_result_free(&res);
	}
	history_free(&h);
	return status;
}
