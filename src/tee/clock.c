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
 * Counter verifier (verify = counter; tee.h says what it detects and what it cannot). A thread
 * stores an ever-increasing count; every read samples it inside the TSC bracket, and a count
 * that got further since the previous read or the anchor than the TSC interval allows taints
 * ("counter"). Counter time is count / r_max, with r_max the counter's fastest rate seen in any
 * calibration sub-window, times (1 + counter_margin). Why the maximum, and why every rounding
 * goes the same way: counter time must stay a lower bound on real time, because the check only
 * ever concludes "more time passed than the TSC says". An r_max that is too high makes counter
 * time too small: the verifier misses small slowdowns (its tolerance grows by the margin) but
 * never taints an honest TSC. An r_max that is too low (a calibration that saw the counter
 * descheduled or its core throttled) would make an honest TSC look slow as soon as the counter
 * runs at full speed. So each sub-window's rate divides by its shortest possible TSC interval,
 * the largest is kept, and the margin covers a CPU that later runs the loop a little faster.
 * A descheduled or slow counter only makes counter time smaller: never a taint.
 *
 * Arithmetic is integer: TSC ticks and counts convert to nanoseconds with 32.32 fixed-point
 * multipliers from calibration, and rho is held in parts per billion, so results do not depend
 * on the floating-point environment. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
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
#define DEFAULT_COUNTER_MARGIN 0.05
/* The counter's rate is measured over this many sub-windows of the calibration (0.5 ms each
 * by default): short enough that on a loaded machine some of them still see the counter thread
 * run without being descheduled. Dependent multiply-adds per count (about 4 cycles each): a
 * latency-bound chain instead of a bare store loop, whose rate depends on what an SMT sibling
 * does and on readers pulling its cache line. Measured on a shared 2-vCPU VM at load 2 to 6, in
 * batches of 60 calibrations each followed by 100 ms of free running: the fastest later 2 ms
 * exceeded the calibrated maximum by up to 2.7x (bare loop) or 1.5x (chain) with 2 ms
 * sub-windows, and by up to 2.0x (bare loop) or 1.07x (chain) with 0.5 ms ones. */
#define COUNTER_PIECES 100
#define COUNTER_CHAIN 16
/* How long tee_clock_open waits for a new counter thread to be scheduled at all. */
#define COUNTER_START_NS (1000 * 1000000ull)
#define CALIBRATION_SAMPLES 5	   /* keep the tightest bracket of this many */
#define CALIBRATION_MAX_WAITS 1000 /* a host clock that will not advance is an error */
#define TSC_HZ_MIN (10 * 1000000ull)
#define TSC_HZ_MAX (100 * NS_PER_S)

/* One read: the host clock (and with verify = counter the counter) bracketed by two TSC reads. */
struct sample {
	uint64_t tsc_a;
	uint64_t host;
	uint64_t cnt;
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
	enum tee_clock_verify verify;
	uint64_t counter_margin_ppb;
	uint64_t cnt_mult; /* verify = counter: nanoseconds per count at r_max, 32.32 */
	uint64_t counter_hz;

	struct sample prev;	     /* the previous read */
	struct sample anchor;	     /* start of the current segment */
	uint64_t l_anchor, h_anchor; /* unpadded bounds at the anchor */
	uint64_t h_last;	     /* unpadded upper bound at the previous read */
	uint64_t lo, hi;	     /* last reported: never decrease */

	uint64_t epoch;
	uint64_t reads;
	uint64_t by_reason[TEE_CLOCK_TAINT_N_];
	enum tee_clock_taint last_taint;

	/* The counter thread (verify = counter with the real sources). The count has a cache
	 * line of its own: the thread stores to it continuously, and a reader sharing the line
	 * with the mutex would slow both. (Padding, not _Alignas: the struct comes from
	 * teems_calloc, which promises only malloc's alignment.) */
	bool counter_running;
	pthread_t counter_thread;
	char pad_a[64];
	_Atomic uint64_t count;
	char pad_b[64];
	atomic_bool counter_stop;
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

/* The spinning counter: COUNTER_CHAIN steps of a 64-bit LCG per count, the empty asm keeping
 * the compiler from folding the chain into one step. Relaxed ordering is enough: a reader needs
 * some recent value, and the value it sees lags the thread's own by at most the store buffer's
 * drain time (nanoseconds), which slack_ns covers many times over. A plain store (single
 * writer) rather than an atomic increment keeps the loop's rate that of the chain. */
static void *counter_main(void *arg)
{
	struct tee_clock *c = arg;
	uint64_t n = 0, x = (uint64_t)(uintptr_t)arg;

	while (!atomic_load_explicit(&c->counter_stop, memory_order_relaxed)) {
		for (int i = 0; i < COUNTER_CHAIN; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			__asm__ volatile("" : "+r"(x));
		}
		atomic_store_explicit(&c->count, ++n, memory_order_relaxed);
	}
	return NULL;
}

/* A thread just created may not run for a while on a loaded machine; calibrating before it
 * does would only fail. Waits (in host time) until it has counted. */
static int counter_wait_start(struct tee_clock *c, char *errbuf)
{
	uint64_t t0 = c->src.host_ns(c->src.arg), t;

	while (atomic_load_explicit(&c->count, memory_order_relaxed) == 0) {
		t = c->src.host_ns(c->src.arg);
		if (t < t0 || t - t0 > COUNTER_START_NS)
			return teems_errf(errbuf, TEEMS_ECLOCK,
					  "clock: the counter thread did not run within 1 s");
		c->src.sleep_ns(c->src.arg, 100 * 1000);
	}
	return TEEMS_OK;
}

static void counter_stop(struct tee_clock *c)
{
	if (!c->counter_running)
		return;
	atomic_store_explicit(&c->counter_stop, true, memory_order_relaxed);
	pthread_join(c->counter_thread, NULL);
	c->counter_running = false;
}

static uint64_t read_counter(const struct tee_clock *c)
{
	if (c->src.counter != NULL)
		return c->src.counter(c->src.arg);
	return atomic_load_explicit(&c->count, memory_order_relaxed);
}

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

static uint64_t fixed_mul(uint64_t x, uint64_t mult)
{
	unsigned __int128 ns = ((unsigned __int128)x * mult) >> 32;

	return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

static uint64_t ticks_to_ns(const struct tee_clock *c, uint64_t ticks)
{
	return fixed_mul(ticks, c->mult);
}

/* Rounded down (the multiplier is, too): counter time only ever errs short. */
static uint64_t counts_to_ns(const struct tee_clock *c, uint64_t counts)
{
	return fixed_mul(counts, c->cnt_mult);
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
	s.cnt = c->verify == TEE_CLOCK_VERIFY_COUNTER ? read_counter(c) : 0;
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

/* One calibration sub-window of the counter, from p to s. The counter reads lie inside the TSC
 * brackets, so at least s.tsc_a - p.tsc_b ticks separate them; dividing by that shortest
 * interval overestimates the rate, the safe direction. Keeps the fastest sub-window (the largest
 * dc / dt) in *best_dt, *best_dc. */
static void counter_piece(const struct sample *p, const struct sample *s, uint64_t *best_dt,
			  uint64_t *best_dc)
{
	uint64_t dt, dc;

	if (s->tsc_a <= p->tsc_b || s->cnt <= p->cnt)
		return;
	dt = s->tsc_a - p->tsc_b;
	dc = s->cnt - p->cnt;
	if (*best_dc == 0 || (unsigned __int128)dc * *best_dt > (unsigned __int128)*best_dc * dt) {
		*best_dt = dt;
		*best_dc = dc;
	}
}

/* cnt_mult from the fastest sub-window, in nanoseconds per count, rounded down and divided by
 * (1 + counter_margin): both make counter time shorter (file comment). */
static int calibrate_counter(struct tee_clock *c, uint64_t best_dt, uint64_t best_dc, char *errbuf)
{
	unsigned __int128 m;

	if (best_dc == 0)
		return teems_errf(
			errbuf, TEEMS_ECLOCK,
			"clock: the verifier's counter did not advance during calibration");
	m = ((unsigned __int128)ticks_to_ns(c, best_dt) << 32) / best_dc;
	m = m * NS_PER_S / (NS_PER_S + c->counter_margin_ppb);
	if (m == 0 || m > UINT64_MAX)
		return teems_errf(errbuf, TEEMS_ECLOCK,
				  "clock: implausible counter rate (%llu counts in %llu ticks)",
				  (unsigned long long)best_dc, (unsigned long long)best_dt);
	c->cnt_mult = (uint64_t)m;
	m = ((unsigned __int128)NS_PER_S << 32) / c->cnt_mult;
	c->counter_hz = m > UINT64_MAX ? UINT64_MAX : (uint64_t)m;
	return TEEMS_OK;
}

/* Measures the TSC frequency against the host clock over calibration_ns. The host clock is the
 * reference only here; a host that lies during calibration skews the rate, which is one reason
 * sim trusts the rate by assumption and a real backend takes the frequency from the platform
 * (CPUID leaf 0x15, or the Secure TSC frequency) instead (docs/SECURITY.md). With
 * verify = counter the wait is cut into COUNTER_PIECES sub-windows, and the counter's rate is
 * measured against the TSC over each. */
static int calibrate(struct tee_clock *c, uint64_t window, char *errbuf)
{
	struct sample s0, s, s1, piece_start;
	uint64_t dticks, dhost, elapsed, piece = window, best_dt = 0, best_dc = 0;
	unsigned __int128 hz;
	int waits = 0, rv;

	if (c->verify == TEE_CLOCK_VERIFY_COUNTER)
		piece = max_u64(window / COUNTER_PIECES, 1);
	s0 = take_tight(c);
	if (s0.tsc_b < s0.tsc_a)
		return teems_errf(errbuf, TEEMS_ECLOCK, "clock: the TSC runs backwards");
	piece_start = s0;
	c->src.sleep_ns(c->src.arg, piece);
	for (;;) {
		s = take(c);
		if (s.host < s0.host)
			return teems_errf(errbuf, TEEMS_ECLOCK,
					  "clock: host clock went backwards during calibration");
		if (c->verify == TEE_CLOCK_VERIFY_COUNTER) {
			counter_piece(&piece_start, &s, &best_dt, &best_dc);
			piece_start = s;
		}
		elapsed = s.host - s0.host;
		if (elapsed >= window)
			break;
		if (++waits > CALIBRATION_MAX_WAITS)
			return teems_errf(errbuf, TEEMS_ECLOCK,
					  "clock: host clock does not advance");
		c->src.sleep_ns(c->src.arg, min_u64(piece, window - elapsed));
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
	if (c->verify == TEE_CLOCK_VERIFY_COUNTER) {
		rv = calibrate_counter(c, best_dt, best_dc, errbuf);
		if (rv != TEEMS_OK)
			return rv;
	}

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
	if (src != NULL && (src->tsc != NULL || src->host_ns != NULL || src->counter != NULL)) {
		if (src->tsc == NULL || src->host_ns == NULL)
			return teems_errf(errbuf, TEEMS_EINVAL,
					  "clock: a source needs both tsc and host_ns");
		if (c->verify == TEE_CLOCK_VERIFY_COUNTER && src->counter == NULL)
			return teems_errf(
				errbuf, TEEMS_EINVAL,
				"clock: verify = counter with a fake tsc needs a fake "
				"counter (a real thread cannot be calibrated against it)");
		c->src = *src;
		if (c->verify != TEE_CLOCK_VERIFY_COUNTER)
			c->src.counter = NULL;
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
	c->src.counter = NULL; /* verify = counter: the thread's count (read_counter) */
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
	double rho, margin;
	int rv;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	rho = opts->rho != 0 ? opts->rho : DEFAULT_RHO;
	if (!(rho > 0 && rho < 0.5)) /* also refuses NaN */
		return teems_errf(errbuf, TEEMS_EINVAL, "clock: rho must be in (0, 0.5)");
	if (opts->verify != TEE_CLOCK_VERIFY_MONOTONIC && opts->verify != TEE_CLOCK_VERIFY_COUNTER)
		return teems_errf(errbuf, TEEMS_EINVAL, "clock: unknown verify mode %d",
				  (int)opts->verify);
	margin = opts->counter_margin != 0 ? opts->counter_margin : DEFAULT_COUNTER_MARGIN;
	if (!(margin > 0 && margin < 1))
		return teems_errf(errbuf, TEEMS_EINVAL, "clock: counter_margin must be in (0, 1)");
	c = teems_calloc(1, sizeof(*c));
	if (c == NULL)
		return teems_errf(errbuf, TEEMS_ENOMEM, "clock: out of memory");
	c->rho_ppb = (uint64_t)(rho * 1e9 + 0.5);
	c->counter_margin_ppb = (uint64_t)(margin * 1e9 + 0.5);
	c->slack_ns = opts->slack_ns != 0 ? opts->slack_ns : DEFAULT_SLACK_NS;
	c->window_ns = opts->window_ns != 0 ? opts->window_ns : DEFAULT_WINDOW_NS;
	c->verify = opts->verify;
	atomic_init(&c->count, 0);
	atomic_init(&c->counter_stop, false);
	rv = clock_source_init(c, opts->source, errbuf);
	if (rv != TEEMS_OK)
		goto err_free;
	/* Before calibration, which measures the thread's rate. */
	if (c->verify == TEE_CLOCK_VERIFY_COUNTER && c->src.counter == NULL) {
		if (pthread_create(&c->counter_thread, NULL, counter_main, c) != 0) {
			rv = teems_errf(errbuf, TEEMS_ENOMEM,
					"clock: cannot start the counter thread");
			goto err_free;
		}
		c->counter_running = true;
		rv = counter_wait_start(c, errbuf);
		if (rv != TEEMS_OK)
			goto err_stop_counter;
	}
	rv = calibrate(c, opts->calibration_ns != 0 ? opts->calibration_ns : DEFAULT_CALIBRATION_NS,
		       errbuf);
	if (rv != TEEMS_OK)
		goto err_stop_counter;
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		rv = teems_errf(errbuf, TEEMS_ENOMEM, "clock: cannot create mutex");
		goto err_stop_counter;
	}
	*out = c;
	return TEEMS_OK;

err_stop_counter:
	counter_stop(c);
err_free:
	teems_free(c);
	return rv;
}

void tee_clock_close(struct tee_clock *c)
{
	if (c == NULL)
		return;
	counter_stop(c);
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

/* Counter time from p to s, a lower bound on the real time between the two counter reads;
 * 0 if the counter went backwards (only a broken fake can: it then claims nothing). */
static uint64_t counter_elapsed(const struct tee_clock *c, const struct sample *p,
				const struct sample *s)
{
	return s->cnt >= p->cnt ? counts_to_ns(c, s->cnt - p->cnt) : 0;
}

/* Whether the counter got further from p to s than the TSC allows: the TSC's longest reading
 * of the interval between the two counter reads, plus rho and the slack, is still shorter than
 * the counter's shortest. Only ever "the TSC ran slow"; a slow counter never makes this true.
 * Requires p.tsc_a <= s.tsc_b. */
static bool counter_ahead(const struct tee_clock *c, const struct sample *p, const struct sample *s)
{
	uint64_t tmax = ticks_to_ns(c, s->tsc_b - p->tsc_a);

	return counter_elapsed(c, p, s) > sat_add(tmax, sat_add(rho_of(c, tmax), c->slack_ns));
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
	if (c->verify == TEE_CLOCK_VERIFY_COUNTER &&
	    (counter_ahead(c, &c->prev, s) || counter_ahead(c, &c->anchor, s)))
		return TEE_CLOCK_TAINT_COUNTER;
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
		 * that went backwards claims nothing. The counter's claim, a lower bound on real
		 * time, can only raise hi; lo does not need it. */
		host = s.host >= a->host ? s.host - a->host : 0;
		tmin = s.tsc_a >= a->tsc_b ? ticks_to_ns(c, s.tsc_a - a->tsc_b) : 0;
		tmax = s.tsc_b >= a->tsc_a ? ticks_to_ns(c, s.tsc_b - a->tsc_a) : 0;
		t = min_u64(tmin, host);
		l = c->l_anchor + t - min_u64(t, rho_of(c, t));
		t = max_u64(tmax, host);
		if (c->verify == TEE_CLOCK_VERIFY_COUNTER)
			t = max_u64(t, counter_elapsed(c, a, &s));
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
	out->verify = c->verify;
	if (c->verify == TEE_CLOCK_VERIFY_COUNTER) {
		out->counter_hz = c->counter_hz;
		out->counter = read_counter(c);
	}
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
	case TEE_CLOCK_TAINT_COUNTER:
		return "counter";
	default:
		return "unknown";
	}
}

const char *tee_clock_verify_name(enum tee_clock_verify verify)
{
	switch (verify) {
	case TEE_CLOCK_VERIFY_MONOTONIC:
		return "monotonic";
	case TEE_CLOCK_VERIFY_COUNTER:
		return "counter";
	default:
		return "unknown";
	}
}
