/* recovery = operator in teemsd (DESIGN.md section 6, "Authorization"; docs/PROTOCOL.md
 * "Operator-authorized restart"; docs/OPERATIONS.md "Operator-authorized recovery"): the
 * operator's public key, the restart fields of TEEMS.STATUS, and the TEEMS.RECOVER command that
 * hands the operator's signature to the core.
 *
 * Wiring (in files of the engine):
 *   replica.c, open_core(), before paxos_new: give the epoch restart its T_restart in both
 *     recovery modes, then
 *         rc = rp_recover_configure(&r->cfg, &pc, errbuf);
 *         if (rc != TEEMS_OK) return rc;
 *   replica_client.c, status_lines(): replica_restart_status(r, t) through a buffer (below);
 *   replica_client.c, replica_client(): TEEMS.RECOVER (a local command, like TEEMS.STATUS) to
 *     replica_recover_command(). */
#ifndef TEEMS_SERVER_REPLICA_RECOVER_H
#define TEEMS_SERVER_REPLICA_RECOVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/paxos.h"
#include "net/resp.h"
#include "server/config.h"

struct replica;

/* Reads an Ed25519 public key: a PEM SubjectPublicKeyInfo file (`openssl pkey -pubout`, what
 * `teems init` writes). Errors: TEEMS_EIO (cannot read), TEEMS_ECONFIG (not an Ed25519 public
 * key), with the path in errbuf. */
int rp_operator_key_load(const char *path, uint8_t pub[MSG_PUBLIC_KEY_SIZE], char *errbuf);

/* With recovery = operator: loads cfg->operator_key and sets pc's restart_operator,
 * restart_cluster_id, restart_operator_key and restart_verify. With recovery = auto: nothing.
 * Errors: those of rp_operator_key_load. */
int rp_recover_configure(const struct teems_config *cfg, struct paxos_config *pc, char *errbuf);

/* Appends the restart fields of TEEMS.STATUS ("key:value\r\n" lines, NUL-terminated, cut at
 * cap) to buf; returns the length written (without the NUL):
 *   recovery:auto|operator
 *   restart_epoch:E              the current epoch (as TEEMS.STATUS epoch)
 *   restart_stuck:0|1            stuck now (would propose or answer an epoch restart)
 *   restart_answered:0|1         this incarnation promised a restart in its epoch
 *   restart_promised:R.X.E.T     that promise (round.replica.epoch.tag; 0.0.0.0: none)
 *   restart_phase:idle|answers|accepts|waiting_operator
 *   restart_proposal:R.X.E.T     this replica's proposal (phases other than idle)
 *   restart_members:X@E.T,...    the configuration of epoch + 1 it proposes
 *   restart_auth_refused:N       RESTART_ACCEPTs refused for lack of a valid authorization
 *   restart_authorize:HEX        waiting_operator only: the exact message to sign
 * buf holds at least REPLICA_RESTART_STATUS_MAX bytes for the whole text. */
#define REPLICA_RESTART_STATUS_MAX (2 * PAXOS_RESTART_AUTH_MSG_MAX + 64 * 48 + 512)
size_t replica_restart_status(struct replica *r, char *buf, size_t cap);

/* TEEMS.RECOVER, answered with exactly one io.reply:
 *   TEEMS.RECOVER STATUS                              -> bulk: replica_restart_status's lines
 *   TEEMS.RECOVER AUTHORIZE <epoch> <R.X.E.T> <hex signature>
 *       -> +OK: verified, the accept starts at the next tick; or -ERR saying why (recovery =
 *          auto; nothing waits here; a stale authorization for another epoch or proposal; a
 *          signature that does not verify with this replica's operator key), also logged. */
void replica_recover_command(struct replica *r, uint64_t conn, uint64_t req,
			     const struct resp_arg *argv, size_t argc, int proto);

#endif
