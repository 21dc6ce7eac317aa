/* libFuzzer target for teemsd's configuration parser (src/server/config.h).
 *
 * The input is a configuration file's text, copied to an exact-size buffer so that
 * AddressSanitizer catches any overread. Whatever the parser accepts is then validated; a
 * refusal must come with a message that starts with "config: ". The input is also tried, as a
 * NUL-terminated string, as the value of every setting (the flag path) and as a duration and a
 * size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/config.h"
#include "teems/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

static const char *const keys[] = {
	"replica_id",
	"peers",
	"f",
	"m_r",
	"engine",
	"data_dir",
	"sync",
	"t_op",
	"t_lease",
	"t_cfg",
	"rho",
	"recovery",
	"operator_key",
	"listen",
	"tls_cert",
	"tls_key",
	"tls_ca",
	"max_args",
	"max_bulk",
	"max_inline",
	"max_request",
	"cluster_id",
	"platform_dir",
	"client_tls",
	"service_ca_sealed",
	"tls_names",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct teems_config c;
	char err[TEEMS_ERRBUF_LEN];
	char *text = malloc(size ? size : 1);
	char *str;
	uint64_t v;
	int rc;

	CHECK(text != NULL);
	memcpy(text, data, size);
	config_defaults(&c);
	err[0] = '\0';
	rc = config_parse_text(&c, text, size, "fuzz.conf", err);
	CHECK(rc == TEEMS_OK || (rc == TEEMS_ECONFIG && strncmp(err, "config: ", 8) == 0));
	if (rc == TEEMS_OK) {
		rc = config_validate(&c, err);
		CHECK(rc == TEEMS_OK || (rc == TEEMS_ECONFIG && strncmp(err, "config: ", 8) == 0));
		if (rc == TEEMS_OK) {
			CHECK(config_self(&c) != NULL);
			CHECK(c.quorum.n == c.n_peers);
		}
	}
	free(text);

	if (size < 4096) {
		str = malloc(size + 1);
		CHECK(str != NULL);
		memcpy(str, data, size);
		str[size] = '\0';
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			config_defaults(&c);
			rc = config_set(&c, keys[i], str, "--fuzz", err);
			CHECK(rc == TEEMS_OK || rc == TEEMS_ECONFIG);
		}
		(void)config_parse_duration(str, &v);
		(void)config_parse_size(str, &v);
		(void)config_is_loopback(str);
		free(str);
	}
	return 0;
}
