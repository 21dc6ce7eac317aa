#include "client/obj_err.h"
#include "teems/err.h"

static const char *const obj_err_strings[] = {
	[-OBJ_ETAMPERED - 100] = "blob tampered (does not authenticate)",
	[-OBJ_ETRUNCATED - 100] = "blob truncated",
	[-OBJ_ESTALE - 100] = "blob is an older version (rolled back)",
	[-OBJ_EDENIED - 100] = "store denied access",
	[-OBJ_EUNAVAIL - 100] = "store unavailable",
	[-OBJ_EMISSING - 100] = "blob missing",
	[-OBJ_ECONFLICT - 100] = "conflict",
	[-OBJ_ESERVICE - 100] = "service unavailable",
};

const char *obj_strerror(int err)
{
	if (err <= -100 && err >= OBJ_ERR_MIN_)
		return obj_err_strings[-err - 100];
	return teems_strerror(err);
}
