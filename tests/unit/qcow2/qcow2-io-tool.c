/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - qcow2-io-tool: a minimal qemu-io for tests.
 *
 *   qcow2-io-tool [-r] [-n] [-f FMT] IMAGE 'CMD ARGS' ...
 *
 * Opens IMAGE with block_open_image (read-write unless -r; -n: no
 * backing chain) and runs each command in order:
 *   write OFF LEN PAT    fill with byte PAT          (FUA with writef)
 *   read OFF LEN PAT     verify every byte is PAT
 *   readfile OFF LEN F   verify against bytes OFF..OFF+LEN of file F
 *   writec OFF LEN PAT   compressed write of one cluster
 *   zero OFF LEN [unmap|nofallback]...
 *   discard OFF LEN
 *   flush
 *   map                  print block_status runs of the top layer
 *   stress THREADS ROUNDS SEED
 *                        threads write their own 512-byte sectors,
 *                        interleaved inside shared clusters, then verify
 *   stressops THREADS ROUNDS SEED
 *                        threads own whole clusters (cluster c belongs to
 *                        thread c % THREADS) and write, zero and discard
 *                        in them at once (v3 images: discard reads zero)
 *   bench THREADS OPS READPCT
 *                        each thread does OPS random 4 KiB requests
 *                        (READPCT % reads, the rest rewrites) over the
 *                        whole disk; prints requests per second (for
 *                        profiling the hot path: allocate the disk first)
 * Exits 0 when every command succeeded, 1 otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "util/cleanup.h"
#include "util/units.h"

static BlockNode *node;

static bool parse_num(const char *s, uint64_t *out)
{
    Error *err = NULL;
    if (!parse_size(s, out, &err)) {
        fprintf(stderr, "qcow2-io-tool: %s\n", error_get_pretty(err));
        error_free(err);
        return false;
    }
    return true;
}

static int cmd_write(uint64_t off, uint64_t len, int pat, int flags)
{
    CLEANUP_FREE uint8_t *buf = malloc(len ? len : 1);
    memset(buf, pat, len);
    return block_write(node, off, len, buf, flags);
}

static int cmd_read(uint64_t off, uint64_t len, int pat)
{
    CLEANUP_FREE uint8_t *buf = malloc(len ? len : 1);
    int ret = block_read(node, off, len, buf, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < len; i++) {
        if (buf[i] != pat) {
            fprintf(stderr, "mismatch at %" PRIu64 ": 0x%02x, expected "
                    "0x%02x\n", off + i, buf[i], pat);
            return -EILSEQ;
        }
    }
    return 0;
}

static int cmd_readfile(uint64_t off, uint64_t len, const char *path)
{
    CLEANUP_FREE uint8_t *buf = malloc(len ? len : 1);
    CLEANUP_FREE uint8_t *ref = calloc(1, len ? len : 1);
    FILE *f = fopen(path, "rb");
    if (!f) {
        return -errno;
    }
    if (fseeko(f, (off_t)off, SEEK_SET) == 0) {
        size_t got = fread(ref, 1, len, f);
        (void)got; /* past the end of the reference reads as zeroes */
    }
    fclose(f);
    int ret = block_read(node, off, len, buf, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < len; i++) {
        if (buf[i] != ref[i]) {
            fprintf(stderr, "mismatch at %" PRIu64 ": 0x%02x, reference "
                    "0x%02x\n", off + i, buf[i], ref[i]);
            return -EILSEQ;
        }
    }
    return 0;
}

static int cmd_map(void)
{
    uint64_t size = block_node_size(node);
    for (uint64_t off = 0; off < size;) {
        uint64_t pnum = 0, map = 0;
        int ret = block_status(node, off, size - off, &pnum, &map, NULL);
        if (ret < 0) {
            return ret;
        }
        printf("%" PRIu64 " %" PRIu64 " 0x%x", off, pnum, ret);
        if (ret & BLOCK_STATUS_OFFSET_VALID) {
            printf(" %" PRIu64, map);
        }
        printf("\n");
        off += pnum;
    }
    return 0;
}

/* ---- stress ---- */

typedef struct StressArg {
    int id, threads, rounds;
    unsigned seed;
    uint8_t *last; /* per sector: last pattern written (0 = never) */
    int err;
} StressArg;

static void *stress_thread(void *opaque)
{
    StressArg *a = opaque;
    uint64_t sectors = block_node_size(node) / 512;
    unsigned seed = a->seed * 7919u + (unsigned)a->id;
    for (int r = 0; r < a->rounds && !a->err; r++) {
        /* A run of this thread's sectors: sector s belongs to thread
         * s % threads, so neighbouring threads share every cluster. */
        uint64_t start = (uint64_t)rand_r(&seed) % sectors;
        start -= start % (uint64_t)a->threads;
        start += (uint64_t)a->id;
        if (start >= sectors) {
            continue;
        }
        int count = 1 + rand_r(&seed) % 16;
        uint8_t pat = (uint8_t)(1 + (a->id * 31 + r) % 255);
        uint8_t buf[512];
        memset(buf, pat, sizeof(buf));
        for (int i = 0; i < count; i++) {
            uint64_t s = start + (uint64_t)i * (uint64_t)a->threads;
            if (s >= sectors) {
                break;
            }
            int ret = block_write(node, s * 512, 512, buf, 0);
            if (ret < 0) {
                fprintf(stderr, "stress write: %s\n", strerror(-ret));
                a->err = ret;
                break;
            }
            a->last[s] = pat;
        }
        if (rand_r(&seed) % 8 == 0) {
            /* Read back an own sector while the others allocate
             * around it: it must never show anything but our data. */
            uint64_t s = start;
            uint8_t rb[512];
            if (s < sectors && block_read(node, s * 512, 512, rb, 0) == 0 &&
                a->last[s] && rb[0] != a->last[s]) {
                fprintf(stderr, "stress: sector %" PRIu64 " reads 0x%02x, "
                        "wrote 0x%02x\n", s, rb[0], a->last[s]);
                a->err = -EILSEQ;
            }
        }
    }
    return NULL;
}

static int cmd_stress(int threads, int rounds, unsigned seed)
{
    uint64_t sectors = block_node_size(node) / 512;
    CLEANUP_FREE uint8_t *base = malloc(sectors * 512);
    CLEANUP_FREE uint8_t *last = calloc(1, sectors);
    CLEANUP_FREE uint8_t *now = malloc(sectors * 512);
    if (!base || !last || !now) {
        return -ENOMEM;
    }
    int ret = block_read(node, 0, sectors * 512, base, 0);
    if (ret < 0) {
        return ret;
    }
    pthread_t tids[64];
    StressArg args[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    for (int i = 0; i < threads; i++) {
        args[i] = (StressArg){ i, threads, rounds, seed, last, 0 };
        pthread_create(&tids[i], NULL, stress_thread, &args[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        if (args[i].err) {
            ret = args[i].err;
        }
    }
    if (ret < 0) {
        return ret;
    }
    ret = block_read(node, 0, sectors * 512, now, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t s = 0; s < sectors; s++) {
        for (int i = 0; i < 512; i++) {
            uint8_t want = last[s] ? last[s] : base[s * 512 + i];
            if (now[s * 512 + i] != want) {
                fprintf(stderr, "stress: byte %" PRIu64 " is 0x%02x, "
                        "expected 0x%02x\n", s * 512 + i, now[s * 512 + i],
                        want);
                return -EILSEQ;
            }
        }
    }
    return 0;
}

/* ---- stressops ---- */

typedef struct OpsArg {
    int id, threads, rounds;
    unsigned seed;
    uint64_t cs;
    uint8_t *model; /* expected content of the whole disk */
    int err;
} OpsArg;

static void *ops_thread(void *opaque)
{
    OpsArg *a = opaque;
    uint64_t size = block_node_size(node);
    uint64_t clusters = size / a->cs;
    unsigned seed = a->seed * 104729u + (unsigned)a->id;
    CLEANUP_FREE uint8_t *buf = malloc(a->cs);
    for (int r = 0; r < a->rounds && !a->err; r++) {
        uint64_t c = (uint64_t)rand_r(&seed) % clusters;
        c -= c % (uint64_t)a->threads;
        c += (uint64_t)a->id;
        if (c >= clusters) {
            continue;
        }
        uint64_t off = c * a->cs, len = a->cs;
        int op = rand_r(&seed) % 10;
        if (op < 6 || op == 9) {
            /* Partial or whole-cluster write. */
            if (op == 9 || rand_r(&seed) % 2) {
                off += (uint64_t)rand_r(&seed) % a->cs;
                len = 1 + (uint64_t)rand_r(&seed) % (c * a->cs + a->cs - off);
            }
        }
        uint8_t pat = (uint8_t)(1 + rand_r(&seed) % 250);
        int ret;
        if (op < 6 || op == 9) {
            memset(buf, pat, len);
            ret = block_write(node, off, len, buf, 0);
            memset(a->model + off, pat, len);
        } else if (op < 8) {
            ret = block_write_zeroes(node, off, len,
                                     op == 7 ? BLOCK_REQ_MAY_UNMAP : 0);
            memset(a->model + off, 0, len);
        } else {
            ret = block_discard(node, off, len);
            memset(a->model + off, 0, len);
        }
        if (ret < 0) {
            fprintf(stderr, "stressops op %d at %" PRIu64 ": %s\n", op, off,
                    strerror(-ret));
            a->err = ret;
        }
    }
    return NULL;
}

static int cmd_stressops(int threads, int rounds, unsigned seed)
{
    uint64_t size = block_node_size(node);
    uint64_t cs = block_node_cluster_size(node) ? block_node_cluster_size(node)
                                                : 65536;
    size -= size % cs;
    CLEANUP_FREE uint8_t *model = malloc(size);
    CLEANUP_FREE uint8_t *now = malloc(size);
    if (!model || !now) {
        return -ENOMEM;
    }
    int ret = block_read(node, 0, size, model, 0);
    if (ret < 0) {
        return ret;
    }
    pthread_t tids[64];
    OpsArg args[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    for (int i = 0; i < threads; i++) {
        args[i] = (OpsArg){ i, threads, rounds, seed, cs, model, 0 };
        pthread_create(&tids[i], NULL, ops_thread, &args[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        if (args[i].err) {
            ret = args[i].err;
        }
    }
    if (ret < 0) {
        return ret;
    }
    ret = block_read(node, 0, size, now, 0);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = 0; i < size; i++) {
        if (now[i] != model[i]) {
            fprintf(stderr, "stressops: byte %" PRIu64 " is 0x%02x, expected "
                    "0x%02x\n", i, now[i], model[i]);
            return -EILSEQ;
        }
    }
    return 0;
}

/* ---- bench ---- */

typedef struct BenchArg {
    int id;
    uint64_t ops;
    unsigned read_pct;
    int err;
} BenchArg;

static void *bench_thread(void *opaque)
{
    BenchArg *a = opaque;
    uint64_t blocks = block_node_size(node) / 4096;
    unsigned seed = 0x5eed + (unsigned)a->id * 7919u;
    uint8_t *buf = NULL;
    if (blocks == 0 || posix_memalign((void **)&buf, 4096, 4096) != 0) {
        a->err = -EINVAL;
        return NULL;
    }
    memset(buf, 0xa5, 4096);
    for (uint64_t i = 0; i < a->ops && !a->err; i++) {
        uint64_t off = ((uint64_t)rand_r(&seed) << 16 ^
                        (uint64_t)rand_r(&seed)) % blocks * 4096;
        bool read = (unsigned)rand_r(&seed) % 100 < a->read_pct;
        int ret = read ? block_read(node, off, 4096, buf, 0)
                       : block_write(node, off, 4096, buf, 0);
        if (ret < 0) {
            fprintf(stderr, "bench: %s at %" PRIu64 ": %s\n",
                    read ? "read" : "write", off, strerror(-ret));
            a->err = ret;
        }
    }
    free(buf);
    return NULL;
}

static int cmd_bench(int threads, uint64_t ops, unsigned read_pct)
{
    pthread_t tids[64];
    BenchArg args[64];
    threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < threads; i++) {
        args[i] = (BenchArg){ i, ops, read_pct, 0 };
        pthread_create(&tids[i], NULL, bench_thread, &args[i]);
    }
    int ret = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        if (args[i].err) {
            ret = args[i].err;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("bench: %d threads, %" PRIu64 " requests in %.3f s: %.0f/s\n",
           threads, ops * (uint64_t)threads, secs,
           (double)(ops * (uint64_t)threads) / secs);
    return ret;
}

static int run_command(const char *cmdline)
{
    char *words[8] = { 0 };
    int n = 0;
    CLEANUP_FREE char *copy = strdup(cmdline);
    for (char *save = NULL, *w = strtok_r(copy, " ", &save); w && n < 8;
         w = strtok_r(NULL, " ", &save)) {
        words[n++] = w;
    }
    if (n == 0) {
        return -EINVAL;
    }
    const char *c = words[0];
    uint64_t a = 0, b = 0, p = 0;
    if (n >= 2 && !parse_num(words[1], &a)) {
        return -EINVAL;
    }
    if (n >= 3 && !parse_num(words[2], &b)) {
        return -EINVAL;
    }
    if (n >= 4 && strcmp(c, "readfile") != 0) {
        p = strtoull(words[3], NULL, 0);
    }
    if ((!strcmp(c, "write") || !strcmp(c, "writef")) && n == 4) {
        return cmd_write(a, b, (int)p, !strcmp(c, "writef") ? BLOCK_REQ_FUA : 0);
    }
    if (!strcmp(c, "read") && n == 4) {
        return cmd_read(a, b, (int)p);
    }
    if (!strcmp(c, "readfile") && n == 4) {
        return cmd_readfile(a, b, words[3]);
    }
    if (!strcmp(c, "writec") && n == 4) {
        CLEANUP_FREE uint8_t *buf = malloc(b ? b : 1);
        memset(buf, (int)p, b);
        return block_write_compressed(node, a, b, buf);
    }
    if (!strcmp(c, "zero") && n >= 3) {
        int flags = 0;
        for (int i = 3; i < n; i++) {
            if (!strcmp(words[i], "unmap")) {
                flags |= BLOCK_REQ_MAY_UNMAP;
            } else if (!strcmp(words[i], "nofallback")) {
                flags |= BLOCK_REQ_NO_FALLBACK;
            } else {
                return -EINVAL;
            }
        }
        return block_write_zeroes(node, a, b, flags);
    }
    if (!strcmp(c, "discard") && n == 3) {
        return block_discard(node, a, b);
    }
    if (!strcmp(c, "flush") && n == 1) {
        return block_flush(node);
    }
    if (!strcmp(c, "map") && n == 1) {
        return cmd_map();
    }
    if (!strcmp(c, "stressops") && n == 4) {
        return cmd_stressops((int)a, (int)b, (unsigned)p);
    }
    if (!strcmp(c, "bench") && n == 4) {
        return cmd_bench((int)a, b, (unsigned)p);
    }
    if (!strcmp(c, "stress") && n == 4) {
        return cmd_stress((int)a, (int)b, (unsigned)p);
    }
    fprintf(stderr, "qcow2-io-tool: unknown command '%s'\n", cmdline);
    return -EINVAL;
}

int main(int argc, char **argv)
{
    int flags = BLOCK_O_RDWR;
    const char *fmt = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "rnf:")) != -1) {
        switch (opt) {
        case 'r':
            flags &= ~BLOCK_O_RDWR;
            break;
        case 'n':
            flags |= BLOCK_O_NO_BACKING;
            break;
        case 'f':
            fmt = optarg;
            break;
        default:
            fprintf(stderr, "usage: %s [-r] [-n] [-f FMT] IMAGE 'CMD' ...\n",
                    argv[0]);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: %s [-r] [-n] [-f FMT] IMAGE 'CMD' ...\n",
                argv[0]);
        return 2;
    }
    error_set_progname("qcow2-io-tool");
    Error *err = NULL;
    /* Like qemu-io, discard requests reach the driver (discard=unmap). */
    json_t *opts = json_pack("{s:s, s:s, s:{s:s, s:s}}", "driver",
                             fmt ? fmt : "qcow2", "discard", "unmap", "file",
                             "driver", "file", "filename", argv[optind]);
    char *js = opts ? json_dumps(opts, JSON_COMPACT) : NULL;
    json_decref(opts);
    CLEANUP_FREE char *spec = NULL;
    if (!js || asprintf(&spec, "json:%s", js) < 0) {
        free(js);
        fprintf(stderr, "qcow2-io-tool: out of memory\n");
        return 1;
    }
    free(js);
    node = block_open_image(spec, fmt, flags, &err);
    if (!node) {
        error_report_err(err);
        return 1;
    }
    int status = 0;
    for (int i = optind + 1; i < argc; i++) {
        int ret = run_command(argv[i]);
        if (ret < 0) {
            fprintf(stderr, "qcow2-io-tool: '%s' failed: %s\n", argv[i],
                    strerror(-ret));
            status = 1;
            break;
        }
    }
    block_node_unref(node);
    return status;
}
