/* The TEE platform interface (DESIGN.md sections 1, 8 and 10).
 *
 * Everything teems needs from the hardware goes through this header:
 *   - sealing: keys bound to (platform secret, code measurement, replica identity), and a
 *     self-describing sealed-blob format on top of them;
 *   - incarnation identity: a fresh Ed25519 key pair per process start (DESIGN.md section 4);
 *   - attestation quotes: the platform root signs (measurement, 64 bytes of report data);
 *   - the trusted clock: bounds on real time elapsed and a taint epoch (DESIGN.md section 8).
 *
 * Backends. A platform is a `struct tee_backend` ops table (bottom of this file). The only one in
 * this tree is `tee_backend_sim`, a software stand-in that protects nothing against the host
 * (docs/SECURITY.md says exactly what it does and does not do). A real backend (Gramine/SGX, TDX,
 * SEV-SNP) supplies the same four things — a platform sealing secret bound to the measurement, a
 * measurement, a quote signer and a clock source — and every function above the ops table keeps
 * its contract unchanged. Callers never see which backend they run on except through
 * tee_platform() and the `platform` field of a quote.
 *
 * Errors follow include/teems/err.h: 0 or a negative teems_err; `errbuf` (TEEMS_ERRBUF_LEN bytes
 * or NULL) receives a message where a function takes one.
 *
 * Thread-safety: after tee_open returns, every function taking a `struct tee *` may be called
 * from several threads at once (the handle is read-only except for its clock, which has its own
 * mutex). tee_close must not race with anything. */
#ifndef TEEMS_TEE_TEE_H
#define TEEMS_TEE_TEE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

#define TEE_MEASUREMENT_LEN 32
#define TEE_REPORT_DATA_LEN 64
#define TEE_PUBLIC_KEY_LEN 32 /* Ed25519 */
#define TEE_SIGNATURE_LEN 64  /* Ed25519 */
#define TEE_CLUSTER_ID_MAX 64
#define TEE_PURPOSE_MAX 64

/* Platform identifiers. The numeric values are part of the quote encoding: never renumber. */
enum tee_platform {
	TEE_PLATFORM_SIM = 1,
};

struct tee;
struct tee_clock;
struct tee_incarnation;
struct tee_backend;

/* ---------------------------------------------------------------------------------------------
 * Trusted clock (DESIGN.md section 8)
 *
 * The primary source is the invariant TSC, calibrated once at start against the host's
 * CLOCK_MONOTONIC and then cross-checked against it on every read ("trust but verify", T-Lease).
 * The TSC is what the bounds come from; the host clock only verifies it. Every read brackets the
 * host read between two TSC reads, so a thread descheduled in the middle of a read widens the
 * interval instead of looking like a jump.
 *
 * A read taints the clock (increments `epoch`, then re-anchors the checks at this read) when
 *   - the TSC went backwards since the previous read;
 *   - the host clock went backwards since the previous read;
 *   - jump: host time elapsed since the previous read differs from TSC time elapsed by more
 *     than rho * elapsed + slack_ns;
 *   - rate: the same comparison fails over the interval since the last anchor. Without taints
 *     the anchor moves to the current read once window_ns of TSC time has passed, so a rate
 *     disagreement r > rho is detected within slack_ns / (r - rho) of TSC time (or at the next
 *     read after that), provided r > rho + slack_ns / window_ns. With the defaults a host that
 *     runs 5% fast is detected within 25 ms;
 *   - counter (only with verify = TEE_CLOCK_VERIFY_COUNTER): since the previous read or since
 *     the anchor, a spinning counter advanced more than the TSC allows: counter time
 *     > TSC time * (1 + rho) + slack_ns.
 *
 * The counter verifier (T-Lease's "trust but verify"; issue 6). A thread started by
 * tee_clock_open counts in a tight loop (a chain of dependent multiplies per count, so that its
 * rate follows the core's frequency rather than what an SMT sibling does). The host can
 * deschedule it, slow its core or share the core with other work, so the counter may count
 * slowly; it cannot make it count faster than the CPU runs it. Calibrated at its fastest
 * observed rate (the fastest of 100 sub-windows of the calibration, times 1 + counter_margin),
 * counter time is a lower bound on real time, and a counter that gets ahead of the TSC means
 * the TSC ran slow: a host that scales or slows the TSC and moves its CLOCK_MONOTONIC in step
 * (so the host checks see nothing) is caught.
 *   - Detects: a TSC running at s < 1 / ((1 + counter_margin)(1 + rho)) of real time (0.943
 *     with the defaults); 10% slow is seen within about 0.63 s at worst, about 23 ms if it
 *     starts at an anchor (tests/unit/test_tee_clock.c works the numbers).
 *   - Cannot detect: a fast TSC (a descheduled counter looks the same; the host checks stay
 *     on for that), a slowdown within the margin, anything during calibration.
 *   - Costs: one core spinning for the clock's lifetime.
 *   - False taints: a CPU that later runs the loop faster than calibration saw by more than
 *     counter_margin (turbo after a cold calibration). Give it a dedicated core at a fixed
 *     frequency, or raise counter_margin: on a shared 2-vCPU VM the loop later ran at most
 *     1.07x its calibrated rate (batches of 60 runs at load 2 to 6). A slow or stalled
 *     counter is never a taint.
 *
 * Bounds. If the TSC runs at its calibrated rate within rho (the platform's trust assumption;
 * see tee_clock_rate_trusted), every reading satisfies lo_ns <= real time elapsed since the clock
 * started <= hi_ns, and lo_ns and hi_ns never decrease. They are e * (1 -/+ rho) -/+ slack_ns for
 * the TSC estimate e, so for two readings a then b, b.lo_ns - a.lo_ns is a lower bound and
 * b.hi_ns - a.hi_ns an upper bound on the real time between them: grantors use lo, holders use
 * hi. A taint means the verifier saw evidence against the assumption: consumers restart every
 * wait begun in an earlier epoch and never count a tainted interval.
 *
 * Thread-safety: a struct tee_clock is protected by a mutex; tee_clock_now and tee_clock_stats
 * may be called from any number of threads (the event loop and a worker). Readings taken by
 * different threads are totally ordered by the mutex, so monotonicity holds across threads.
 * ------------------------------------------------------------------------------------------- */

/* Where the clock's raw values come from. All members NULL (or a NULL source pointer) means the
 * real ones: __rdtsc() and CLOCK_MONOTONIC, nanosleep for the calibration wait, and (with
 * verify = counter) a counter thread. Tests and the simulator inject fakes; a fake must provide
 * sleep_ns (advancing its own time), since the calibration waits calibration_ns of host time.
 * With verify = counter a fake tsc needs a fake counter too (a real thread cannot be calibrated
 * against fake time); then no thread is started. counter is ignored with verify = monotonic.
 * `arg` is passed to every function and must outlive the clock. */
struct tee_clock_source {
	uint64_t (*tsc)(void *arg);
	uint64_t (*host_ns)(void *arg);
	void (*sleep_ns)(void *arg, uint64_t ns);
	uint64_t (*counter)(void *arg); /* never decreases; may stall */
	void *arg;
};

/* Which verifiers check the TSC besides the host monotonic clock, which always does. */
enum tee_clock_verify {
	TEE_CLOCK_VERIFY_MONOTONIC = 0,
	TEE_CLOCK_VERIFY_COUNTER, /* and a spinning counter thread: costs one core */
};

/* Zero means "default" for every member. */
struct tee_clock_options {
	const struct tee_clock_source *source; /* NULL: the backend's, else the real clocks */
	uint64_t calibration_ns;	       /* calibration window; default 50 ms */
	double rho;			       /* rate bound, 0 < rho < 0.5; default 0.01 */
	uint64_t slack_ns;  /* fixed tolerance of every check and bound; default 1 ms */
	uint64_t window_ns; /* the rate check's anchor moves after this much time; default 1 s */
	enum tee_clock_verify verify; /* default monotonic */
	/* verify = counter: the counter's calibrated rate is its fastest observed rate times
	 * (1 + counter_margin), 0 < counter_margin < 1; default 0.05. A TSC slower than
	 * 1 / ((1 + counter_margin) * (1 + rho)) of real time is detected. */
	double counter_margin;
};

struct tee_clock_reading {
	uint64_t lo_ns; /* real time since clock start is at least this */
	uint64_t hi_ns; /* ... and at most this */
	uint64_t epoch; /* starts at 0; +1 per detected taint */
};

enum tee_clock_taint {
	TEE_CLOCK_TAINT_NONE = 0,
	TEE_CLOCK_TAINT_TSC_BACKWARDS,
	TEE_CLOCK_TAINT_HOST_BACKWARDS,
	TEE_CLOCK_TAINT_JUMP,
	TEE_CLOCK_TAINT_RATE,
	TEE_CLOCK_TAINT_COUNTER,
	TEE_CLOCK_TAINT_N_,
};

struct tee_clock_stats {
	uint64_t tsc_hz; /* calibrated TSC frequency */
	uint64_t reads;
	uint64_t taints; /* == epoch */
	uint64_t taints_by_reason[TEE_CLOCK_TAINT_N_];
	enum tee_clock_taint last_taint;
	enum tee_clock_verify verify;
	uint64_t counter_hz; /* verify = counter: calibrated counts per second (with the margin) */
	uint64_t counter;    /* verify = counter: the counter's value now */
};

/* Calibrates and starts a clock (blocks for calibration_ns of host time; the clock starts at the
 * first calibration sample). With verify = counter and the real sources, starts the counter
 * thread first, so that calibration measures it. *out belongs to the caller until
 * tee_clock_close.
 * Errors: TEEMS_EINVAL (bad option), TEEMS_ENOMEM (also: the counter thread cannot be
 * created), TEEMS_ECLOCK (no usable invariant TSC on this CPU, or a source that does not
 * advance or runs backwards during calibration, or a counter that never advanced). */
int tee_clock_open(const struct tee_clock_options *opts, struct tee_clock **out, char *errbuf);

/* Stops and joins the counter thread, if any. NULL is a no-op. */
void tee_clock_close(struct tee_clock *clock);

/* Reads the clock, running the cross-checks above. Errors: none today (TEEMS_ECLOCK is reserved
 * for backends whose trusted timer can become unavailable); on error *out is untouched. */
int tee_clock_now(struct tee_clock *clock, struct tee_clock_reading *out);

void tee_clock_stats(struct tee_clock *clock, struct tee_clock_stats *out);

/* "jump", "rate", "counter", ...; never NULL. */
const char *tee_clock_taint_name(enum tee_clock_taint taint);

/* "monotonic" or "counter" (the spelling of the teemsd setting clock_verify); never NULL. */
const char *tee_clock_verify_name(enum tee_clock_verify verify);

/* ---------------------------------------------------------------------------------------------
 * Platform handle
 * ------------------------------------------------------------------------------------------- */

struct tee_options {
	/* NULL: &tee_backend_sim. */
	const struct tee_backend *backend;
	/* sim: directory of the fused secret. NULL: $TEEMS_SIM_DIR, else
	 * $HOME/.local/share/teems/sim. Created (mode 0700) if missing. */
	const char *platform_dir;
	/* Replica identity: sealing keys are bound to it. cluster_id may be NULL when
	 * cluster_id_len is 0; at most TEE_CLUSTER_ID_MAX bytes; copied. */
	uint32_t replica_id;
	const void *cluster_id;
	size_t cluster_id_len;
	/* TEE_MEASUREMENT_LEN bytes, copied; NULL: the platform's own (sim: SHA-256 of
	 * /proc/self/exe). A hardware backend refuses an override with TEEMS_EINVAL. */
	const uint8_t *measurement;
	/* Declare the clock rate untrusted even if the platform trusts it (sim trusts it by
	 * assumption, DESIGN.md section 8). teemsd refuses to start when the rate is untrusted. */
	bool distrust_clock_rate;
	/* Open without a clock (offline tools that only seal or unseal): tee_clock() is NULL. */
	bool no_clock;
	struct tee_clock_options clock;
};

/* Opens the platform: loads (sim: creates on first use) the platform secret, derives the sealing
 * root for this replica identity and measurement, prepares the quote signer, and calibrates the
 * clock. opts NULL means all defaults. *out belongs to the caller until tee_close.
 * Errors: TEEMS_EINVAL (bad option), TEEMS_ENOMEM, TEEMS_EIO (platform directory or secret file
 * unusable), TEEMS_ECONFIG (sim: secret file accessible by group or others, not a regular file,
 * or owned by another user), TEEMS_ECORRUPT (sim: secret file of the wrong size), TEEMS_ECRYPTO,
 * TEEMS_ECLOCK (the clock cannot start; see tee_clock_open). */
int tee_open(const struct tee_options *opts, struct tee **out, char *errbuf);

/* Wipes every key held by the handle and frees it. NULL is a no-op. */
void tee_close(struct tee *tee);

enum tee_platform tee_platform(const struct tee *tee);
const char *tee_platform_name(const struct tee *tee);
uint32_t tee_replica_id(const struct tee *tee);
void tee_measurement(const struct tee *tee, uint8_t out[TEE_MEASUREMENT_LEN]);

/* The public key that verifies this platform's quotes (sim: the Ed25519 root derived from the
 * fused secret, shared by every replica on the host). Errors: TEEMS_EINVAL when the platform's
 * quotes are not verified by a single Ed25519 key (a DCAP backend, say). */
int tee_root_public_key(const struct tee *tee, uint8_t out[TEE_PUBLIC_KEY_LEN]);

/* Whether safety may rely on the clock's rate (DESIGN.md section 8): the backend's property,
 * unless tee_options.distrust_clock_rate. sim: true, by assumption. */
bool tee_clock_rate_trusted(const struct tee *tee);

/* The platform clock, owned by the handle (valid until tee_close); NULL if opened no_clock. */
struct tee_clock *tee_clock(struct tee *tee);

/* ---------------------------------------------------------------------------------------------
 * Sealing (DESIGN.md sections 7 and 10)
 *
 * Key hierarchy, all HKDF-SHA256:
 *   seal_root   = HKDF(platform secret, info = "teems seal root v1" | measurement |
 *                      replica_id | cluster_id)
 *   purpose key = HKDF(seal_root, info = "teems seal key v1" | purpose)
 *   blob key    = HKDF(purpose key "blob", salt = 32 random bytes, info = "teems sealed blob v1")
 * so a different platform secret, measurement, replica id, cluster id or purpose yields an
 * unrelated key. The platform secret itself is wiped as soon as seal_root is derived.
 *
 * Nonces are never reused: a blob key encrypts exactly one blob (its salt is fresh from the
 * CSPRNG, so two blobs share a key only if two 256-bit salts collide), which is why the GCM nonce
 * can be a constant. Replaying or rolling back sealed files cannot make the sealer reuse a key,
 * because nothing about the salt comes from stored state. Subsystems that encrypt many records
 * under one key (the WAL) derive their own subkeys from tee_seal_key and document their nonce
 * discipline next to them (src/store/wal.c: per-incarnation subkeys with counter nonces).
 * ------------------------------------------------------------------------------------------- */

/* A 32-byte key for one subsystem, e.g. "wal" or "snapshot": deterministic for a given
 * (platform secret, measurement, replica identity, purpose), so it survives restarts.
 * purpose: NUL-terminated, 1..TEE_PURPOSE_MAX bytes. out belongs to the caller, who wipes it.
 * Errors: TEEMS_EINVAL, TEEMS_ECRYPTO. */
int tee_seal_key(struct tee *tee, const char *purpose, uint8_t out[TEE_KEY_LEN]);

/* Sealed blob: version (1 byte) | salt (32) | ciphertext (len) | GCM tag (16). */
#define TEE_SEAL_VERSION 1
#define TEE_SEAL_SALT_LEN 32
#define TEE_SEAL_OVERHEAD (1 + TEE_SEAL_SALT_LEN + TEE_TAG_LEN)
#define TEE_SEAL_MAX_PLAINTEXT ((size_t)1 << 30)

/* Seals pt (len bytes, at most TEE_SEAL_MAX_PLAINTEXT) under this replica's "blob" key, bound to
 * the associated data ad (not stored in the blob; the unsealer must present the same bytes).
 * *out_len: in, the capacity of out (at least len + TEE_SEAL_OVERHEAD); out, the blob's length.
 * out must not overlap pt. Errors: TEEMS_EINVAL (too long, out too small), TEEMS_ECRYPTO. */
int tee_seal(struct tee *tee, const void *ad, size_t ad_len, const void *pt, size_t len, void *out,
	     size_t *out_len);

/* Opens a blob made by tee_seal with the same replica identity, measurement, platform secret
 * and associated data. *out_len: in, the capacity of out (at least in_len - TEE_SEAL_OVERHEAD);
 * out, the plaintext length. out must not overlap in. On any error out holds no plaintext.
 * Errors: TEEMS_EAUTH (wrong key, wrong ad, any altered byte, truncated: a blob that cannot be
 * authenticated, whatever the reason), TEEMS_ECORRUPT (empty, or version byte 0),
 * TEEMS_EVERSION (a newer version byte), TEEMS_EINVAL (out too small), TEEMS_ECRYPTO. */
int tee_unseal(struct tee *tee, const void *ad, size_t ad_len, const void *in, size_t in_len,
	       void *out, size_t *out_len);

/* The same blob format under an explicit 32-byte key (a purpose key from tee_seal_key), for
 * subsystems that seal blobs under their own key. Same contract and errors. */
int tee_blob_seal(const uint8_t key[TEE_KEY_LEN], const void *ad, size_t ad_len, const void *pt,
		  size_t len, void *out, size_t *out_len);
int tee_blob_unseal(const uint8_t key[TEE_KEY_LEN], const void *ad, size_t ad_len, const void *in,
		    size_t in_len, void *out, size_t *out_len);

/* ---------------------------------------------------------------------------------------------
 * Incarnations (DESIGN.md section 4)
 *
 * A fresh Ed25519 key pair per process start: the key that REGISTER binds to (replica id,
 * quote). The private key never leaves the object and is wiped when it is freed.
 * ------------------------------------------------------------------------------------------- */

/* *out belongs to the caller until tee_incarnation_free.
 * Errors: TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int tee_incarnation_new(struct tee_incarnation **out, char *errbuf);

/* Wipes the private key and frees. NULL is a no-op. */
void tee_incarnation_free(struct tee_incarnation *inc);

void tee_incarnation_public_key(const struct tee_incarnation *inc, uint8_t out[TEE_PUBLIC_KEY_LEN]);

/* Ed25519 signature over msg. Thread-safe. Errors: TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int tee_incarnation_sign(const struct tee_incarnation *inc, const void *msg, size_t len,
			 uint8_t sig[TEE_SIGNATURE_LEN]);

/* Verifies an Ed25519 signature by pub over msg.
 * Errors: TEEMS_EAUTH (does not verify), TEEMS_ECRYPTO. */
int tee_incarnation_verify(const uint8_t pub[TEE_PUBLIC_KEY_LEN], const void *msg, size_t len,
			   const uint8_t sig[TEE_SIGNATURE_LEN]);

/* ---------------------------------------------------------------------------------------------
 * Attestation quotes (DESIGN.md sections 4 and 10)
 *
 * A quote says "code with this measurement, on a platform whose root is this key, asked to bind
 * these 64 bytes". What goes in the report data is the caller's business: teemsd puts a hash of
 * (replica id, incarnation public key, cluster id) there (DESIGN.md section 4, Boot).
 *
 * Encoding (TEE_QUOTE_LEN bytes, little-endian, fixed size):
 *     0  magic "TMQT"           4
 *     4  version (1)            u16
 *     6  platform               u16   enum tee_platform
 *     8  reserved, zero         u32
 *    12  root key id            32    SHA-256 of the root public key
 *    44  measurement            32
 *    76  report data            64
 *   140  signature              64    Ed25519 by the root over "teems quote v1\0" | bytes 0..139
 * The root key id lets a verifier tell "signed under a root I do not trust" (TEEMS_EQUOTE_ROOT)
 * from "signature does not verify" (TEEMS_EQUOTE_TAMPERED).
 * ------------------------------------------------------------------------------------------- */

#define TEE_QUOTE_VERSION 1
#define TEE_QUOTE_LEN 204
#define TEE_QUOTE_SIGNED_LEN 140 /* bytes of the encoding under the signature */
#define TEE_QUOTE_TBS_LEN (15 + TEE_QUOTE_SIGNED_LEN) /* domain string + those bytes */

struct tee_quote {
	uint16_t version;
	uint16_t platform; /* enum tee_platform */
	uint8_t root_key_id[TEE_SHA256_LEN];
	uint8_t measurement[TEE_MEASUREMENT_LEN];
	uint8_t report_data[TEE_REPORT_DATA_LEN];
	uint8_t signature[TEE_SIGNATURE_LEN];
};

/* Quotes report_data with this platform's root. Errors: TEEMS_ENOMEM, TEEMS_ECRYPTO. */
int tee_quote(struct tee *tee, const uint8_t report_data[TEE_REPORT_DATA_LEN],
	      struct tee_quote *out);

void tee_quote_encode(const struct tee_quote *quote, uint8_t out[TEE_QUOTE_LEN]);

/* Reads exactly len bytes of in (never more). Errors: TEEMS_ECORRUPT (len != TEE_QUOTE_LEN, bad
 * magic, nonzero reserved bits), TEEMS_EVERSION (unknown version or platform). */
int tee_quote_decode(const void *in, size_t len, struct tee_quote *out);

/* The exact bytes the root signs: "teems quote v1\0" followed by the first
 * TEE_QUOTE_SIGNED_LEN bytes of the encoding. For backends and verifiers. */
void tee_quote_signed_bytes(const struct tee_quote *quote, uint8_t out[TEE_QUOTE_TBS_LEN]);

/* Decodes and verifies a sim quote against a trusted root public key and the measurement the
 * verifier expects; on success copies the report data to report_data_out (may be NULL).
 * Checks, in order: encoding, root key id == SHA-256(root_pub), signature, measurement.
 * Errors: TEEMS_ECORRUPT, TEEMS_EVERSION (see tee_quote_decode), TEEMS_EQUOTE_ROOT (names another
 * root), TEEMS_EQUOTE_TAMPERED (signature does not verify: some signed byte was altered),
 * TEEMS_EQUOTE_MEASUREMENT (genuine, but for other code), TEEMS_ECRYPTO. */
int tee_quote_verify(const uint8_t root_pub[TEE_PUBLIC_KEY_LEN],
		     const uint8_t expected_measurement[TEE_MEASUREMENT_LEN], const void *encoded,
		     size_t len, uint8_t report_data_out[TEE_REPORT_DATA_LEN]);

/* ---------------------------------------------------------------------------------------------
 * Backend interface (for implementers of a platform, not for callers)
 *
 * tee_open validates the options, calls ops->open, derives the sealing hierarchy from the
 * platform secret it returns (then wipes it), and starts the clock from ops->clock_source.
 * How the real platforms fill it in (docs/SECURITY.md, "Real backends"):
 *   - Gramine/SGX: secret from EGETKEY (SEAL_KEY, MRENCLAVE policy; /dev/attestation/keys in
 *     Gramine), measurement = MRENCLAVE, quote via DCAP over the report data; clock rate trusted
 *     only with a counter verifier and AEX-Notify.
 *   - TDX: secret from a key derived for the TD measurement (e.g. a key-broker or
 *     MSR-derived key), measurement = MRTD/RTMRs, TD quote; Secure TSC as clock source.
 *   - SEV-SNP: secret from MSG_KEY_REQ (VCEK-rooted derived key bound to the launch
 *     measurement), attestation report via MSG_REPORT_REQ; Secure TSC as clock source.
 * A backend whose quotes are not a single Ed25519 signature leaves has_root_public_key false
 * and ships its own verifier; tee_quote_verify dispatches on the quote's platform field.
 * ------------------------------------------------------------------------------------------- */

struct tee_backend_keys {
	/* Secret bound by the platform to the measurement (sim: the fused secret, bound to the
	 * measurement only through the derivation). tee_open wipes it after use. */
	uint8_t platform_secret[TEE_KEY_LEN];
	uint8_t measurement[TEE_MEASUREMENT_LEN];
	uint8_t root_public_key[TEE_PUBLIC_KEY_LEN];
	bool has_root_public_key;
};

struct tee_backend {
	enum tee_platform platform;
	const char *name;
	/* Whether the platform protects the clock's rate from the host (DESIGN.md section 8). */
	bool clock_rate_trusted;
	/* NULL: the real TSC and CLOCK_MONOTONIC. */
	const struct tee_clock_source *clock_source;
	/* Fills keys and a private state (freed by close). Errors as tee_open. */
	int (*open)(const struct tee_options *opts, struct tee_backend_keys *keys, void **state,
		    char *errbuf);
	/* Fills out->{version,platform,root_key_id,measurement,report_data,signature}. */
	int (*quote)(void *state, const uint8_t measurement[TEE_MEASUREMENT_LEN],
		     const uint8_t report_data[TEE_REPORT_DATA_LEN], struct tee_quote *out);
	void (*close)(void *state);
};

/* The software platform (DESIGN.md section 10; src/tee/sim.c). */
extern const struct tee_backend tee_backend_sim;

#endif
