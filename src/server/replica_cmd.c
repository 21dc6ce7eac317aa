/* RESP command <-> one encoded state-machine command, for the replica engine.
 *
 * contracts.md item 3: src/net/commands.h is gaining cmd_request (one checked RESP command as
 * ONE encoded command) and cmd_response (its RESP reply from the encoded result). CMake defines
 * TEEMS_HAVE_CMD_REQUEST when the header declares them (src/server/CMakeLists.txt). Until then
 * the engine serves the commands that are one src/kv command each (GET, VGET, plain SET, VSET,
 * and EXISTS/MGET of one key) through cmd_to_kv and cmd_reply: the encoded command is the kv
 * command, the result kv's encoded result. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/replica_internal.h"
#include "teems/err.h"

#ifdef TEEMS_HAVE_CMD_REQUEST

int rp_cmd_request(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		   uint64_t now_ms, uint8_t **out, size_t *out_len, char *err)
{
	return cmd_request(spec, argv, argc, now_ms, out, out_len, err);
}

int rp_cmd_response(const struct cmd_spec *spec, const uint8_t *result, size_t len,
		    struct resp_out *out)
{
	return cmd_response(spec, result, len, out);
}

int rp_cmd_request_as(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		      uint64_t now_ms, const char *user, uint8_t **out, size_t *out_len, char *err)
{
	return cmd_request_as(spec, argv, argc, now_ms, user, out, out_len, err);
}

#else

int rp_cmd_request(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		   uint64_t now_ms, uint8_t **out, size_t *out_len, char *err)
{
	struct kv_cmd op;
	size_t len;
	int n;

	(void)now_ms; /* plain SET has no expiry */
	*out = NULL;
	*out_len = 0;
	if (spec->id == CMD_DEL) { /* its reply counts keys that existed: needs GETs first */
		snprintf(err, CMD_ERR_LEN, "ERR '%s' is not supported yet", spec->name);
		return -1;
	}
	n = cmd_to_kv(spec, argv, argc, &op, 1, err);
	if (n < 0) {
		if (strcmp(err, "ERR too many keys") == 0)
			snprintf(err, CMD_ERR_LEN,
				 "ERR '%s' of more than one key is not supported yet", spec->name);
		return -1;
	}
	if (n != 1) {
		snprintf(err, CMD_ERR_LEN, "ERR '%s' is not supported yet", spec->name);
		return -1;
	}
	len = kv_cmd_size(&op);
	if (len == 0) {
		snprintf(err, CMD_ERR_LEN, "ERR invalid command");
		return -1;
	}
	*out = teems_malloc(len);
	if (*out == NULL) {
		snprintf(err, CMD_ERR_LEN, "ERR teems: out of memory");
		return -1;
	}
	if (kv_cmd_encode(&op, *out, len, out_len) != TEEMS_OK) {
		teems_free(*out);
		*out = NULL;
		snprintf(err, CMD_ERR_LEN, "ERR invalid command");
		return -1;
	}
	return 0;
}

int rp_cmd_response(const struct cmd_spec *spec, const uint8_t *result, size_t len,
		    struct resp_out *out)
{
	struct kv_result res;

	if (kv_result_decode(result, len, &res) != TEEMS_OK || cmd_reply(spec, &res, 1, out) != 0) {
		resp_add_error(out, "ERR teems: the result does not decode");
		return -1;
	}
	return 0;
}

int rp_cmd_request_as(const struct cmd_spec *spec, const struct resp_arg *argv, size_t argc,
		      uint64_t now_ms, const char *user, uint8_t **out, size_t *out_len, char *err)
{
	(void)user; /* the subset has no users: everything runs unchecked */
	return rp_cmd_request(spec, argv, argc, now_ms, out, out_len, err);
}

#endif
