/* Client-side lease holders: "is my lease still valid?" (DESIGN.md section 8; docs/LEASES.md).
 *
 * A client that obtained a named lease (LEASE.ACQUIRE name ttl_ms -> token, ttl) or renewed it
 * (LEASE.RENEW name token) keeps a struct teems_lease and asks teems_lease_valid() before every
 * action the lease guards. The answer is conservative: it may say "expired" early, never late,
 * provided the clock readings it is given obey the trusted-clock contract of src/tee/tee.h
 * (for two readings a then b of one clock, b.hi_ns - a.hi_ns is at least the real time between
 * them) or, at worst, come from a clock whose rate is within rho of real time.
 *
 * The rules (holder side, DESIGN.md section 8):
 *   - the lease is counted from the reading taken just BEFORE the request left (the send time),
 *     never from the reply's arrival: however long the request and reply took, the holder's
 *     window only shrinks;
 *   - it is valid while  now.hi_ns - sent.hi_ns < ttl * (1 - rho)  (holders use hi: they must
 *     never underestimate how much time has passed);
 *   - and while the clock's taint epoch is the one of the send reading: a taint (a detected
 *     clock manipulation) drops the lease at once;
 *   - the instant now.hi_ns - sent.hi_ns == ttl * (1 - rho) is already invalid.
 * The service promises exclusivity at its replicas (grantors), which wait ttl * (1 + rho) on
 * their own lo clock after the last acquire or renew before they expire a lease; the holder's
 * window is therefore contained in the service's (docs/LEASES.md has the arithmetic).
 *
 * A valid lease does not make an action safe by itself: a holder can be paused between the check
 * and the action. Pass the lease's fencing token (monotonic per name) to the resource, and let
 * the resource reject tokens older than the newest it has seen (Chubby's sequencers).
 *
 * Header-only (static inline, no allocation, no clock reads: readings are inputs), so any
 * program can use it without linking teems. Not thread-safe: one struct per holder thread, or a
 * lock around it. */
#ifndef TEEMS_LEASE_H
#define TEEMS_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* rho is given in parts per million; at most TEEMS_LEASE_RHO_MAX_PPM (a clock that may be 50%
 * off leaves no useful lease). */
#define TEEMS_LEASE_PPM 1000000u
#define TEEMS_LEASE_RHO_MAX_PPM 499999u

/* A trusted clock reading: the layout and meaning of struct tee_clock_reading. */
struct teems_lease_clock {
	uint64_t lo_ns; /* real time since the clock started is at least this */
	uint64_t hi_ns; /* ... and at most this */
	uint64_t epoch; /* taint epoch: +1 per detected manipulation */
};

struct teems_lease {
	uint64_t token;	     /* the fencing token the service returned */
	uint64_t sent_hi_ns; /* hi of the reading taken when the request was sent */
	uint64_t sent_epoch; /* its epoch */
	uint64_t span_ns;    /* ttl * (1 - rho), rounded down */
	bool held;
};

/* floor(d * (1 - rho)): how long a holder may count a lease of duration d. */
static inline uint64_t teems_lease_holder_span_ns(uint64_t d_ns, uint32_t rho_ppm)
{
	if (rho_ppm > TEEMS_LEASE_RHO_MAX_PPM)
		rho_ppm = TEEMS_LEASE_RHO_MAX_PPM;
	/* d * rho / 1e6, rounded up, without overflow: d = q * 1e6 + r. */
	uint64_t q = d_ns / TEEMS_LEASE_PPM, r = d_ns % TEEMS_LEASE_PPM;
	uint64_t cut = q * rho_ppm + (r * rho_ppm + TEEMS_LEASE_PPM - 1) / TEEMS_LEASE_PPM;
	return d_ns - cut;
}

/* ttl in milliseconds to nanoseconds, saturating. */
static inline uint64_t teems_lease_ms_to_ns(uint64_t ms)
{
	return ms > UINT64_MAX / 1000000u ? UINT64_MAX : ms * 1000000u;
}

/* Records a grant (or renewal) of `token` for ttl_ms, counted from `sent`, the reading taken
 * before the ACQUIRE or RENEW request left. A late reply may yield a lease that is already
 * expired: that is correct, not an error. */
static inline void teems_lease_granted(struct teems_lease *l, const struct teems_lease_clock *sent,
				       uint64_t ttl_ms, uint32_t rho_ppm, uint64_t token)
{
	l->token = token;
	l->sent_hi_ns = sent->hi_ns;
	l->sent_epoch = sent->epoch;
	l->span_ns = teems_lease_holder_span_ns(teems_lease_ms_to_ns(ttl_ms), rho_ppm);
	l->held = true;
}

/* Nanoseconds of validity left at `now` (0: not valid). */
static inline uint64_t teems_lease_remaining_ns(const struct teems_lease *l,
						const struct teems_lease_clock *now)
{
	if (!l->held || now->epoch != l->sent_epoch || now->hi_ns < l->sent_hi_ns)
		return 0;
	uint64_t elapsed = now->hi_ns - l->sent_hi_ns;
	return elapsed < l->span_ns ? l->span_ns - elapsed : 0;
}

/* Whether the lease is still valid at `now`, a reading taken after every effect the caller wants
 * covered (check after reading, before acting on what was read). */
static inline bool teems_lease_valid(const struct teems_lease *l,
				     const struct teems_lease_clock *now)
{
	return teems_lease_remaining_ns(l, now) > 0;
}

/* Forget the lease (before sending RELEASE, or on any doubt). */
static inline void teems_lease_drop(struct teems_lease *l)
{
	l->held = false;
}

#ifdef __cplusplus
}
#endif
#endif
