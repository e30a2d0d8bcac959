/* SPDX-License-Identifier: BSD-3-Clause */
/* stratad - --chardev: listening unix sockets that monitors attach to. */
#ifndef STRATAD_CHARDEV_H
#define STRATAD_CHARDEV_H

#include <stdbool.h>

#include "util/error.h"

/* Parses "socket,id=C,path=P,server=on,wait=off" (or JSON) and creates
 * the listening socket at once, as QEMU does. */
bool chardev_add(const char *arg, Error **errp);

/* Hands chardev id's listening socket to the QMP monitor ("--monitor
 * chardev=C").  A chardev serves one monitor. */
bool chardev_attach_monitor(const char *id, bool pretty, Error **errp);

/* Closes and unlinks the chardevs no monitor took, and forgets all. */
void chardev_cleanup(void);

#endif
