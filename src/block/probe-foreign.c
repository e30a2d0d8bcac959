/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - recognising the image formats QEMU probes that strata does
 * not read, so that they are refused by name instead of being taken for
 * raw.  A VMDK or VHDX opened as raw "converts" to its container's bytes
 * and "resizes" by moving its footer away: silently wrong, and the user
 * finds out when the guest does not boot.
 *
 * Each probe scores like QEMU's driver of that format (100 = certain,
 * small numbers = a guess from the name), from the first bytes of the
 * file.  The signatures are those of the formats' specifications.
 */
#include <stdint.h>
#include <string.h>

#include "block/block_core.h"

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static bool starts_with(const uint8_t *buf, size_t len, const char *magic,
                        size_t mlen)
{
    return len >= mlen && memcmp(buf, magic, mlen) == 0;
}

/* Sparse extents start with "KDMV" (VMDK 4) or "COWD" (VMDK 3); a
 * descriptor file is text whose first line that is neither a comment
 * nor blank says "version=1", "2" or "3". */
static int probe_vmdk(const uint8_t *buf, size_t len, const char *filename)
{
    if (starts_with(buf, len, "KDMV", 4) || starts_with(buf, len, "COWD", 4)) {
        return 100;
    }
    const char *p = (const char *)buf, *end = p + len;
    while (p < end) {
        if (*p == '#') {
            while (p < end && *p != '\n') {
                p++;
            }
            p++;
            continue;
        }
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            p++;
            continue;
        }
        static const char *const versions[] = { "version=1", "version=2",
                                                "version=3" };
        for (size_t i = 0; i < 3; i++) {
            size_t n = strlen(versions[i]);
            if ((size_t)(end - p) > n && !memcmp(p, versions[i], n) &&
                (p[n] == '\n' || (p[n] == '\r' && (size_t)(end - p) > n + 1 &&
                                  p[n + 1] == '\n'))) {
                return 100;
            }
        }
        return 0;
    }
    return 0;
}

static int probe_vhdx(const uint8_t *buf, size_t len, const char *filename)
{
    return starts_with(buf, len, "vhdxfile", 8) ? 100 : 0;
}

/* VHD (QEMU's "vpc"): the footer copy at the start of dynamic images. */
static int probe_vpc(const uint8_t *buf, size_t len, const char *filename)
{
    return starts_with(buf, len, "conectix", 8) ? 100 : 0;
}

/* VirtualBox: the signature follows a 64-byte text field. */
static int probe_vdi(const uint8_t *buf, size_t len, const char *filename)
{
    return len >= 68 && get_le32(buf + 64) == 0xbeda107f ? 100 : 0;
}

static int probe_qed(const uint8_t *buf, size_t len, const char *filename)
{
    return starts_with(buf, len, "QED\0", 4) ? 100 : 0;
}

/* Parallels: either signature, with header version 2. */
static int probe_parallels(const uint8_t *buf, size_t len,
                           const char *filename)
{
    if (len < 64) {
        return 0;
    }
    bool magic = !memcmp(buf, "WithoutFreeSpace", 16) ||
                 !memcmp(buf, "WithouFreSpacExt", 16);
    return magic && get_le32(buf + 16) == 2 ? 100 : 0;
}

/* cloop: a shell script header that mounts the image; QEMU gives it a
 * low score. */
static int probe_cloop(const uint8_t *buf, size_t len, const char *filename)
{
    static const char magic[] =
        "#!/bin/sh\n#V2.0 Format\n"
        "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";
    return starts_with(buf, len, magic, sizeof(magic) - 1) ? 2 : 0;
}

/* Apple disk images keep their signature at the end; QEMU goes by the
 * name. */
static int probe_dmg(const uint8_t *buf, size_t len, const char *filename)
{
    size_t n = filename ? strlen(filename) : 0;
    return n > 4 && !strcmp(filename + n - 4, ".dmg") ? 2 : 0;
}

/* Bochs: growing redolog images, header version 1 or 2 (what QEMU
 * opens). */
static int probe_bochs(const uint8_t *buf, size_t len, const char *filename)
{
    if (len < 512) {
        return 0;
    }
    uint32_t version = get_le32(buf + 64);
    return !strncmp((const char *)buf, "Bochs Virtual HD Image", 32) &&
           !strncmp((const char *)buf + 32, "Redolog", 16) &&
           !strncmp((const char *)buf + 48, "Growing", 16) &&
           (version == 0x00020000 || version == 0x00010000) ? 100 : 0;
}

/* LUKS version 1 (what QEMU 7.2 opens). */
static int probe_luks(const uint8_t *buf, size_t len, const char *filename)
{
    return len >= 8 && !memcmp(buf, "LUKS\xba\xbe", 6) &&
           buf[6] == 0 && buf[7] == 1 ? 100 : 0;
}

/* qcow version 1: qcow2's magic with version 1 (qcow2 takes >= 2). */
static int probe_qcow1(const uint8_t *buf, size_t len, const char *filename)
{
    return len >= 8 && get_be32(buf) == 0x514649fb && get_be32(buf + 4) == 1
           ? 100 : 0;
}

static const struct {
    const char *name;             /* QEMU's driver name */
    int (*probe)(const uint8_t *buf, size_t len, const char *filename);
} foreign[] = {
    { "vmdk", probe_vmdk },
    { "vhdx", probe_vhdx },
    { "vpc", probe_vpc },
    { "vdi", probe_vdi },
    { "qed", probe_qed },
    { "parallels", probe_parallels },
    { "cloop", probe_cloop },
    { "dmg", probe_dmg },
    { "bochs", probe_bochs },
    { "luks", probe_luks },
    { "qcow", probe_qcow1 },
};

const char *block_probe_unsupported(const uint8_t *buf, size_t len,
                                    const char *filename, int *score)
{
    const char *best = NULL;
    *score = 0;
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        int s = foreign[i].probe(buf, len, filename);
        if (s > *score) {
            *score = s;
            best = foreign[i].name;
        }
    }
    return best;
}
