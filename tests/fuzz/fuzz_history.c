/* Fuzzes the history parser (tests/sim/history.h): it must never crash, and whatever it
 * accepts must format back to text that parses to the same ops and formats to the same text.
 * Accepted histories also go through both checkers with a small search budget. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "teems/err.h"

#include "history.h"
#include "lincheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lincheck_options opt = {.max_states_per_key = 5000};
	struct history h, back;
	struct history_str s = {0}, s2 = {0};
	struct lincheck_result res;
	char errbuf[TEEMS_ERRBUF_LEN];

	history_init(&h);
	history_init(&back);
	if (history_parse(&h, (const char *)data, size, errbuf) != 0) {
		if (h.n != 0 || strncmp(errbuf, "line ", 5) != 0)
			abort();
		return 0;
	}
	if (history_format(&h, &s) != 0 || history_parse(&back, s.data, s.len, errbuf) != 0 ||
	    back.n != h.n)
		abort();
	for (size_t i = 0; i < h.n; i++)
		if (!history_op_equal(&h.ops[i], &back.ops[i]))
			abort();
	if (history_format(&back, &s2) != 0 || s2.len != s.len || memcmp(s.data, s2.data, s.len))
		abort();

	if (lincheck_check(&h, &opt, &res, errbuf) != 0)
		abort();
	if ((res.verdict == LINCHECK_OK) != (res.explanation == NULL))
		abort();
	lincheck_result_free(&res);
	if (lincheck_monotonic_reads(&h, &res, errbuf) != 0)
		abort();
	lincheck_result_free(&res);

	history_str_free(&s);
	history_str_free(&s2);
	history_free(&back);
	history_free(&h);
	return 0;
}
