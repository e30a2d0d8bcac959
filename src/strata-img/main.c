/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - offline image tool, a drop-in for qemu-img's create,
 * info, check, map, compare, convert, rebase, commit and resize. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata-img/img-common.h"
#include "util/cleanup.h"
#include "util/error.h"

static const struct {
    const char *name;
    ImgCommandFn *fn;
} commands[] = {
    { "check", cmd_check },
    { "commit", cmd_commit },
    { "compare", cmd_compare },
    { "convert", cmd_convert },
    { "create", cmd_create },
    { "info", cmd_info },
    { "map", cmd_map },
    { "rebase", cmd_rebase },
    { "resize", cmd_resize },
};

static const char help_text[] =
"usage: strata-img [standard options] command [command options]\n"
"strata disk image utility (compatible with qemu-img)\n"
"\n"
"    '-h', '--help'       display this help and exit\n"
"    '-V', '--version'    output version information and exit\n"
"\n"
"Command syntax:\n"
"  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename\n"
"  commit [-q] [-f fmt] [-b base] [-d] [-p] filename\n"
"  compare [-f fmt] [-F fmt] [-p] [-q] [-s] [-U] filename1 filename2\n"
"  convert [-U] [-c] [-p] [-q] [-n] [-f fmt] [-O output_fmt] "
"[-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] "
"[-m num_workers] [-W] [-r rate_limit] filename [filename2 [...]] output_filename\n"
"  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] "
"[-o options] filename [size]\n"
"  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename\n"
"  map [-f fmt] [--start-offset=offset] [--max-length=len] "
"[--output=ofmt] [-U] filename\n"
"  rebase [-U] [-q] [-f fmt] [-p] [-u] -b backing_file [-F backing_fmt] "
"filename\n"
"  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] "
"filename [+ | -]size\n"
"\n"
"Command parameters:\n"
"  'filename' is a disk image filename\n"
"  'fmt' is the disk image format. It is guessed automatically in most "
"cases\n"
"  'size' is the disk image size in bytes. Optional suffixes\n"
"    'k' or 'K' (kilobyte, 1024), 'M' (megabyte, 1024k), 'G' (gigabyte, "
"1024M),\n"
"    'T' (terabyte, 1024G), 'P' (petabyte, 1024T) and 'E' (exabyte, 1024P)"
"  are\n"
"    supported. 'b' is ignored.\n"
"  'output_filename' is the destination disk image filename\n"
"  'output_fmt' is the destination format\n"
"  'options' is a comma separated list of format specific options in a\n"
"    name=value format. Use -o help for an overview of the options "
"supported by\n"
"    the used format\n"
"  '-c' indicates that target image must be compressed (qcow format only)\n"
"  '-u' allows unsafe backing chains. For rebasing, it is assumed that old "
"and\n"
"       new backing file match exactly. The image doesn't need a working\n"
"       backing file before rebasing in this case (useful for renaming the\n"
"       backing file). For image creation, allow creating without "
"attempting\n"
"       to open the backing file.\n"
"  '-h' with or without a command shows this help and lists the supported "
"formats\n"
"  '-p' show progress of command (only certain commands)\n"
"  '-q' use Quiet mode - do not print any output (except errors)\n"
"  '-S' indicates the consecutive number of bytes (defaults to 4k) that "
"must\n"
"       contain only zeros for strata-img to create a sparse image during\n"
"       conversion. If the number of bytes is 0, the source will not be "
"scanned for\n"
"       unallocated or zero sectors, and the destination image will always "
"be\n"
"       fully allocated\n"
"  '--output' takes the format in which the output must be done (human or "
"json)\n"
"  '-n' skips the target volume creation (useful if the volume is created\n"
"       prior to running strata-img)\n"
"  '-U' opens images without taking the locks that exclude writers "
"(read-only)\n"
"\n"
"Parameters to check subcommand:\n"
"  '-r' tries to repair any inconsistencies that are found during the "
"check.\n"
"       '-r leaks' repairs only cluster leaks, whereas '-r all' fixes all\n"
"       kinds of errors, with a higher risk of choosing the wrong fix or\n"
"       hiding corruption that has already occurred.\n"
"\n"
"Parameters to convert subcommand:\n"
"  '-m' specifies how many worker threads copy in parallel during the "
"convert\n"
"       process (defaults to 8)\n"
"  '-W' allow to write to the target out of order rather than sequential\n"
"\n"
"Parameters to compare subcommand:\n"
"  '-f' first image format\n"
"  '-F' second image format\n"
"  '-s' run in Strict mode - fail on different image size or sector "
"allocation\n"
"\n"
"Supported formats: file qcow2 raw\n";

void img_help(void)
{
    printf("strata-img version %s\n", STRATA_VERSION);
    fputs(help_text, stdout);
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

    error_set_progname("strata-img");
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
