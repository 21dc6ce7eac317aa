#include <stdarg.h>
#include <stdio.h>

#include "teems/err.h"

static const char *const err_strings[] = {
	[0] = "success",
	[-TEEMS_ENOMEM] = "out of memory",
	[-TEEMS_EINVAL] = "invalid argument",
	[-TEEMS_EIO] = "input/output error",
	[-TEEMS_ECORRUPT] = "malformed or corrupt data",
	[-TEEMS_EAUTH] = "authentication failed",
	[-TEEMS_ECRYPTO] = "crypto library error",
	[-TEEMS_ENOTFOUND] = "not found",
	[-TEEMS_EVERSION] = "unsupported version",
	[-TEEMS_EQUOTE_ROOT] = "quote signed by an untrusted root",
	[-TEEMS_EQUOTE_MEASUREMENT] = "quote for an unexpected measurement",
	[-TEEMS_EQUOTE_TAMPERED] = "quote signature does not verify",
	[-TEEMS_ECONFIG] = "invalid configuration",
	[-TEEMS_EFULL] = "buffer or table full",
	[-TEEMS_ECLOCK] = "trusted clock unusable",
	[-TEEMS_EEXIST] = "already exists",
	[-TEEMS_EPROTO] = "protocol error",
	[-TEEMS_EEOF] = "connection closed",
};

const char *teems_strerror(int err)
{
	if (err > 0 || err < TEEMS_ERR_MIN_ || err_strings[-err] == NULL)
		return "unknown error";
	return err_strings[-err];
}

int teems_errf(char *errbuf, int err, const char *fmt, ...)
{
	va_list ap;

	if (errbuf == NULL)
		return err;
	va_start(ap, fmt);
	vsnprintf(errbuf, TEEMS_ERRBUF_LEN, fmt, ap);
	va_end(ap);
	return err;
}
