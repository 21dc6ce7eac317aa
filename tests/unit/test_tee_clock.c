/* The trusted clock (src/tee/clock.c, DESIGN.md section 8), driven by a fake TSC and a fake host
 * clock over a fake real time, so that every test knows the truth and when a taint is due.
 *
 * The fake TSC runs at 3 ticks/ns; calibration takes 50 ms of fake time. With the defaults
 * (rho = 0.01, slack = 1 ms), a read taints when host and TSC disagree, since the previous read
 * (jump) or since the anchor (rate), by more than 0.01 * elapsed + 1 ms. Each test states the
 * read at which that first happens and asserts exactly that read; removing any check makes the
 * corresponding test fail.
 *
 * The counter verifier (verify = counter) gets a fake counter at 2 counts/ns of real time: it is
 * calibrated at exactly that rate, so counter time is real time / 1.05 (the default margin). */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "tee/tee.h"
#include "teems/err.h"

#define MS 1000000ull
#define US 1000ull
#define PPM 1000000ull

struct fake {
	uint64_t true_ns;  /* real time since the clock started (the first calibration sample) */
	uint64_t tsc;	   /* what the TSC reads */
	uint64_t host;	   /* what the host clock reads */
	uint64_t tsc_ppm;  /* TSC rate relative to real time, parts per million */
	uint64_t host_ppm; /* host rate relative to real time */
	uint64_t cnt;	   /* what the verifier's counter reads */
	uint64_t cnt_ppm;  /* counter rate relative to 2 counts/ns */
	/* The reading thread is descheduled for this long right after its next TSC (host)
	 * read: real time passes in the middle of a clock read. */
	uint64_t preempt_after_tsc;
	uint64_t preempt_after_host;
};

static void fake_advance(struct fake *f, uint64_t dt);

static uint64_t fake_tsc(void *arg)
{
	struct fake *f = arg;
	uint64_t v = f->tsc;

	if (f->preempt_after_tsc != 0) {
		fake_advance(f, f->preempt_after_tsc);
		f->preempt_after_tsc = 0;
	}
	return v;
}

static uint64_t fake_host(void *arg)
{
	struct fake *f = arg;
	uint64_t v = f->host;

	if (f->preempt_after_host != 0) {
		fake_advance(f, f->preempt_after_host);
		f->preempt_after_host = 0;
	}
	return v;
}

static uint64_t fake_counter(void *arg)
{
	struct fake *f = arg;

	return f->cnt;
}

/* dt must be a multiple of 1 us so that the rates divide exactly. */
static void fake_advance(struct fake *f, uint64_t dt)
{
	f->true_ns += dt;
	f->tsc += 3 * (dt / US) * f->tsc_ppm / 1000;
	f->host += (dt / US) * f->host_ppm / 1000;
	f->cnt += 2 * (dt / US) * f->cnt_ppm / 1000;
}

static void fake_sleep(void *arg, uint64_t ns)
{
	fake_advance(arg, (ns + US - 1) / US * US);
}

struct rig {
	struct fake fake;
	struct tee_clock_source src;
	struct tee_clock *clock;
	struct tee_clock_reading last;
	unsigned long reads;
	/* Both the TSC and the host clock lie (in step): the bounds need not hold, so rig_read
	 * checks only that they never decrease. */
	bool no_truth;
};

static void rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	r->fake.tsc = 123456789000ull; /* arbitrary origins: only differences matter */
	r->fake.host = 5000000000000ull;
	r->fake.tsc_ppm = PPM;
	r->fake.host_ppm = PPM;
	r->fake.cnt = 777; /* the thread has been counting for a while */
	r->fake.cnt_ppm = PPM;
	r->src.tsc = fake_tsc;
	r->src.host_ns = fake_host;
	r->src.sleep_ns = fake_sleep;
	r->src.counter = fake_counter; /* ignored with verify = monotonic */
	r->src.arg = &r->fake;
}

static int rig_open_with(struct rig *r, struct tee_clock_options *opts, char *errbuf)
{
	rig_init(r);
	opts->source = &r->src;
	return tee_clock_open(opts, &r->clock, errbuf);
}

static void rig_open(struct rig *r)
{
	struct tee_clock_options opts;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	int rv;

	memset(&opts, 0, sizeof(opts));
	rv = rig_open_with(r, &opts, errbuf);
	if (rv != TEEMS_OK)
		print_error("tee_clock_open: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
	assert_int_equal(r->fake.true_ns, 50 * MS); /* calibrated over exactly the window */
}

static void rig_open_verify(struct rig *r, enum tee_clock_verify verify)
{
	struct tee_clock_options opts;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	int rv;

	memset(&opts, 0, sizeof(opts));
	opts.verify = verify;
	rv = rig_open_with(r, &opts, errbuf);
	if (rv != TEEMS_OK)
		print_error("tee_clock_open: %s\n", errbuf);
	assert_int_equal(rv, TEEMS_OK);
	assert_int_equal(r->fake.true_ns, 50 * MS);
}

/* Reads the clock and checks the invariants that hold whenever either clock is honest (all of
 * these tests keep at least one honest, unless they say otherwise and set r->no_truth):
 * bounds contain the truth, and never decrease. */
static struct tee_clock_reading rig_read(struct rig *r)
{
	struct tee_clock_reading now;

	assert_int_equal(tee_clock_now(r->clock, &now), TEEMS_OK);
	if (!r->no_truth && (now.lo_ns > r->fake.true_ns || now.hi_ns < r->fake.true_ns))
		fail_msg("read %lu: bounds [%llu, %llu] miss the truth %llu", r->reads + 1,
			 (unsigned long long)now.lo_ns, (unsigned long long)now.hi_ns,
			 (unsigned long long)r->fake.true_ns);
	assert_true(now.lo_ns >= r->last.lo_ns);
	assert_true(now.hi_ns >= r->last.hi_ns);
	assert_true(now.epoch >= r->last.epoch);
	r->last = now;
	r->reads++;
	return now;
}

/* Steps real time by dt and reads, n times; returns the 1-based index of the first read whose
 * epoch moved, or 0. */
static unsigned long step_until_taint(struct rig *r, uint64_t dt, unsigned long n)
{
	uint64_t epoch = r->last.epoch;

	for (unsigned long i = 1; i <= n; i++) {
		fake_advance(&r->fake, dt);
		if (rig_read(r).epoch != epoch)
			return i;
	}
	return 0;
}

static enum tee_clock_taint last_taint(struct rig *r)
{
	struct tee_clock_stats st;

	tee_clock_stats(r->clock, &st);
	return st.last_taint;
}

static void rig_close(struct rig *r)
{
	tee_clock_close(r->clock);
	r->clock = NULL;
}

/* (a) Host and TSC agree: no taint ever, over irregular intervals from 1 us to 200 ms, and the
 * bounds are tight (not merely true). */
static void test_clock_agree(void **state)
{
	struct tee_clock_stats st;
	struct rig r;
	uint64_t x = 88172645463325252ull;
	(void)state;

	rig_open(&r);
	for (int i = 0; i < 20000; i++) {
		struct tee_clock_reading now;
		uint64_t t;

		x ^= x << 13; /* xorshift64: deterministic irregular steps */
		x ^= x >> 7;
		x ^= x << 17;
		fake_advance(&r.fake, (1 + x % 200000) * US);
		now = rig_read(&r);
		assert_int_equal(now.epoch, 0);
		t = r.fake.true_ns;
		/* Width: rho on each side plus the slack, plus rounding. */
		assert_true(now.hi_ns - now.lo_ns <= t / 50 + 2 * MS + 2 * US);
	}
	tee_clock_stats(r.clock, &st);
	assert_int_equal(st.tsc_hz, 3000000000ull);
	assert_int_equal(st.reads, 20000);
	assert_int_equal(st.taints, 0);
	assert_int_equal(st.last_taint, TEE_CLOCK_TAINT_NONE);
	rig_close(&r);
}

/* Repeated reads with no time passing are fine, and lo/hi stay put. */
static void test_clock_no_time_passes(void **state)
{
	struct tee_clock_reading a, b;
	struct rig r;
	(void)state;

	rig_open(&r);
	a = rig_read(&r);
	for (int i = 0; i < 100; i++)
		b = rig_read(&r);
	assert_int_equal(a.lo_ns, b.lo_ns);
	assert_int_equal(a.hi_ns, b.hi_ns);
	assert_int_equal(b.epoch, 0);
	rig_close(&r);
}

/* (b) The host clock jumps forward 5 ms between two reads 2 ms apart: taint at that read
 * (5 ms > 0.01 * 2 ms + 1 ms), and only there. */
static void test_clock_host_jumps_forward(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	assert_int_equal(step_until_taint(&r, 2 * MS, 10), 0);
	r.fake.host += 5 * MS;
	assert_int_equal(step_until_taint(&r, 2 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_JUMP);
	assert_int_equal(r.last.epoch, 1);
	/* Re-anchored: the jump is not held against the following reads. */
	assert_int_equal(step_until_taint(&r, 2 * MS, 1000), 0);
	assert_int_equal(r.last.epoch, 1);
	rig_close(&r);
}

/* Jitter below the tolerance is not a taint: the host alternately reads 0.5 ms ahead and back
 * on time (0.5 ms < 0.02 ms + 1 ms per step, and never more than 0.5 ms since the anchor). */
static void test_clock_small_jitter_tolerated(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	for (int i = 0; i < 50; i++) {
		if (i % 2)
			r.fake.host += 500 * US;
		else if (i > 0)
			r.fake.host -= 500 * US;
		assert_int_equal(step_until_taint(&r, 2 * MS, 1), 0);
	}
	rig_close(&r);
}

/* A reader descheduled in the middle of a read (after its first TSC read, or after its host
 * read) for 10 ms is not a jump: the host read lies between the two TSC reads, and the check
 * compares it with that whole interval. */
static void test_clock_preempted_mid_read(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	assert_int_equal(step_until_taint(&r, 2 * MS, 10), 0);
	for (int i = 0; i < 20; i++) {
		if (i % 2)
			r.fake.preempt_after_tsc = 10 * MS;
		else
			r.fake.preempt_after_host = 10 * MS;
		assert_int_equal(step_until_taint(&r, 2 * MS, 1), 0);
		assert_int_equal(step_until_taint(&r, 2 * MS, 1), 0);
	}
	rig_close(&r);
}

/* (b) The host clock steps backwards: taint at once, whatever the size. */
static void test_clock_host_steps_backwards(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	assert_int_equal(step_until_taint(&r, 2 * MS, 10), 0);
	r.fake.host -= 3 * MS; /* more than the 2 ms step: the host reads less than before */
	assert_int_equal(step_until_taint(&r, 2 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_HOST_BACKWARDS);
	assert_int_equal(step_until_taint(&r, 2 * MS, 1000), 0);

	/* Backwards by just 1 ns is still backwards. */
	r.fake.host -= 1;
	assert_int_equal(step_until_taint(&r, 0, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_HOST_BACKWARDS);
	assert_int_equal(r.last.epoch, 2);
	rig_close(&r);
}

/* (b) The host moves forward, but 1.5 ms less than the TSC over 2 ms: a backward jump. */
static void test_clock_host_jumps_back_but_advances(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	assert_int_equal(step_until_taint(&r, 2 * MS, 10), 0);
	r.fake.host -= 1500 * US;
	assert_int_equal(step_until_taint(&r, 2 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_JUMP);
	rig_close(&r);
}

/* (c) The host clock freezes while the TSC runs. With reads 2 ms apart the first read already
 * disagrees by 2 ms > 1.02 ms (jump). With reads 0.25 ms apart no single step is a jump, but
 * the disagreement since the anchor, 0.25 ms * k against 0.0025 ms * k + 1 ms, passes the
 * tolerance at k = 5 (rate), and again every 5 reads after re-anchoring. */
static void test_clock_host_freezes(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.host_ppm = 0;
	assert_int_equal(step_until_taint(&r, 2 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_JUMP);
	rig_close(&r);

	rig_open(&r);
	r.fake.host_ppm = 0;
	assert_int_equal(step_until_taint(&r, 250 * US, 100), 5);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_RATE);
	assert_int_equal(step_until_taint(&r, 250 * US, 100), 5);
	assert_int_equal(r.last.epoch, 2);
	rig_close(&r);

	/* A tainted segment adds to lo only what the slower clock claims, so lo stops counting
	 * while the host is frozen (at most the 4 clean reads of one segment, 0.99 ms, show),
	 * while hi keeps following the TSC. */
	rig_open(&r);
	{
		struct tee_clock_reading before = rig_read(&r);

		r.fake.host_ppm = 0;
		for (int i = 0; i < 100; i++)
			step_until_taint(&r, 250 * US, 1);
		assert_int_equal(r.last.epoch, 20);
		assert_true(r.last.lo_ns - before.lo_ns <= 990 * US);
		assert_true(r.last.hi_ns - before.hi_ns >= 25 * MS);
	}
	rig_close(&r);
}

/* (d) The host runs 5% fast, reads 2 ms apart: each step disagrees by 0.1 ms (no jump), and
 * since the anchor by 0.1 ms * k against 0.02 ms * k + 1 ms: first at k = 13 (1.3 > 1.26; at
 * k = 12, 1.2 < 1.24). After the taint the anchor moves, so it recurs every 13 reads. */
static void test_clock_host_fast_5_percent(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.host_ppm = 1050000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 13);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_RATE);
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 13);
	assert_int_equal(r.last.epoch, 2);
	rig_close(&r);

	/* Detection is bounded in time, not only in reads: with reads 100 us apart the
	 * disagreement passes the tolerance after about 1 ms / (0.05 - 0.01) = 25 ms. */
	rig_open(&r);
	r.fake.host_ppm = 1050000;
	{
		unsigned long k = step_until_taint(&r, 100 * US, 1000);

		assert_true(k >= 248 && k <= 252);
	}
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_RATE);
	rig_close(&r);

	/* And with reads far apart, the first read catches it as a jump: 10 s * 5% = 0.5 s. */
	rig_open(&r);
	r.fake.host_ppm = 1050000;
	assert_int_equal(step_until_taint(&r, 10000 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_JUMP);
	rig_close(&r);
}

/* The host runs 5% slow: the same detection, from the other side. */
static void test_clock_host_slow_5_percent(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.host_ppm = 950000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 13);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_RATE);
	rig_close(&r);
}

/* (e) The host runs 0.5% fast: within rho, never a taint, over 10 s of 2 ms reads (the rate
 * anchor moves every second) and over reads 10 s apart. */
static void test_clock_host_fast_within_rho(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.host_ppm = 1005000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	assert_int_equal(step_until_taint(&r, 10000 * MS, 20), 0);
	r.fake.host_ppm = 995000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	rig_close(&r);
}

/* The rate check only works because the anchor is not the previous read: a 1.5% fast host is
 * never a jump at 2 ms steps (0.03 ms vs 1.02 ms) yet is caught since the anchor:
 * 0.03 k > 0.02 k + 1 at k = 101 (3.03 > 3.02; at k = 100 they are equal and do not taint). */
static void test_clock_host_fast_1_5_percent(void **state)
{
	struct rig r;
	unsigned long k;
	(void)state;

	rig_open(&r);
	r.fake.host_ppm = 1015000;
	k = step_until_taint(&r, 2 * MS, 1000);
	assert_true(k >= 100 && k <= 102);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_RATE);
	rig_close(&r);
}

/* The TSC itself drifts by 0.5% (within rho) against an honest host: no taint, and the bounds
 * still contain real time (rig_read checks) over 20 s. */
static void test_clock_tsc_drift_within_rho(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.tsc_ppm = 995000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	r.fake.tsc_ppm = 1005000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	rig_close(&r);
}

/* The TSC runs 5% slow against an honest host: detected (13 reads, as for a fast host), and
 * because each tainted segment is counted in hi by the faster clock, hi never falls behind
 * real time even though the TSC does (rig_read checks, over 1000 reads and 77 taints). */
static void test_clock_tsc_slow_host_honest(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.tsc_ppm = 950000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 13);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_RATE);
	assert_int_equal(step_until_taint(&r, 2 * MS, 1000), 13);
	for (int i = 0; i < 1000; i++)
		step_until_taint(&r, 2 * MS, 1);
	assert_true(r.last.epoch >= 70);
	rig_close(&r);
}

/* The TSC runs 5% fast against an honest host: detected at read 13 (0.1 ms * k against
 * 0.021 ms * k + 1 ms), and until then lo runs ahead of the TSC-only estimate by at most the
 * verifier's tolerance, which the slack in lo absorbs: lo never passes real time. */
static void test_clock_tsc_fast_host_honest(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.tsc_ppm = 1050000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 13);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_RATE);
	for (int i = 0; i < 1000; i++)
		step_until_taint(&r, 2 * MS, 1);
	assert_true(r.last.epoch >= 70);
	rig_close(&r);
}

/* The TSC jumps forward by a second against an honest host: a taint, and lo does not count
 * the second that did not pass (rig_read checks lo <= real time). */
static void test_clock_tsc_jumps_forward(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	assert_int_equal(step_until_taint(&r, 2 * MS, 10), 0);
	r.fake.tsc += 3 * 1000 * MS;
	assert_int_equal(step_until_taint(&r, 2 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_JUMP);
	assert_true(r.last.lo_ns < r.fake.true_ns);
	assert_true(r.last.hi_ns >= 1000 * MS); /* hi takes the TSC's word: the safe side */
	assert_int_equal(step_until_taint(&r, 2 * MS, 1000), 0);
	rig_close(&r);
}

/* The TSC goes backwards (a reset, or a host that can write it): taint, bounds stay monotonic
 * and, the host being honest, still contain real time. */
static void test_clock_tsc_backwards(void **state)
{
	struct rig r;
	(void)state;

	rig_open(&r);
	assert_int_equal(step_until_taint(&r, 2 * MS, 10), 0);
	r.fake.tsc -= 3 * 100 * MS;
	assert_int_equal(step_until_taint(&r, 2 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_TSC_BACKWARDS);
	assert_int_equal(step_until_taint(&r, 2 * MS, 1000), 0);
	assert_int_equal(r.last.epoch, 1);
	rig_close(&r);
}

static void test_clock_stats_count_reasons(void **state)
{
	struct tee_clock_stats st;
	struct rig r;
	(void)state;

	rig_open(&r);
	r.fake.host += 10 * MS;
	step_until_taint(&r, 2 * MS, 1); /* jump */
	r.fake.host -= 10 * MS;
	step_until_taint(&r, 2 * MS, 1); /* host backwards */
	r.fake.tsc -= 1;
	step_until_taint(&r, 0, 1); /* TSC backwards */
	tee_clock_stats(r.clock, &st);
	assert_int_equal(st.taints, 3);
	assert_int_equal(st.taints_by_reason[TEE_CLOCK_TAINT_JUMP], 1);
	assert_int_equal(st.taints_by_reason[TEE_CLOCK_TAINT_HOST_BACKWARDS], 1);
	assert_int_equal(st.taints_by_reason[TEE_CLOCK_TAINT_TSC_BACKWARDS], 1);
	assert_int_equal(st.taints_by_reason[TEE_CLOCK_TAINT_RATE], 0);
	assert_int_equal(st.last_taint, TEE_CLOCK_TAINT_TSC_BACKWARDS);
	assert_int_equal(st.reads, 3);
	assert_string_equal(tee_clock_taint_name(TEE_CLOCK_TAINT_RATE), "rate");
	assert_string_equal(tee_clock_taint_name(TEE_CLOCK_TAINT_JUMP), "jump");
	assert_string_equal(tee_clock_taint_name(TEE_CLOCK_TAINT_N_), "unknown");
	rig_close(&r);
}

/* Options: rho, slack and window change what is detected. */
static void test_clock_options(void **state)
{
	struct tee_clock_options opts;
	struct tee_clock_stats st;
	struct rig r;
	(void)state;

	/* rho = 0.1: a 5% fast host is within the bound. */
	memset(&opts, 0, sizeof(opts));
	opts.rho = 0.1;
	assert_int_equal(rig_open_with(&r, &opts, NULL), TEEMS_OK);
	r.fake.host_ppm = 1050000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 2000), 0);
	rig_close(&r);

	/* slack = 10 us and a 5 ms calibration: the 0.5 ms jitter is now a jump. */
	memset(&opts, 0, sizeof(opts));
	opts.slack_ns = 10 * US;
	opts.calibration_ns = 5 * MS;
	assert_int_equal(rig_open_with(&r, &opts, NULL), TEEMS_OK);
	assert_int_equal(r.fake.true_ns, 5 * MS);
	tee_clock_stats(r.clock, &st);
	assert_int_equal(st.tsc_hz, 3000000000ull);
	r.fake.host += 500 * US;
	assert_int_equal(step_until_taint(&r, 2 * MS, 1), 1);
	rig_close(&r);

	/* A short window hides a 1.5% disagreement (it never accumulates past 1 ms). */
	memset(&opts, 0, sizeof(opts));
	opts.window_ns = 20 * MS;
	assert_int_equal(rig_open_with(&r, &opts, NULL), TEEMS_OK);
	r.fake.host_ppm = 1015000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 1000), 0);
	rig_close(&r);
}

static void test_clock_bad_options(void **state)
{
	static const double bad_rho[] = {-0.01, 0.5, 1.0, NAN};
	struct tee_clock_options opts;
	struct tee_clock_source half = {.tsc = fake_tsc};
	struct tee_clock *c = (struct tee_clock *)1;
	struct rig r;
	(void)state;

	rig_init(&r);
	for (size_t i = 0; i < sizeof(bad_rho) / sizeof(bad_rho[0]); i++) {
		memset(&opts, 0, sizeof(opts));
		opts.source = &r.src;
		opts.rho = bad_rho[i];
		assert_int_equal(tee_clock_open(&opts, &c, NULL), TEEMS_EINVAL);
		assert_null(c);
	}
	memset(&opts, 0, sizeof(opts));
	opts.source = &half;
	assert_int_equal(tee_clock_open(&opts, &c, NULL), TEEMS_EINVAL);
}

/* Calibration refuses sources it cannot calibrate against. */
static void test_clock_calibration_failures(void **state)
{
	struct tee_clock_options opts;
	char errbuf[TEEMS_ERRBUF_LEN];
	struct rig r;
	(void)state;

	/* A host clock that never advances. */
	memset(&opts, 0, sizeof(opts));
	rig_init(&r);
	r.fake.host_ppm = 0;
	opts.source = &r.src;
	assert_int_equal(tee_clock_open(&opts, &r.clock, errbuf), TEEMS_ECLOCK);
	assert_non_null(strstr(errbuf, "does not advance"));
	assert_null(r.clock);

	/* A TSC that never advances. */
	rig_init(&r);
	r.fake.tsc_ppm = 0;
	assert_int_equal(tee_clock_open(&opts, &r.clock, errbuf), TEEMS_ECLOCK);
	assert_non_null(strstr(errbuf, "TSC"));

	/* A TSC at 3 kHz is not a TSC. */
	rig_init(&r);
	r.fake.tsc_ppm = 1;
	assert_int_equal(tee_clock_open(&opts, &r.clock, errbuf), TEEMS_ECLOCK);
	assert_non_null(strstr(errbuf, "implausible"));
}

static void test_clock_allocation_failure(void **state)
{
	struct tee_clock_options opts;
	struct rig r;
	int rv;
	(void)state;

	memset(&opts, 0, sizeof(opts));
	rig_init(&r);
	opts.source = &r.src;
	teems_alloc_fault(0, 0);
	rv = tee_clock_open(&opts, &r.clock, NULL);
	teems_alloc_fault(-1, 0);
	assert_int_equal(rv, TEEMS_ENOMEM);
	assert_null(r.clock);
}

/* The attack the counter verifier exists for: the host slows the TSC by 10% and moves its
 * CLOCK_MONOTONIC in step, so the host checks agree with the TSC. The counter, which the host
 * cannot speed up, gets ahead: from the anchor (here: calibration's end) counter time is
 * 2 ms * k / 1.05 against TSC time 1.8 ms * k plus 0.018 ms * k + 1 ms of tolerance, first more
 * at k = 12 (22.857 > 22.816; at k = 11, 20.952 < 20.998). After the taint the anchor moves to
 * that read, so it recurs every 12 reads. */
static void test_clock_counter_catches_slow_tsc(void **state)
{
	struct tee_clock_stats st;
	struct rig r;
	(void)state;

	rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
	r.no_truth = true;
	r.fake.tsc_ppm = 900000;
	r.fake.host_ppm = 900000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 12);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_COUNTER);
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 12);
	tee_clock_stats(r.clock, &st);
	assert_int_equal(st.taints, 2);
	assert_int_equal(st.taints_by_reason[TEE_CLOCK_TAINT_COUNTER], 2);
	assert_int_equal(st.verify, TEE_CLOCK_VERIFY_COUNTER);
	rig_close(&r);

	/* Honest time since the anchor delays detection: counter time errs short by the margin
	 * (1 - 1/1.05 of it) and the tolerance grows with it. After 10 honest reads (20 ms):
	 * 19.048 + 1.905 k > 20 + 1.8 k + 0.2 + 0.018 k + 1, first at k = 25. */
	rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
	r.no_truth = true;
	assert_int_equal(step_until_taint(&r, 2 * MS, 10), 0);
	r.fake.tsc_ppm = 900000;
	r.fake.host_ppm = 900000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 25);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_COUNTER);
	rig_close(&r);

	/* The delay is bounded because the anchor moves every window_ns (1 s) of TSC time. An
	 * attack that starts P after the anchor is seen x later once (P + x) / 1.05 > 1.01 (P +
	 * 0.9 x) + 1 ms, x > (0.0576 P + 1 ms) / 0.0434, or 12 reads after the next anchor move,
	 * (1 s - P) / 0.9 later, whichever is first: at most about 0.63 s (P = 0.46 s). Swept over
	 * P in 20 ms steps. */
	{
		unsigned long worst = 0;

		for (unsigned long p = 0; p <= 1000; p += 20) {
			unsigned long k;

			rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
			r.no_truth = true;
			assert_int_equal(step_until_taint(&r, 2 * MS, p / 2), 0);
			r.fake.tsc_ppm = 900000;
			r.fake.host_ppm = 900000;
			k = step_until_taint(&r, 2 * MS, 1000);
			assert_true(k >= 1);
			assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_COUNTER);
			worst = k > worst ? k : worst;
			rig_close(&r);
		}
		print_message("slowed by 10%%: detected within %lu ms at worst\n", 2 * worst);
		assert_true(2 * worst <= 640);
		assert_true(2 * worst >= 600); /* the analysis above is the right one */
	}

	/* Reads far apart: the first one sees it (1 s * (1/1.05 - 0.9 * 1.01) = 43 ms > 1 ms). */
	rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
	r.no_truth = true;
	r.fake.tsc_ppm = 900000;
	r.fake.host_ppm = 900000;
	assert_int_equal(step_until_taint(&r, 1000 * MS, 1), 1);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_COUNTER);
	rig_close(&r);

	/* The same lie without the counter (verify = monotonic, the default) goes unseen for 10 s,
	 * and hi, which lease holders rely on, falls behind real time by about 9%: what the
	 * counter adds. */
	rig_open_verify(&r, TEE_CLOCK_VERIFY_MONOTONIC);
	r.no_truth = true;
	r.fake.tsc_ppm = 900000;
	r.fake.host_ppm = 900000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	assert_true(r.last.hi_ns < r.fake.true_ns - 800 * MS);
	tee_clock_stats(r.clock, &st);
	assert_int_equal(st.verify, TEE_CLOCK_VERIFY_MONOTONIC);
	assert_int_equal(st.counter_hz, 0);
	rig_close(&r);
}

/* A counter taint closes the segment with the counter's claim in hi: the counter is a lower
 * bound on real time, so hi takes at least 12 * 2 ms / 1.05 = 22.857 ms (times 1 + rho) for the
 * segment, where the TSC and the host claim 21.6 ms. Compared with the same reads under
 * verify = monotonic, hi is 1.26 ms further (1.0 ms of it past rounding). */
static void test_clock_counter_taint_raises_hi(void **state)
{
	struct rig mono, cnt;
	(void)state;

	rig_open_verify(&mono, TEE_CLOCK_VERIFY_MONOTONIC);
	rig_open_verify(&cnt, TEE_CLOCK_VERIFY_COUNTER);
	mono.no_truth = cnt.no_truth = true;
	mono.fake.tsc_ppm = mono.fake.host_ppm = 900000;
	cnt.fake.tsc_ppm = cnt.fake.host_ppm = 900000;
	assert_int_equal(step_until_taint(&mono, 2 * MS, 12), 0);
	assert_int_equal(step_until_taint(&cnt, 2 * MS, 12), 12);
	assert_true(cnt.last.hi_ns >= mono.last.hi_ns + 1 * MS);
	assert_true(cnt.last.hi_ns <= mono.last.hi_ns + 1300 * US);
	assert_int_equal(cnt.last.lo_ns, mono.last.lo_ns); /* lo takes the slower claim: same */
	rig_close(&mono);
	rig_close(&cnt);
}

/* TSC and host clock both run at ppm (host in step, so only the counter could tell): 5000 reads
 * 2 ms apart with the counter verifier and no taint. */
static void assert_counter_silent(uint64_t ppm)
{
	struct rig r;

	rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
	r.no_truth = true;
	r.fake.tsc_ppm = ppm;
	r.fake.host_ppm = ppm;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	rig_close(&r);
}

/* The TSC slows by only 5%, in step with the host: within the counter's margin
 * (1 / 1.05 < 0.95 * 1.01), so not detected. That is the price of calibrating conservatively. */
static void test_clock_counter_margin_hides_small_slowdown(void **state)
{
	(void)state;
	assert_counter_silent(950000);
}

/* A descheduled counter is never evidence against the TSC: stalled for 10 s, at half speed for
 * 10 s, stalled across reads a minute apart, then back at full speed: no taint, and (TSC and
 * host honest) the bounds hold throughout. */
static void test_clock_counter_stall_no_taint(void **state)
{
	struct rig r;
	(void)state;

	rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 0);
	r.fake.cnt_ppm = 0;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	r.fake.cnt_ppm = PPM;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	r.fake.cnt_ppm = PPM / 2;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	r.fake.cnt_ppm = 0;
	assert_int_equal(step_until_taint(&r, 60000 * MS, 5), 0);
	r.fake.cnt_ppm = PPM;
	assert_int_equal(step_until_taint(&r, 60000 * MS, 5), 0);
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	/* Preempted in the middle of a read: the counter read lies in the TSC bracket. */
	for (int i = 0; i < 20; i++) {
		if (i % 2)
			r.fake.preempt_after_tsc = 10 * MS;
		else
			r.fake.preempt_after_host = 10 * MS;
		assert_int_equal(step_until_taint(&r, 2 * MS, 1), 0);
	}
	assert_int_equal(r.last.epoch, 0);
	rig_close(&r);
}

/* What the counter cannot see: a TSC that runs fast (here 10%, with the host in step) looks
 * like a slow counter. The host clock's checks are the defence there, when the host is honest
 * (test_clock_tsc_fast_host_honest). */
static void test_clock_counter_blind_to_fast_tsc(void **state)
{
	(void)state;
	assert_counter_silent(1100000);
}

/* The counter running faster than at calibration (a CPU that speeds up) is covered by the
 * margin up to 5%; beyond it, it reads as a slow TSC: 2.2 ms * k / 1.05 against 2 ms * k +
 * 0.02 ms * k + 1 ms first passes at k = 14 (29.333 > 29.28). This is the false taint that a
 * dedicated core at a fixed frequency avoids. */
static void test_clock_counter_faster_than_calibrated(void **state)
{
	struct rig r;
	(void)state;

	rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
	r.fake.cnt_ppm = 1030000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	rig_close(&r);

	rig_open_verify(&r, TEE_CLOCK_VERIFY_COUNTER);
	r.fake.cnt_ppm = 1100000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 100), 14);
	assert_int_equal(last_taint(&r), TEE_CLOCK_TAINT_COUNTER);
	rig_close(&r);
}

/* Calibration keeps the counter's fastest sub-window: a counter that shared its core during
 * most of the calibration (here: half speed for 48 of its 50 ms) is still calibrated at its
 * full rate, so running at full speed afterwards is no taint. */
static uint64_t slow_calibration_counter(void *arg)
{
	struct fake *f = arg;

	/* 1 count/ns until 48 ms into the calibration, 2 counts/ns after */
	if (f->true_ns < 48 * MS)
		return 777 + f->true_ns;
	return 777 + 48 * MS + 2 * (f->true_ns - 48 * MS);
}

static void test_clock_counter_calibrates_at_max(void **state)
{
	struct tee_clock_options opts;
	struct tee_clock_stats st;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct rig r;
	(void)state;

	memset(&opts, 0, sizeof(opts));
	opts.verify = TEE_CLOCK_VERIFY_COUNTER;
	rig_init(&r);
	r.src.counter = slow_calibration_counter;
	opts.source = &r.src;
	assert_int_equal(tee_clock_open(&opts, &r.clock, errbuf), TEEMS_OK);
	tee_clock_stats(r.clock, &st);
	/* 2e9 counts/s, times 1.05, within rounding */
	assert_true(st.counter_hz >= 2099990000ull && st.counter_hz <= 2100010000ull);
	assert_int_equal(st.counter, 777 + 48 * MS + 2 * 2 * MS);
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	rig_close(&r);
}

static void test_clock_counter_options(void **state)
{
	static const double bad_margin[] = {-0.01, 1.0, 2.0, NAN};
	struct tee_clock_options opts;
	struct tee_clock_stats st;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	struct rig r;
	(void)state;

	/* A fake TSC without a fake counter: a real thread cannot be calibrated against it. */
	memset(&opts, 0, sizeof(opts));
	opts.verify = TEE_CLOCK_VERIFY_COUNTER;
	rig_init(&r);
	r.src.counter = NULL;
	opts.source = &r.src;
	assert_int_equal(tee_clock_open(&opts, &r.clock, errbuf), TEEMS_EINVAL);
	assert_non_null(strstr(errbuf, "counter"));
	assert_null(r.clock);

	/* A counter alone is not a source. */
	{
		struct tee_clock_source only = {.counter = fake_counter, .arg = &r.fake};

		opts.source = &only;
		assert_int_equal(tee_clock_open(&opts, &r.clock, NULL), TEEMS_EINVAL);
	}

	/* An unknown mode. */
	memset(&opts, 0, sizeof(opts));
	rig_init(&r);
	opts.source = &r.src;
	opts.verify = (enum tee_clock_verify)7;
	assert_int_equal(tee_clock_open(&opts, &r.clock, errbuf), TEEMS_EINVAL);
	assert_non_null(strstr(errbuf, "verify"));

	for (size_t i = 0; i < sizeof(bad_margin) / sizeof(bad_margin[0]); i++) {
		memset(&opts, 0, sizeof(opts));
		opts.source = &r.src;
		opts.verify = TEE_CLOCK_VERIFY_COUNTER;
		opts.counter_margin = bad_margin[i];
		assert_int_equal(tee_clock_open(&opts, &r.clock, NULL), TEEMS_EINVAL);
	}

	/* A counter that never advances during calibration cannot be calibrated. */
	memset(&opts, 0, sizeof(opts));
	rig_init(&r);
	r.fake.cnt_ppm = 0;
	opts.source = &r.src;
	opts.verify = TEE_CLOCK_VERIFY_COUNTER;
	assert_int_equal(tee_clock_open(&opts, &r.clock, errbuf), TEEMS_ECLOCK);
	assert_non_null(strstr(errbuf, "counter did not advance"));
	assert_null(r.clock);

	/* A margin of 0.25 hides a 10% slowdown (1 / 1.25 < 0.9 * 1.01). */
	memset(&opts, 0, sizeof(opts));
	opts.verify = TEE_CLOCK_VERIFY_COUNTER;
	opts.counter_margin = 0.25;
	assert_int_equal(rig_open_with(&r, &opts, NULL), TEEMS_OK);
	r.no_truth = true;
	tee_clock_stats(r.clock, &st);
	assert_true(st.counter_hz >= 2499990000ull && st.counter_hz <= 2500010000ull);
	r.fake.tsc_ppm = 900000;
	r.fake.host_ppm = 900000;
	assert_int_equal(step_until_taint(&r, 2 * MS, 5000), 0);
	rig_close(&r);

	assert_string_equal(tee_clock_taint_name(TEE_CLOCK_TAINT_COUNTER), "counter");
	assert_string_equal(tee_clock_verify_name(TEE_CLOCK_VERIFY_MONOTONIC), "monotonic");
	assert_string_equal(tee_clock_verify_name(TEE_CLOCK_VERIFY_COUNTER), "counter");
	assert_string_equal(tee_clock_verify_name((enum tee_clock_verify)9), "unknown");
}

#if defined(__x86_64__) || defined(__i386__)
struct reader {
	struct tee_clock *clock;
	int ok;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct tee_clock_reading prev = {0}, now;

	rd->ok = 1;
	for (int i = 0; i < 20000; i++) {
		if (tee_clock_now(rd->clock, &now) != TEEMS_OK || now.lo_ns < prev.lo_ns ||
		    now.hi_ns < prev.hi_ns || now.lo_ns > now.hi_ns || now.epoch < prev.epoch)
			rd->ok = 0;
		prev = now;
	}
	return NULL;
}

/* The real TSC and CLOCK_MONOTONIC, with a short calibration, read from two threads at once
 * (the event loop and a worker). Taints are not asserted: a loaded machine may cause some. */
static void test_clock_real_source(void **state)
{
	struct tee_clock_options opts;
	struct tee_clock_stats st;
	struct tee_clock *clock;
	struct reader rd[2];
	pthread_t th[2];
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	int rv;
	(void)state;

	memset(&opts, 0, sizeof(opts));
	opts.calibration_ns = 2 * MS;
	rv = tee_clock_open(&opts, &clock, errbuf);
	if (rv == TEEMS_ECLOCK) {
		print_message("skipped: %s\n", errbuf);
		skip();
	}
	assert_int_equal(rv, TEEMS_OK);
	tee_clock_stats(clock, &st);
	assert_true(st.tsc_hz >= 100000000ull && st.tsc_hz <= 10000000000ull);
	for (int i = 0; i < 2; i++) {
		rd[i].clock = clock;
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_true(rd[i].ok);
	}
	tee_clock_stats(clock, &st);
	assert_int_equal(st.reads, 40000);
	tee_clock_close(clock);
}

/* verify = counter with the real TSC, CLOCK_MONOTONIC and a real counter thread: about 200 ms
 * of reads 50 us apart. No counter taint (the calibration keeps the thread's fastest rate; a
 * machine shared with other work only makes the counter slower), the counter advances, and
 * tee_clock_close stops the thread (the test returns). */
static void test_clock_real_counter(void **state)
{
	struct tee_clock_options opts;
	struct tee_clock_stats st, st0;
	struct tee_clock_reading now;
	struct tee_clock *clock;
	struct timespec t0, t;
	char errbuf[TEEMS_ERRBUF_LEN] = "";
	uint64_t elapsed;
	int rv;
	(void)state;

	memset(&opts, 0, sizeof(opts));
	opts.verify = TEE_CLOCK_VERIFY_COUNTER;
	rv = tee_clock_open(&opts, &clock, errbuf);
	if (rv == TEEMS_ECLOCK && strstr(errbuf, "invariant TSC") != NULL) {
		print_message("skipped: %s\n", errbuf);
		skip();
	}
	if (rv != TEEMS_OK)
		fail_msg("tee_clock_open: %s", errbuf);
	tee_clock_stats(clock, &st0);
	assert_int_equal(st0.verify, TEE_CLOCK_VERIFY_COUNTER);
	assert_true(st0.counter_hz >= 1000000ull);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		struct timespec nap = {.tv_nsec = 50000};

		assert_int_equal(tee_clock_now(clock, &now), TEEMS_OK);
		nanosleep(&nap, NULL);
		clock_gettime(CLOCK_MONOTONIC, &t);
		elapsed = (uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000ull + (uint64_t)t.tv_nsec -
			  (uint64_t)t0.tv_nsec;
	} while (elapsed < 200 * MS);
	tee_clock_stats(clock, &st);
	print_message("counter: %llu counts/s calibrated, %llu counts in %llu ms, %llu reads, "
		      "%llu taints\n",
		      (unsigned long long)st.counter_hz,
		      (unsigned long long)(st.counter - st0.counter),
		      (unsigned long long)(elapsed / MS), (unsigned long long)st.reads,
		      (unsigned long long)st.taints);
	assert_true(st.counter > st0.counter);
	assert_int_equal(st.taints_by_reason[TEE_CLOCK_TAINT_COUNTER], 0);
	assert_int_equal(st.taints, 0);
	tee_clock_close(clock);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clock_agree),
		cmocka_unit_test(test_clock_no_time_passes),
		cmocka_unit_test(test_clock_host_jumps_forward),
		cmocka_unit_test(test_clock_small_jitter_tolerated),
		cmocka_unit_test(test_clock_preempted_mid_read),
		cmocka_unit_test(test_clock_host_steps_backwards),
		cmocka_unit_test(test_clock_host_jumps_back_but_advances),
		cmocka_unit_test(test_clock_host_freezes),
		cmocka_unit_test(test_clock_host_fast_5_percent),
		cmocka_unit_test(test_clock_host_slow_5_percent),
		cmocka_unit_test(test_clock_host_fast_within_rho),
		cmocka_unit_test(test_clock_host_fast_1_5_percent),
		cmocka_unit_test(test_clock_tsc_drift_within_rho),
		cmocka_unit_test(test_clock_tsc_slow_host_honest),
		cmocka_unit_test(test_clock_tsc_fast_host_honest),
		cmocka_unit_test(test_clock_tsc_jumps_forward),
		cmocka_unit_test(test_clock_tsc_backwards),
		cmocka_unit_test(test_clock_stats_count_reasons),
		cmocka_unit_test(test_clock_options),
		cmocka_unit_test(test_clock_bad_options),
		cmocka_unit_test(test_clock_calibration_failures),
		cmocka_unit_test(test_clock_allocation_failure),
		cmocka_unit_test(test_clock_counter_catches_slow_tsc),
		cmocka_unit_test(test_clock_counter_taint_raises_hi),
		cmocka_unit_test(test_clock_counter_margin_hides_small_slowdown),
		cmocka_unit_test(test_clock_counter_stall_no_taint),
		cmocka_unit_test(test_clock_counter_blind_to_fast_tsc),
		cmocka_unit_test(test_clock_counter_faster_than_calibrated),
		cmocka_unit_test(test_clock_counter_calibrates_at_max),
		cmocka_unit_test(test_clock_counter_options),
#if defined(__x86_64__) || defined(__i386__)
		cmocka_unit_test(test_clock_real_source),
		cmocka_unit_test(test_clock_real_counter),
#endif
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
