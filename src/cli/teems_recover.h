/* `teems init` and `teems recover` (teems_recover.c): the operator key of recovery = operator
 * and the operator-authorized epoch restart (docs/OPERATIONS.md "Operator-authorized
 * recovery"). */
#ifndef TEEMS_CLI_TEEMS_RECOVER_H
#define TEEMS_CLI_TEEMS_RECOVER_H

#include <stdbool.h>

#include "cli/teems_cli.h"

/* `teems init ...`: argv[0] is "init". Returns an exit code. */
int cli_init_main(int argc, char **argv, const struct cli_globals *g);

/* The operator key pair in DIR (DIR/operator.key 0600, DIR/operator.pub; an existing key is
 * kept unless `force`) and recovery = operator, operator_key = DIR/operator.pub in every
 * DIR/r<i>/teemsd.conf that exists. For `cluster up --recovery operator`: call it after the
 * configurations are written and before the replicas start. Prints what it did. Returns an
 * exit code (CLI_OK, or CLI_FAILED after saying why). */
int cli_init_operator(const char *dir, bool force);

/* `teems recover ...`: argv[0] is "recover". Returns an exit code. */
int cli_recover_main(int argc, char **argv, const struct cli_globals *g);

#endif
