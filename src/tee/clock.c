/* The trusted clock (DESIGN.md section 8; contract in tee.h, "Trusted clock").
 *
 * Model. Time is counted in segments that start at an anchor (a past reading). Within a segment
 * the bounds come from the TSC alone:
 *     L = L_anchor + T * (1 - rho),  H = H_anchor + T * (1 + rho),  T = TSC time since anchor,
 * and the reported bounds are lo = L - slack, hi = H + slack, made monotonic. Every read checks
 * the host clock against the TSC since the previous read (jump) and since the anchor (rate). A
 * clean read older than window_ns becomes the new anchor. A read that fails a check taints the
 * clock and closes the segment conservatively, as DESIGN.md section 8 asks ("a tainted interval
 * is never counted"): the segment adds to L what the slower of the two clocks claims, and to H
 * what the faster claims, so a clock that jumps forward never moves lo forward and a clock that
 * stalls never holds hi back. Then the tainting read becomes the anchor.
 *
 * Arithmetic is integer: TSC ticks convert to nanoseconds with a 32.32 fixed-point multiplier
 * from calibration, and rho is held in parts per billion, so results do not depend on the
 * floating-point environment. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <x86intrin.h>
#define CLOCK_HAVE_TSC 1
#else
#define CLOCK_HAVE_TSC 0
#endif

#include "common/alloc.h"
#include "tee.h"
#include "teems/err.h"

#define NS_PER_S 1000000000ull
#define DEFAULT_CALIBRATION_NS (50 * 1000000ull)
#define DEFAULT_RHO 0.01
#define DEFAULT_SLACK_NS (1000000ull)
#define DEFAULT_WINDOW_NS NS_PER_S
#define CALIBRATION_SAMPLES 5	   /* keep the tightest bracket of this many */
#define CALIBRATION_MAX_WAITS 1000 /* a host clock that will not advance is an error */
#define TSC_HZ_MIN (10 * 1000000ull)
#define TSC_HZ_MAX (100 * NS_PER_S)

/* One read: the host clock bracketed by two TSC reads. */
struct sample {
	uint64_t tsc_a;
	uint64_t host;
	uint64_t tsc_b;
};

struct tee_clock {
	pthread_mutex_t lock;
	struct tee_clock_source src;
	uint64_t rho_ppb;
	uint64_t slack_ns;
	uint64_t window_ns;
	uint64_t mult; /* nanoseconds per tick, 32.32 fixed point */
	uint64_t tsc_hz;

	struct sample prev;	     /* the previous read */
	struct sample anchor;	     /* start of the current segment */
	uint64_t l_anchor, h_anchor; /* unpadded bounds at the anchor */
	uint64_t h_last;	     /* unpadded upper bound at the previous read */
	uint64_t lo, hi;	     /* last reported: never decrease */

	uint64_t epoch;
	uint64_t reads;
	uint64_t by_reason[TEE_CLOCK_TAINT_N_];
	enum tee_clock_taint last_taint;
};

#if CLOCK_HAVE_TSC
static uint64_t real_tsc(void *arg)
{
	uint64_t t;

	/* rdtsc is not ordered with surrounding loads; the fences keep the bracket honest. */
	_mm_lfence();
	t = __rdtsc();
	_mm_lfence();
	return t;
}

/* CPUID.80000007H:EDX[8]: the TSC runs at a constant rate in every P-, C- and T-state. */
static bool tsc_invariant(void)
{
	unsigned int a, b, c, d;

	if (!__get_cpuid(0x80000007u, &a, &b, &c, &d))
		return false;
	return (d >> 8) & 1;
}
#endif

static uint64_t real_host_ns(void *arg)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void real_sleep_ns(void *arg, uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t ticks_to_ns(const struct tee_clock *c, uint64_t ticks)
{
	unsigned __int128 ns = ((unsigned __int128)ticks * c->mult) >> 32;

	return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

/* x * rho, rounded up: rho only ever widens a bound or a tolerance. */
static uint64_t rho_of(const struct tee_clock *c, uint64_t x)
{
	unsigned __int128 v = (unsigned __int128)x * c->rho_ppb + (NS_PER_S - 1);

	return (uint64_t)(v / NS_PER_S);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static struct sample take(const struct tee_clock *c)
{
	struct sample s;

	s.tsc_a = c->src.tsc(c->src.arg);
	s.host = c->src.host_ns(c->src.arg);
	s.tsc_b = c->src.tsc(c->src.arg);
	return s;
}

/* The sample with the narrowest bracket of a few: the least disturbed by preemption. */
static struct sample take_tight(const struct tee_clock *c)
{
	struct sample best = take(c), s;

	for (int i = 1; i < CALIBRATION_SAMPLES; i++) {
		s = take(c);
		if (s.tsc_b >= s.tsc_a &&
		    (best.tsc_b < best.tsc_a || s.tsc_b - s.tsc_a < best.tsc_b - best.tsc_a))
			best = s;
	}
	return best;
}

static uint64_t tsc_mid(const struct sample *s)
{
	return s->tsc_a + (s->tsc_b - s->tsc_a) / 2;
}

/* Measures the TSC frequency against the host clock over calibration_ns. The host clock is the
 * reference only here; a host that lies during calibration skews the rate, which is one reason
 * sim trusts the rate by assumption and a real backend takes the frequency from the platform
 * (CPUID leaf 0x15, or the Secure TSC frequency) instead (docs/SECURITY.md). */
static int calibrate(struct tee_clock *c, uint64_t window, char *errbuf)
{
	struct sample s0, s, s1;
	uint64_t dticks, dhost, elapsed;
	unsigned __int128 hz;
	int waits = 0;

	s0 = take_tight(c);
	if (s0.tsc_b < s0.tsc_a)
		return teems_errf(errbuf, TEEMS_ECLOCK, "clock: the TSC runs backwards");
	c->src.sleep_ns(c->src.arg, window);
	for (;;) {
		s = take(c);
		if (s.host < s0.host)
			return teems_errf(errbuf, TEEMS_ECLOCK,
					  "clock: host clock went backwards during calibration");
		elapsed = s.host - s0.host;
		if (elapsed >= window)
			break;
		if (++waits > CALIBRATION_MAX_WAITS)
			return teems_errf(errbuf, TEEMS_ECLOCK,
					  "clock: host clock does not advance");
		c->src.sleep_ns(c->src.arg, window - elapsed);
	}
	s1 = take_tight(c);
	if (s1.host < s0.host || s1.tsc_b < s1.tsc_a || tsc_mid(&s1) <= tsc_mid(&s0) ||
	    s1.tsc_a < s0.tsc_b)
		return teems_errf(errbuf, TEEMS_ECLOCK,
				  "clock: the TSC does not advance during calibration");
	dticks = tsc_mid(&s1) - tsc_mid(&s0);
	dhost = s1.host - s0.host;
	hz = (unsigned __int128)dticks * NS_PER_S / dhost;
	if (hz < TSC_HZ_MIN || hz > TSC_HZ_MAX)
		return teems_errf(
			errbuf, TEEMS_ECLOCK,
			"clock: implausible TSC frequency %llu Hz (host %llu ns, %llu ticks)",
			(unsigned long long)(hz > UINT64_MAX ? UINT64_MAX : hz),
			(unsigned long long)dhost, (unsigned long long)dticks);
	c->tsc_hz = (uint64_t)hz;
	c->mult = (uint64_t)(((unsigned __int128)dhost << 32) / dticks);

	/* The clock starts at s0's first TSC read; the first segment starts at s1. */
	elapsed = ticks_to_ns(c, s1.tsc_b - s0.tsc_a);
	c->anchor = s1;
	c->prev = s1;
	c->l_anchor = elapsed - min_u64(elapsed, rho_of(c, elapsed));
	c->h_anchor = sat_add(elapsed, rho_of(c, elapsed));
	c->h_last = c->h_anchor;
	c->lo = c->l_anchor > c->slack_ns ? c->l_anchor - c->slack_ns : 0;
	c->hi = sat_add(c->h_anchor, c->slack_ns);
	return TEEMS_OK;
}

static int clock_source_init(struct tee_clock *c, const struct tee_clock_source *src, char *errbuf)
{
	if (src != NULL && (src->tsc != NULL || src->host_ns != NULL)) {
		if (src->tsc == NULL || src->host_ns == NULL)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "clock: a source needs both tsc and host_ns");
		c->src = *src;
		if (c->src.sleep_ns == NULL)
			c->src.sleep_ns = real_sleep_ns;
		return TEEMS_OK;
	}
#if CLOCK_HAVE_TSC
	if (!tsc_invariant())
		return teems_errf(errbuf, TEEMS_ECLOCK,
				  "clock: this CPU does not report an invariant TSC "
				  "(CPUID.80000007H:EDX[8]); the sim clock needs one");
	c->src.tsc = real_tsc;
	c->src.host_ns = real_host_ns;
	c->src.sleep_ns = src != NULL && src->sleep_ns != NULL ? src->sleep_ns : real_sleep_ns;
	c->src.arg = NULL;
	return TEEMS_OK;
#else
	return teems_errf(errbuf, TEEMS_ECLOCK,
			  "clock: no TSC on this architecture; the sim clock needs x86");
#endif
}

int tee_clock_open(const struct tee_clock_options *opts, struct tee_clock **out, char *errbuf)
{
	static const struct tee_clock_options defaults;
	struct tee_clock *c;
	double rho;
	int rv;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	rho = opts->rho != 0 ? opts->rho : DEFAULT_RHO;
	if (!(rho > 0 && rho < 0.5)) /* also refuses NaN */
		return teems_errf(errbuf, TEEMS_EINVAL, "clock: rho must be in (0, 0.5)");
	c = teems_calloc(1, sizeof(*c));
	if (c == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "clock: out of memory");
	c->rho_ppb = (uint64_t)(rho * 1e9 + 0.5);
	c->slack_ns = opts->slack_ns != 0 ? opts->slack_ns : DEFAULT_SLACK_NS;
	c->window_ns = opts->window_ns != 0 ? opts->window_ns : DEFAULT_WINDOW_NS;
	rv = clock_source_init(c, opts->source, errbuf);
	if (rv != TEEMS_OK)
		goto err_free;
	rv = calibrate(c, opts->calibration_ns != 0 ? opts->calibration_ns : DEFAULT_CALIBRATION_NS,
		       errbuf);
	if (rv != TEEMS_OK)
		goto err_free;
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "clock: cannot create mutex");
		goto err_free;
	}
	*out = c;
	return TEEMS_OK;

err_free:
	teems_free(c);
	return rv;
}

void tee_clock_close(struct tee_clock *c)
{
	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->lock);
	teems_free(c);
}

/* Whether the host and the TSC disagree about the time from p to s beyond rho and the slack.
 * The bracket gives the TSC's interval [tmin, tmax] for the host's; only time outside it, beyond
 * the tolerance, counts. Requires p.host <= s.host and p.tsc_b <= s.tsc_a. */
static bool disagrees(const struct tee_clock *c, const struct sample *p, const struct sample *s)
{
	uint64_t dh = s->host - p->host;
	uint64_t tmin = ticks_to_ns(c, s->tsc_a - p->tsc_b);
	uint64_t tmax = ticks_to_ns(c, s->tsc_b - p->tsc_a);
	uint64_t tol = sat_add(rho_of(c, tmax), c->slack_ns);

	if (dh > tmax)
		return dh - tmax > tol;
	if (dh < tmin)
		return tmin - dh > tol;
	return false;
}

static enum tee_clock_taint check(const struct tee_clock *c, const struct sample *s)
{
	if (s->tsc_b < s->tsc_a || s->tsc_a < c->prev.tsc_b)
		return TEE_CLOCK_TAINT_TSC_BACKWARDS;
	if (s->host < c->prev.host)
		return TEE_CLOCK_TAINT_HOST_BACKWARDS;
	if (disagrees(c, &c->prev, s))
		return TEE_CLOCK_TAINT_JUMP;
	if (disagrees(c, &c->anchor, s))
		return TEE_CLOCK_TAINT_RATE;
	return TEE_CLOCK_TAINT_NONE;
}

int tee_clock_now(struct tee_clock *c, struct tee_clock_reading *out)
{
	const struct sample *a;
	struct sample s;
	enum tee_clock_taint taint;
	uint64_t l, h, t, host, tmin, tmax;

	pthread_mutex_lock(&c->lock);
	s = take(c);
	c->reads++;
	taint = check(c, &s);
	a = &c->anchor;
	if (taint == TEE_CLOCK_TAINT_NONE) {
		t = ticks_to_ns(c, s.tsc_b - a->tsc_b);
		l = c->l_anchor + t - min_u64(t, rho_of(c, t));
		h = sat_add(c->h_anchor, sat_add(t, rho_of(c, t)));
		if (t >= c->window_ns) {
			c->anchor = s;
			c->l_anchor = l;
			c->h_anchor = h;
		}
	} else {
		/* Close the segment: lo gets the slower clock's claim, hi the faster's. A clock
		 * that went backwards claims nothing. */
		host = s.host >= a->host ? s.host - a->host : 0;
		tmin = s.tsc_a >= a->tsc_b ? ticks_to_ns(c, s.tsc_a - a->tsc_b) : 0;
		tmax = s.tsc_b >= a->tsc_a ? ticks_to_ns(c, s.tsc_b - a->tsc_a) : 0;
		t = min_u64(tmin, host);
		l = c->l_anchor + t - min_u64(t, rho_of(c, t));
		t = max_u64(tmax, host);
		h = max_u64(c->h_last, sat_add(c->h_anchor, sat_add(t, rho_of(c, t))));
		c->anchor = s;
		c->l_anchor = l;
		c->h_anchor = h;
		c->epoch++;
		c->by_reason[taint]++;
		c->last_taint = taint;
	}
	c->prev = s;
	c->h_last = h;
	c->lo = max_u64(c->lo, l > c->slack_ns ? l - c->slack_ns : 0);
	c->hi = max_u64(c->hi, sat_add(h, c->slack_ns));
	out->lo_ns = c->lo;
	out->hi_ns = c->hi;
	out->epoch = c->epoch;
	pthread_mutex_unlock(&c->lock);
	return TEEMS_OK;
}

void tee_clock_stats(struct tee_clock *c, struct tee_clock_stats *out)
{
	pthread_mutex_lock(&c->lock);
	memset(out, 0, sizeof(*out));
	out->tsc_hz = c->tsc_hz;
	out->reads = c->reads;
	out->taints = c->epoch;
	memcpy(out->taints_by_reason, c->by_reason, sizeof(out->taints_by_reason));
	out->last_taint = c->last_taint;
	pthread_mutex_unlock(&c->lock);
}

const char *tee_clock_taint_name(enum tee_clock_taint taint)
{
	switch (taint) {
	case TEE_CLOCK_TAINT_NONE:
		return "none";
	case TEE_CLOCK_TAINT_TSC_BACKWARDS:
		return "tsc-backwards";
	case TEE_CLOCK_TAINT_HOST_BACKWARDS:
		return "host-backwards";
	case TEE_CLOCK_TAINT_JUMP:
		return "jump";
	case TEE_CLOCK_TAINT_RATE:
		return "rate";
	default:
		return "unknown";
	}
}
