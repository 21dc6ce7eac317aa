/* teemsd's log: one line per event on stderr, "2026-11-22T00:01:02.345Z r1 <message>"
 * (contracts.md, item 4). The line is assembled first and written with one call so lines of
 * the loop thread and of a dying process do not interleave mid-line. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/teemsd_internal.h"

static unsigned log_replica;

void teemsd_log_init(unsigned replica_id)
{
	log_replica = replica_id;
}

void teemsd_log(const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int k;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	k = snprintf(line + n, sizeof(line) - n, ".%03ldZ r%u ", ts.tv_nsec / 1000000, log_replica);
	if (k > 0)
		n += (size_t)k;
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (k > 0)
		n += (size_t)k < sizeof(line) - n - 1 ? (size_t)k : sizeof(line) - n - 2;
	/* one line per event: a message with a newline inside would break the format */
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nowhere else to report it */
	}
}
