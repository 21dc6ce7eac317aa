/* Error codes of the object layer (teems_client), beyond the shared ones of teems/err.h.
 *
 * They live in their own range (-100 and below) so that teems/err.h is not renumbered and other
 * layers can keep appending to it. Functions of teems_client return TEEMS_OK, a code of
 * teems/err.h, or one of these; obj_strerror() describes any of them. What each means for a user
 * of the untrusted store is in docs/OBJECTS.md. */
#ifndef TEEMS_CLIENT_OBJ_ERR_H
#define TEEMS_CLIENT_OBJ_ERR_H

enum obj_err {
	/* The blob does not authenticate: a byte was changed, chunks were swapped or reordered, the
	 * blob belongs to another object, or it is not a teems blob at all. */
	OBJ_ETAMPERED = -100,
	/* The blob authenticates as far as it goes but its tail is missing (cut inside the header,
	 * inside a chunk or at a chunk boundary). */
	OBJ_ETRUNCATED = -101,
	/* The blob is an authentic, older version of this object (the store rolled it back). */
	OBJ_ESTALE = -102,
	/* The store refused our credentials or permissions (S3 403). */
	OBJ_EDENIED = -103,
	/* The store is unreachable, timed out, or failed on its side (S3 5xx); retrying may help.
	 */
	OBJ_EUNAVAIL = -104,
	/* The service's metadata names a blob the store does not have (deleted). */
	OBJ_EMISSING = -105,
	/* A compare-and-set lost: another writer committed first (include/teems/object.h). */
	OBJ_ECONFLICT = -106,
	/* The teems service cannot be reached (every replica refused, timed out or kept saying
	 * TRYAGAIN), or a write's reply was lost so its outcome is unknown. */
	OBJ_ESERVICE = -107,
	OBJ_ERR_MIN_ = -107,
};

/* Describes a code of this enum or of teems/err.h. Never NULL. */
const char *obj_strerror(int err);

#endif
