/* Redis's glob (kv.h kv_glob_match), written as the usual single-star backtracking loop: every
 * token but `*` matches exactly one byte, so on a mismatch it is enough to let the most recent
 * `*` swallow one more byte. That gives the answers of Redis's recursive stringmatchlen
 * (util.c) without its recursion, including its quirks, which a client may rely on: an
 * unclosed `[` takes the rest of the pattern as its set, `[a-]` is a range up to `]`, a
 * trailing `\` is a literal backslash, and a non-empty pattern never matches the empty string
 * (SCAN and KEYS special-case the pattern "*" themselves). */
#include "kv/kv.h"

/* Does the token at pat[*i] match byte c? Advances *i past the token. */
static bool token_match(const uint8_t *pat, size_t plen, size_t *i, uint8_t c)
{
	size_t j = *i;
	bool match = false, negate;

	switch (pat[j]) {
	case '?':
		*i = j + 1;
		return true;
	case '[':
		j++;
		negate = j < plen && pat[j] == '^';
		if (negate)
			j++;
		for (;;) {
			if (j >= plen)
				break; /* unclosed: the set runs to the end */
			if (pat[j] == '\\' && plen - j >= 2) {
				if (pat[j + 1] == c)
					match = true;
				j += 2;
			} else if (pat[j] == ']') {
				j++;
				break;
			} else if (plen - j >= 3 && pat[j + 1] == '-') {
				uint8_t lo = pat[j], hi = pat[j + 2];

				if (lo > hi) {
					uint8_t t = lo;

					lo = hi;
					hi = t;
				}
				if (c >= lo && c <= hi)
					match = true;
				j += 3;
			} else {
				if (pat[j] == c)
					match = true;
				j++;
			}
		}
		*i = j;
		return negate ? !match : match;
	case '\\':
		if (plen - j >= 2)
			j++;
		/* fall through */
	default:
		*i = j + 1;
		return pat[j] == c;
	}
}

bool kv_glob_match(const uint8_t *pat, size_t plen, const uint8_t *s, size_t slen)
{
	size_t pi = 0, si = 0, star_p = 0, star_s = 0;
	bool have_star = false;

	if (slen == 0)
		return plen == 0;
	while (si < slen) {
		size_t next = pi;

		if (pi < plen && pat[pi] == '*') {
			while (pi < plen && pat[pi] == '*')
				pi++;
			if (pi == plen)
				return true;
			have_star = true;
			star_p = pi;
			star_s = si;
			continue;
		}
		if (pi < plen && token_match(pat, plen, &next, s[si])) {
			pi = next;
			si++;
			continue;
		}
		if (!have_star)
			return false;
		pi = star_p;
		si = ++star_s;
	}
	while (pi < plen && pat[pi] == '*')
		pi++;
	return pi == plen;
}
