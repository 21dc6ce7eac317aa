/* The replica-to-replica wire codec: every message of DESIGN.md sections 4-8.
 *
 * A frame is a fixed 34-byte header followed by a body whose layout depends on the type
 * (docs/PROTOCOL.md, "Wire format", lists every field in order). All integers are little-endian;
 * variable-length fields carry a u32 length; lists carry a u32 count; every length and count has
 * a hard cap below (MSG_MAX_*), and a frame is at most MSG_MAX_FRAME bytes.
 *
 * Decoding is zero-copy and allocation-free: the struct msg that msg_decode() fills points into
 * the caller's buffer (every struct msg_bytes and every list), so it is valid only while that
 * buffer is, unchanged. Everything is validated at decode time (lengths, counts against both
 * their cap and the remaining bytes, enum values, flags, replica ids, list order, cross-field
 * rules), so iterating a decoded list cannot fail.
 *
 * Encoding is canonical: a buffer that msg_decode() accepts re-encodes to exactly the same bytes.
 * The encoder enforces the same rules as the decoder, so what it produces always decodes.
 *
 * Pure: no I/O, no globals, no allocation. */
#ifndef TEEMS_CORE_MSG_H
#define TEEMS_CORE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/quorum.h"

/* Version of the encoding. A frame of any other version is refused with TEEMS_EVERSION. */
#define MSG_VERSION 1
#define MSG_HEADER_SIZE 34

/* Hard limits (the decoder refuses anything beyond them with TEEMS_ECORRUPT, the encoder with
 * TEEMS_EINVAL). Callers that could exceed one split their work: fewer slots per ACCEPT, paging
 * through `more`/`complete`, smaller snapshot chunks. */
#define MSG_MAX_FRAME (16u << 20)	     /* whole frame, header included */
#define MSG_MAX_REPLICAS QUORUM_MAX_REPLICAS /* registration vectors, configurations */
#define MSG_MAX_KEY (64u << 10)		     /* an ABD key */
#define MSG_MAX_VALUE (4u << 20)	     /* an ABD value */
#define MSG_MAX_BLOB (8u << 20)		     /* a client command or result, one slot's value */
#define MSG_MAX_QUOTE (16u << 10)	     /* an attestation quote */
#define MSG_MAX_AUTH 1024u		     /* an operator's restart authorization */
#define MSG_MAX_CHUNK (4u << 20)	     /* data in one snapshot chunk */
#define MSG_MAX_ENTRIES 4096u		     /* accepted entries in a PROMISE or RECOVERY_REPLY */
#define MSG_MAX_BATCH 1024u		     /* slots in one ACCEPT */
#define MSG_MAX_RANGES 4096u /* ABD key ranges in a partition (and digests in a list) */
#define MSG_MAX_ITEMS 4096u  /* keys in one ABD_RANGE_REPLY */

#define MSG_DIGEST_SIZE 32
#define MSG_PUBLIC_KEY_SIZE 32

/* "No replica", for the optional leader hints. Every other replica id is < MSG_MAX_REPLICAS. */
#define MSG_NO_REPLICA 0xffffu

/* Header flags (u16). Unknown bits are refused. */
#define MSG_FLAG_SUSPICIOUS 0x0001u /* the sender is suspicious (DESIGN.md section 4) */

/* Message types. The numbers are the wire values; new types get new numbers and a new
 * MSG_VERSION (a decoder refuses types it does not know). */
enum msg_type {
	/* client path */
	MSG_CLIENT_REQUEST = 1, /* a client command forwarded to another replica */
	MSG_CLIENT_REPLY = 2,
	/* RR-Paxos (section 5) and the replica lifecycle (section 4) */
	MSG_PREPARE = 3,	   /* phase 1a */
	MSG_PROMISE = 4,	   /* phase 1b, or its refusal */
	MSG_ACCEPT = 5,		   /* phase 2a: consecutive slots */
	MSG_ACCEPTED = 6,	   /* phase 2b */
	MSG_COMMIT = 7,		   /* commit index; also the leader's heartbeat */
	MSG_HEARTBEAT_ACK = 8,	   /* carries the leader-lease promise (section 8) */
	MSG_READ_INDEX = 9,	   /* the leader confirms its ballot */
	MSG_READ_INDEX_ACK = 10,   /* */
	MSG_READ = 11,		   /* the optimized read */
	MSG_READ_REPLY = 12,	   /* */
	MSG_REGISTER = 13,	   /* an incarnation asks the leader to commit its REGISTER */
	MSG_REGISTER_RESULT = 14,  /* */
	MSG_RECOVERY_REQUEST = 15, /* a recovering incarnation reads the protocol state */
	MSG_RECOVERY_REPLY = 16,   /* */
	MSG_SNAPSHOT_REQUEST = 17, /* */
	MSG_SNAPSHOT_CHUNK = 18,   /* */
	MSG_NACK = 19,		   /* a refusal, with a leader hint */
	/* RR-ABD (section 6) */
	MSG_ABD_QUERY = 20,
	MSG_ABD_QUERY_REPLY = 21,
	MSG_ABD_WRITE = 22,
	MSG_ABD_WRITE_ACK = 23,
	MSG_ABD_STABILIZE = 24,
	MSG_ABD_DIGEST_REQUEST = 25,
	MSG_ABD_DIGEST_REPLY = 26,
	MSG_ABD_RANGE_REQUEST = 27,
	MSG_ABD_RANGE_REPLY = 28,
	/* configuration leases (section 8) */
	MSG_LEASE_RENEW = 29,
	MSG_LEASE_REPLY = 30,
	/* epoch restart (section 6) */
	MSG_RESTART_PREPARE = 31,
	MSG_RESTART_ANSWER = 32,
	MSG_RESTART_ACCEPT = 33,
	MSG_RESTART_ACCEPTED = 34,
	MSG_TYPE_MIN_ = MSG_CLIENT_REQUEST,
	MSG_TYPE_MAX_ = MSG_RESTART_ACCEPTED,
};

/* Whether the data an acknowledgement names is fsynced (section 7). */
enum msg_sync {
	MSG_VOLATILE = 0,
	MSG_SYNCED = 1,
};

enum msg_client_status {
	MSG_CLIENT_OK = 0,	   /* applied; result holds the reply */
	MSG_CLIENT_ERROR = 1,	   /* refused (result holds the error text) */
	MSG_CLIENT_NOT_LEADER = 2, /* not applied; try the leader hint */
	MSG_CLIENT_UNKNOWN = 3,	   /* abandoned: the outcome is unknown, never "not applied" */
};

enum msg_register_status {
	MSG_REGISTER_COMMITTED = 0,  /* `index` is the new registration index */
	MSG_REGISTER_MISMATCH = 1,   /* expected index is stale; `current` is the leader's */
	MSG_REGISTER_KEY_USED = 2,   /* the key was registered before (at most once per key) */
	MSG_REGISTER_NOT_LEADER = 3, /* try the leader hint */
	MSG_REGISTER_REJECTED = 4,   /* the quote does not verify or names other code */
};

enum msg_nack_reason {
	MSG_NACK_BALLOT = 0,	 /* the replier promised `promised`, a higher ballot */
	MSG_NACK_NOT_LEADER = 1, /* the replier is not the leader; see the leader hint */
	MSG_NACK_SUSPICIOUS = 2, /* the replier is suspicious or fencing, so it does not vote */
	MSG_NACK_EPOCH = 3,	 /* the request belongs to another epoch than the replier's */
	MSG_NACK_BUSY = 4,	 /* temporarily unable (a queue is full); retry later */
};

enum msg_query_mode {
	MSG_QUERY_TIMESTAMP = 0, /* reply with the timestamp only (write phase 1) */
	MSG_QUERY_VALUE = 1,	 /* reply with timestamp and value (read) */
};

/* ---- identity types (section 4) ---- */

/* Where the REGISTER entry that admitted an incarnation sits in the log. (0, 0) means "none":
 * an incarnation that has not registered yet sends it in its header. */
struct msg_regidx {
	uint64_t epoch;
	uint64_t slot;
};

/* One incarnation of a replica; also one entry of a registration vector or configuration. */
struct msg_incarnation {
	uint16_t replica; /* < MSG_MAX_REPLICAS */
	struct msg_regidx reg;
};

/* Paxos ballot (round, replica, registration index), compared lexicographically. The epoch
 * restart's proposal number p = (round, replica, incarnation) has the same shape. */
struct msg_ballot {
	uint64_t round;
	uint16_t replica;
	struct msg_regidx reg;
};

/* ABD timestamp (seq, replica, registration index, op counter), compared lexicographically. */
struct msg_timestamp {
	uint64_t seq;
	uint16_t replica;
	struct msg_regidx reg;
	uint64_t op;
};

/* Bytes inside a frame: after decoding, p points into the caller's buffer. When encoding, p may
 * be NULL only if len is 0. */
struct msg_bytes {
	const uint8_t *p;
	uint32_t len;
};

/* ---- list elements ---- */

/* An accepted (or adopted) Paxos entry, with the ballot it was accepted at. */
struct msg_entry {
	uint64_t slot;
	struct msg_ballot ballot;
	bool adopted; /* adopted during recovery (section 4, step 5), not this replica's own vote */
	struct msg_bytes value; /* one slot's value: an opaque batch of client commands */
};

/* The digest of one ABD key range. Keys are split into `ranges` buckets (a power of two); the
 * ABD core defines the hash and the digest. */
struct msg_range_digest {
	uint32_t range; /* < the message's `ranges` */
	uint64_t keys;	/* how many keys the range holds */
	uint8_t digest[MSG_DIGEST_SIZE];
};

/* One ABD register in a range transfer. */
struct msg_item {
	struct msg_bytes key;
	struct msg_timestamp ts;
	bool stable;
	bool tombstone; /* deleted: value is empty */
	struct msg_bytes value;
};

/* ---- lists ----
 *
 * A list has one of two representations. A decoded list has `wire` (the validated elements in
 * the caller's buffer) and items == NULL. A list built for encoding has `items`, an array of
 * `count` elements owned by the caller, and wire == NULL. Read either with the iterators below
 * (msg_<list>_begin, then msg_<list>_next until it returns false); they never fail on a decoded
 * list. The encoder accepts both representations, so a decoded message can be re-encoded. */
#define MSG_LIST(name, elem)         \
	struct name {                \
		uint32_t count;      \
		const elem *items;   \
		const uint8_t *wire; \
		size_t wire_len;     \
	}

/* Registration vectors and configurations: strictly ascending replica ids (so at most one
 * incarnation per replica), at most MSG_MAX_REPLICAS. */
MSG_LIST(msg_incarnation_list, struct msg_incarnation);
/* Accepted entries: strictly ascending slots. */
MSG_LIST(msg_entry_list, struct msg_entry);
/* The values of consecutive slots in an ACCEPT. */
MSG_LIST(msg_value_list, struct msg_bytes);
/* Key-range digests: strictly ascending ranges. */
MSG_LIST(msg_range_digest_list, struct msg_range_digest);
/* Range-transfer items: strictly ascending keys (bytewise, a prefix before its extensions). */
MSG_LIST(msg_item_list, struct msg_item);

struct msg_iter {
	const uint8_t *p; /* next element on the wire */
	const uint8_t *end;
	const void *items; /* or the caller's array */
	uint32_t next;
	uint32_t count;
};

void msg_incarnations_begin(struct msg_iter *it, const struct msg_incarnation_list *l);
bool msg_incarnations_next(struct msg_iter *it, struct msg_incarnation *out);
void msg_entries_begin(struct msg_iter *it, const struct msg_entry_list *l);
bool msg_entries_next(struct msg_iter *it, struct msg_entry *out);
void msg_values_begin(struct msg_iter *it, const struct msg_value_list *l);
bool msg_values_next(struct msg_iter *it, struct msg_bytes *out);
void msg_range_digests_begin(struct msg_iter *it, const struct msg_range_digest_list *l);
bool msg_range_digests_next(struct msg_iter *it, struct msg_range_digest *out);
void msg_items_begin(struct msg_iter *it, const struct msg_item_list *l);
bool msg_items_next(struct msg_iter *it, struct msg_item *out);

/* The registration index a registration vector holds for `replica`; false if none. */
bool msg_regvec_find(const struct msg_incarnation_list *regvec, uint16_t replica,
		     struct msg_regidx *out);

/* ---- message bodies ----
 *
 * Every message's header names the sender incarnation and its suspicious flag, and carries a
 * nonce (struct msg below). A request that opens a collection (section 4) sets the nonce; every
 * reply counted toward a quorum echoes it and carries the replier's registration vector
 * (`regvec`) for the discard and halt rules. */

struct msg_client_request {
	uint64_t client_id;
	uint64_t request_id;
	struct msg_bytes command; /* <= MSG_MAX_BLOB */
};

struct msg_client_reply {
	uint64_t client_id;
	uint64_t request_id;
	enum msg_client_status status;
	uint16_t leader;	 /* hint, or MSG_NO_REPLICA */
	struct msg_bytes result; /* <= MSG_MAX_BLOB */
};

/* Phase 1a. The nonce names the vote collection. */
struct msg_prepare {
	struct msg_ballot ballot;
	uint64_t from_slot; /* report accepted entries from this slot on (commit index + 1) */
};

/* Phase 1b. ok: the replier promised `ballot`; `entries` are its accepted entries (own and
 * adopted, original ballots) from the PREPARE's from_slot on, and `more` says the list stopped at
 * MSG_MAX_ENTRIES (ask again from the slot after the last). Refusal (ok false): `promised` is
 * the higher ballot, entries is empty and more is false. */
struct msg_promise {
	struct msg_ballot ballot; /* the ballot asked for */
	bool ok;
	struct msg_ballot promised; /* the replier's promised ballot after handling the request */
	uint64_t commit_index;
	bool more;
	struct msg_entry_list entries;	    /* <= MSG_MAX_ENTRIES */
	struct msg_incarnation_list regvec; /* <= MSG_MAX_REPLICAS */
};

/* Phase 2a for slots first_slot .. first_slot + count - 1 (1 <= count <= MSG_MAX_BATCH). */
struct msg_accept {
	struct msg_ballot ballot;
	uint64_t commit_index;
	uint64_t first_slot;
	struct msg_value_list values; /* each <= MSG_MAX_BLOB */
};

/* Phase 2b for slots first_slot .. last_slot. A volatile ack may be followed by a synced one for
 * the same slots (sync=rr). */
struct msg_accepted {
	struct msg_ballot ballot;
	uint64_t first_slot;
	uint64_t last_slot;		 /* >= first_slot */
	uint8_t digest[MSG_DIGEST_SIZE]; /* of the accepted values; defined by the Paxos core */
	enum msg_sync sync;
	struct msg_incarnation_list regvec;
};

/* The leader's commit index; with a fresh nonce it is also the heartbeat. */
struct msg_commit {
	struct msg_ballot ballot;
	uint64_t commit_index;
};

struct msg_heartbeat_ack {
	struct msg_ballot ballot;
	uint64_t lease_ns;	   /* leader-lease promise (section 8): T_lease in ns, 0 = none */
	uint64_t accepted_through; /* every slot up to here is accepted or committed here */
	struct msg_incarnation_list regvec;
};

struct msg_read_index {
	struct msg_ballot ballot;
};

struct msg_read_index_ack {
	struct msg_ballot ballot;
	struct msg_incarnation_list regvec;
};

/* The optimized read (section 5). */
struct msg_read {
	struct msg_bytes command; /* a read-only command, <= MSG_MAX_BLOB */
};

struct msg_read_reply {
	uint64_t last_executed;
	uint64_t highest_accepted; /* above last_executed: the reader aborts */
	struct msg_bytes result;   /* <= MSG_MAX_BLOB */
	struct msg_incarnation_list regvec;
};

/* REGISTER(replica, key, quote, expected_previous_index) (section 4, step 2). */
struct msg_register {
	uint16_t replica;
	uint8_t public_key[MSG_PUBLIC_KEY_SIZE];
	struct msg_bytes quote; /* <= MSG_MAX_QUOTE */
	struct msg_regidx expected_previous;
};

struct msg_register_result {
	enum msg_register_status status;
	uint16_t replica;
	struct msg_regidx index;   /* COMMITTED: the new registration index */
	struct msg_regidx current; /* the leader's registration index for replica (retry with it) */
	uint16_t leader;	   /* hint, or MSG_NO_REPLICA */
};

/* Recovery read (section 4, step 5). */
struct msg_recovery_request {
	uint64_t from_slot; /* report accepted entries from this slot on (0: all) */
};

struct msg_recovery_reply {
	struct msg_ballot promised;
	uint64_t commit_index;
	uint64_t snapshot_index;
	bool more; /* entries stopped at MSG_MAX_ENTRIES; ask again from the slot after the last */
	struct msg_entry_list entries; /* every slot > snapshot_index */
	struct msg_incarnation_list regvec;
	uint32_t ranges; /* ABD partition size (a power of two), 0 when there is no ABD state */
	struct msg_range_digest_list range_digests; /* empty when ranges is 0 */
};

/* Asks for a snapshot covering at least min_index; index 0 means "your newest" (offset 0). */
struct msg_snapshot_request {
	uint64_t min_index;
	uint64_t index;
	uint64_t offset;
};

/* data covers [offset, offset + len) of a snapshot of total bytes; last iff it reaches total. */
struct msg_snapshot_chunk {
	uint64_t index;
	uint64_t total;
	uint64_t offset;
	bool last;
	struct msg_bytes data; /* <= MSG_MAX_CHUNK */
};

/* A refusal of a request of type `refused` (also the redirect to the leader). */
struct msg_nack {
	enum msg_type refused;
	enum msg_nack_reason reason;
	struct msg_ballot promised; /* the replier's promised ballot */
	uint16_t leader;	    /* hint, or MSG_NO_REPLICA */
};

struct msg_abd_query {
	enum msg_query_mode mode;
	struct msg_bytes key; /* <= MSG_MAX_KEY */
};

/* A key never written has the zero timestamp. value is empty for MSG_QUERY_TIMESTAMP and for a
 * tombstone. */
struct msg_abd_query_reply {
	struct msg_timestamp ts;
	bool stable;
	bool tombstone;
	struct msg_bytes value; /* <= MSG_MAX_VALUE */
	struct msg_incarnation_list regvec;
};

/* Store the value (or tombstone) under ts; also the read's write-back. */
struct msg_abd_write {
	struct msg_bytes key;
	struct msg_timestamp ts;
	bool tombstone; /* value is empty */
	struct msg_bytes value;
};

/* Names (key, ts) so a later synced ack can follow a volatile one (section 7). */
struct msg_abd_write_ack {
	struct msg_bytes key;
	struct msg_timestamp ts;
	enum msg_sync sync;
	struct msg_incarnation_list regvec;
};

struct msg_abd_stabilize {
	struct msg_bytes key;
	struct msg_timestamp ts;
	uint8_t digest[MSG_DIGEST_SIZE]; /* of the value */
};

/* Digests of ranges first .. first + count - 1 of a partition into `ranges` (a power of two,
 * 1 .. MSG_MAX_RANGES); count >= 1. */
struct msg_abd_digest_request {
	uint32_t ranges;
	uint32_t first;
	uint32_t count;
};

struct msg_abd_digest_reply {
	uint32_t ranges;
	struct msg_range_digest_list digests;
};

/* The registers of one range, in key order, from the first key after `after` (if has_after). */
struct msg_abd_range_request {
	uint32_t ranges;
	uint32_t range;
	bool has_after;
	struct msg_bytes after; /* empty unless has_after */
};

struct msg_abd_range_reply {
	uint32_t ranges;
	uint32_t range;
	bool complete; /* no key of the range after the last item */
	struct msg_item_list items;
};

/* Configuration-lease renewal (section 8), bound to the holder's applied configuration. */
struct msg_lease_renew {
	uint64_t config_index;
	uint64_t duration_ns;
};

struct msg_lease_reply {
	bool granted;
	uint64_t config_index; /* refusal: the grantor's highest accepted configuration index */
	uint64_t duration_ns;
	struct msg_incarnation_list regvec;
};

/* Epoch restart (section 6): a single-decree Paxos round on epoch + 1. */
struct msg_restart_prepare {
	uint64_t epoch;
	struct msg_ballot proposal;
};

/* An answer is a promise. It carries the answerer's state as digests (the proposer fetches what
 * differs with the recovery, snapshot and range messages) and any proposal it accepted. */
struct msg_restart_answer {
	uint64_t epoch;
	struct msg_ballot proposal;
	struct msg_ballot promised; /* Paxos promised ballot */
	uint64_t commit_index;
	uint64_t snapshot_index;
	uint64_t last_accepted;
	uint8_t log_digest[MSG_DIGEST_SIZE];
	uint32_t ranges; /* as in msg_recovery_reply */
	struct msg_range_digest_list range_digests;
	struct msg_incarnation_list regvec;
	bool has_accepted;
	struct msg_ballot accepted_proposal;
	struct msg_incarnation_list accepted_members; /* non-empty iff has_accepted */
	uint8_t accepted_digest[MSG_DIGEST_SIZE];
	/* The answering incarnation's restart tag (non-zero, fixed for the incarnation): the
	 * configuration of epoch + 1 names a member as (replica, (epoch + 1, tag)), so two
	 * incarnations of one replica (a fork) are told apart. */
	uint64_t tag;
};

/* The configuration of epoch + 1: at most one incarnation per replica (ascending ids). */
struct msg_restart_accept {
	uint64_t epoch;
	struct msg_ballot proposal;
	struct msg_incarnation_list members; /* non-empty */
	uint8_t state_digest[MSG_DIGEST_SIZE];
	struct msg_bytes
		authorization; /* operator signature (recovery = operator), <= MSG_MAX_AUTH */
	/* false: phase 2a (accept this proposal). true: the proposal was accepted by a quorum:
	 * epoch + 1 is decided with this configuration (learners install it or halt). */
	bool decided;
};

struct msg_restart_accepted {
	uint64_t epoch;
	struct msg_ballot proposal;
	struct msg_incarnation_list regvec;
};

/* A whole message: header fields, then the body selected by type. */
struct msg {
	enum msg_type type;
	struct msg_incarnation from; /* the sender incarnation */
	bool suspicious;	     /* the sender's flag */
	uint64_t nonce;		     /* the collection; 0 for messages outside any */
	union {
		struct msg_client_request client_request;
		struct msg_client_reply client_reply;
		struct msg_prepare prepare;
		struct msg_promise promise;
		struct msg_accept accept;
		struct msg_accepted accepted;
		struct msg_commit commit;
		struct msg_heartbeat_ack heartbeat_ack;
		struct msg_read_index read_index;
		struct msg_read_index_ack read_index_ack;
		struct msg_read read;
		struct msg_read_reply read_reply;
		struct msg_register register_; /* `register` is a C keyword */
		struct msg_register_result register_result;
		struct msg_recovery_request recovery_request;
		struct msg_recovery_reply recovery_reply;
		struct msg_snapshot_request snapshot_request;
		struct msg_snapshot_chunk snapshot_chunk;
		struct msg_nack nack;
		struct msg_abd_query abd_query;
		struct msg_abd_query_reply abd_query_reply;
		struct msg_abd_write abd_write;
		struct msg_abd_write_ack abd_write_ack;
		struct msg_abd_stabilize abd_stabilize;
		struct msg_abd_digest_request abd_digest_request;
		struct msg_abd_digest_reply abd_digest_reply;
		struct msg_abd_range_request abd_range_request;
		struct msg_abd_range_reply abd_range_reply;
		struct msg_lease_renew lease_renew;
		struct msg_lease_reply lease_reply;
		struct msg_restart_prepare restart_prepare;
		struct msg_restart_answer restart_answer;
		struct msg_restart_accept restart_accept;
		struct msg_restart_accepted restart_accepted;
	};
};

/* ---- codec ---- */

/* Encodes m into buf[0 .. cap). On success returns 0 and sets *len to the frame size.
 * buf may be NULL with cap 0 to learn the size.
 * Errors: TEEMS_EFULL when cap is too small (*len is then the size needed; buf holds garbage);
 * TEEMS_EINVAL when m breaks a rule of the format (unknown type, replica id out of range,
 * invalid enum value, list out of order or over its cap, field over its cap, frame over
 * MSG_MAX_FRAME, a cross-field rule). m is not modified and not retained. */
int msg_encode(const struct msg *m, uint8_t *buf, size_t cap, size_t *len);

/* Decodes exactly one frame, buf[0 .. len). On success returns 0 and fills *out, which points
 * into buf: it is valid while buf is, and buf must not change meanwhile.
 * Errors: TEEMS_EVERSION for a version other than MSG_VERSION; TEEMS_ECORRUPT for anything else
 * malformed (short, length field not equal to len, trailing bytes, unknown type or flag, invalid
 * enum or bool, out-of-range replica id, a count or length over its cap or past the end, list
 * out of order, a cross-field rule). On error *out is unspecified. Never reads outside buf. */
int msg_decode(const uint8_t *buf, size_t len, struct msg *out);

/* msg_decode, and on error a description ("PROMISE: list out of order at byte 97") in errbuf
 * (TEEMS_ERRBUF_LEN bytes, may be NULL). */
int msg_decode_explain(const uint8_t *buf, size_t len, struct msg *out, char *errbuf);

/* Stream framing: given the first len bytes received, sets *need to the size of the whole frame
 * that starts at buf (or to MSG_HEADER_SIZE while fewer than 4 bytes are there). The frame is
 * complete once len >= *need. Refuses a length before it is buffered.
 * Errors: TEEMS_ECORRUPT when the length field is below MSG_HEADER_SIZE or above MSG_MAX_FRAME;
 * TEEMS_EVERSION when the version byte is present and unknown. Either way, close the stream. */
int msg_frame_length(const uint8_t *buf, size_t len, size_t *need);

/* Field-by-field equality (bytes and list contents, whatever their representation). */
bool msg_equal(const struct msg *a, const struct msg *b);

/* "PREPARE", ...; "UNKNOWN" for a value that is not a type. Never NULL. */
const char *msg_type_name(int type);

/* Lexicographic comparisons: negative, zero or positive. */
int msg_regidx_cmp(const struct msg_regidx *a, const struct msg_regidx *b);
int msg_ballot_cmp(const struct msg_ballot *a, const struct msg_ballot *b);
int msg_timestamp_cmp(const struct msg_timestamp *a, const struct msg_timestamp *b);

#endif
