/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - offline image tool, a drop-in for qemu-img's create,
 * info, check, map, measure, compare, convert, dd, rebase, commit,
 * resize, amend and snapshot, and update for strata's image parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

static const struct {
    const char *name;
    ImgCommandFn *fn;
} commands[] = {
    { "amend", cmd_amend },
    { "check", cmd_check },
    { "commit", cmd_commit },
    { "compare", cmd_compare },
    { "convert", cmd_convert },
    { "create", cmd_create },
    { "dd", cmd_dd },
    { "info", cmd_info },
    { "map", cmd_map },
    { "measure", cmd_measure },
    { "rebase", cmd_rebase },
    { "resize", cmd_resize },
    { "snapshot", cmd_snapshot },
    { "update", cmd_update },
};

static const char help_text[] =
"usage: strata-img [-h | --help | -V | --version]\n"
"       strata-img COMMAND [OPTIONS] ...\n"
"\n"
"Creates, inspects, checks, copies and changes qcow2 and raw disk images\n"
"offline.  Commands take qemu-img's options, so scripts written for\n"
"qemu-img run unchanged.\n"
"\n"
"Commands:\n"
"  amend [-p] [-q] [-f fmt] [--force] -o options filename\n"
"  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename\n"
"  commit [-q] [-f fmt] [-b base] [-d] [-p] filename\n"
"  compare [-f fmt] [-F fmt] [-p] [-q] [-s] [-U] filename1 filename2\n"
"  convert [-U] [-c] [-p] [-q] [-n] [-f fmt] [-O output_fmt] "
"[-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] "
"[-S sparse_size] "
"[-m num_workers] [-W] [-r rate_limit] [--salvage] filename [filename2 [...]] "
"output_filename\n"
"  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] "
"[-o options] filename [size]\n"
"  dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] "
"[skip=blocks] if=input of=output\n"
"  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename\n"
"  map [-f fmt] [--start-offset=offset] [--max-length=len] "
"[--output=ofmt] [-U] filename\n"
"  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | "
"[--object objectdef] [--image-opts] [-f fmt] [-l snapshot] [-U] "
"filename]\n"
"  rebase [-U] [-q] [-f fmt] [-p] [-u] -b backing_file [-F backing_fmt] "
"filename\n"
"  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] "
"filename [+ | -]size\n"
"  snapshot [--object objectdef] [--image-opts] [-U] [-q] "
"[-l | -a snapshot | -c snapshot | -d snapshot] filename\n"
"  update [-q] [-f fmt] [--output=ofmt] [-U] filename [filename...] "
"[key=value...]\n"
"\n"
"What the words above mean:\n"
"  filename       an image file; also file:NAME, json:{block options}\n"
"                 (QEMU's JSON, single quotes allowed), null-co://,\n"
"                 blkdebug:RULES:IMAGE; with --image-opts, a list of\n"
"                 block options: driver=qcow2,file.filename=NAME\n"
"  fmt            qcow2 or raw; without -f the format is read from the\n"
"                 image, and formats strata cannot read are refused\n"
"  size           bytes, or a number with k, M, G, T, P or E (powers of\n"
"                 1024); a trailing b is allowed and means nothing\n"
"  output_fmt     the format to write (convert -O)\n"
"  options        comma-separated name=value settings of the format;\n"
"                 '-o help' lists them\n"
"  --output       human (the default) or json, for scripts\n"
"  key=value      update: an image parameter strata keeps in the image\n"
"                 (copy-on-read, prefetch, prefetch-rate, prefetch-delay,\n"
"                 l2-cache-size); an empty value removes it; without any,\n"
"                 update shows the parameters\n"
"\n"
"Options shared by several commands:\n"
"  -q             print nothing but errors\n"
"  -p             show a progress line while working\n"
"  --image-opts   the image arguments are block option lists, not names\n"
"  --object type,id=ID,...  create an object (a secret) first\n"
"  -U             read an image that another process may be writing\n"
"                 (takes no lock that would stop that process; read-only)\n"
"  -u             do not open the backing file: create an overlay for a\n"
"                 backing file that is not there yet, or rebase by only\n"
"                 rewriting the name (both files must then hold the same\n"
"                 data)\n"
"  -c             convert: write compressed clusters (qcow2 only)\n"
"  -l snapshot    convert, measure: an internal snapshot of the source\n"
"                 (an id or a name, or snapshot.id=ID,snapshot.name=NAME)\n"
"                 instead of its current state\n"
"  -S bytes       convert: runs of zeroes at least this long (default 4k)\n"
"                 stay unallocated in the output; 0 allocates everything\n"
"  -n             convert: write into an output that already exists\n"
"                 instead of creating it\n"
"  -m n           convert: copy with n threads (default 8)\n"
"  -W             convert: let the threads write in any order\n"
"  -r rate        convert: copy at most this many bytes per second\n"
"  --salvage      convert: sectors that cannot be read become zeroes\n"
"                 and a warning each, instead of ending the copy\n"
"  -r leaks|all   check: repair leaked clusters only, or every error\n"
"                 found (which may also hide earlier damage)\n"
"  -s             compare: differing sizes or allocation count as\n"
"                 differences too\n"
"  -f, -F         compare: the formats of the first and second image\n"
"  --size N       measure: the virtual size of an empty image to size\n"
"                 (instead of a source image)\n"
"  bs, count, skip  dd: the block size (default 512 bytes), how many\n"
"                 blocks of the input to read from its start, how many\n"
"                 to leave out before copying\n"
"  -l             snapshot: list the image's internal snapshots\n"
"  -c name        snapshot: save the image's present state as snapshot\n"
"                 name (the id is the next free number)\n"
"  -a snapshot    snapshot: bring the image back to a snapshot, named\n"
"                 by id or by name; what was written since is dropped\n"
"  -d name        snapshot: delete the snapshot of that name\n"
"  --image-opts   snapshot, measure, dd: filename (dd: input) is a\n"
"                 key=value list of block options\n"
"                 (driver=qcow2,file.filename=...)\n"
"  --object def   snapshot, dd: accepted for qemu-img's command lines; no\n"
"                 format strata-img handles needs an object\n"
"                 measure: secret,id=ID,data=... lets a LUKS header be\n"
"                 sized (encrypt.key-secret=ID)\n"
"\n"
"See strata-img(1).\n"
"\n";

void img_help(void)
{
    printf("strata-img version %s\n", STRATA_VERSION);
    fputs(help_text, stdout);
    /* The drivers, as qemu-img lists them: scripts look for a name here
     * to learn whether a driver is there. */
    const char *names[64];
    size_t n = MIN(block_driver_names(names, ARRAY_SIZE(names)),
                   ARRAY_SIZE(names));
    fputs("Supported formats:", stdout);
    for (size_t i = 0; i < n; i++) {
        printf(" %s", names[i]);
    }
    putchar('\n');
    exit(0);
}

static void print_version(void)
{
    printf("strata-img version %s\n"
           "Compatible with the qemu-img 7.2 command line for the commands "
           "it implements.\n", STRATA_VERSION);
}

int main(int argc, char **argv)
{
    const char *cmd;

    /* Messages name the program as it was called, as qemu-img does, so a
     * qemu-img link to strata-img prints byte for byte what scripts
     * expect. */
    error_set_progname(argv[0]);
    block_set_quiet_close(true);
    if (argc < 2) {
        img_usage_error("Not enough arguments");
    }
    cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
        img_help();
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        print_version();
        return 0;
    }
    if (cmd[0] == '-') {
        img_usage_error("unrecognized option '%s'", cmd);
    }
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        if (strcmp(cmd, commands[i].name) == 0) {
            /* Subcommands parse argv[1..] so getopt sees the command
             * name as argv[0]. */
            return commands[i].fn(argc - 1, argv + 1);
        }
    }
    img_usage_error("Command not found: %s", cmd);
}
