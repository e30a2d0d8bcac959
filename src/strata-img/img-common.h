/* SPDX-License-Identifier: BSD-3-Clause */
/* strata-img - what the subcommands share: argument errors, opening
 * images the way qemu-img does, output formats, progress, JSON output.
 */
#ifndef STRATA_IMG_COMMON_H
#define STRATA_IMG_COMMON_H

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

/* One subcommand: returns the process exit code. */
typedef int ImgCommandFn(int argc, char **argv);

int cmd_create(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_rebase(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_update(int argc, char **argv);
int cmd_amend(int argc, char **argv);
int cmd_dd(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_measure(int argc, char **argv);

/* Prints the tool's full help to stdout and exits 0 (qemu-img prints the
 * same help for `-h` given to any command). */
void img_help(void) __attribute__((noreturn));

/* Prints "strata-img: <msg>" and "Try 'strata-img --help' ..." to stderr
 * and exits 1: the answer to every bad command line. */
void img_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* Handles getopt's '?' and ':' results (optstring must begin with ':'):
 * unknown option or missing argument; never returns. */
void img_bad_option(int c, char **argv) __attribute__((noreturn));

typedef enum ImgOutputFormat { OFORMAT_HUMAN, OFORMAT_JSON } ImgOutputFormat;

/* Parses --output's argument; prints qemu-img's message and returns false
 * on anything but "human" or "json". */
bool img_parse_output(const char *arg, ImgOutputFormat *out);

/* Opens filename as qemu-img does (fmt NULL = probe).  On failure prints
 * "strata-img: Could not open 'filename': <reason>" and returns NULL.
 * When the format was probed as raw and the image is opened read-write,
 * prints qemu-img's warning about probing raw images unless quiet. */
BlockNode *img_open(const char *filename, const char *fmt, int flags,
                    bool quiet);
/* That warning about a read-write image probed as raw. */
void img_warn_probed_raw(const char *filename);

/* img_open, or with image_opts (--image-opts) filename is a key=value
 * list of block options ("driver=qcow2,file.filename=a.qcow2"). */
BlockNode *img_open_maybe_opts(const char *filename, const char *fmt,
                               int flags, bool image_opts);
/* --image-opts (img-image-opts.c): while on, img_open takes its
 * filename as a qemu-img option string ("driver=qcow2,file.filename=x")
 * and refuses a format ("--image-opts and --format are mutually
 * exclusive"). */
void img_set_image_opts(bool on);
bool img_image_opts(void);
/* The option string as a flat object of strings, in QEMU's syntax. */
json_t *img_parse_image_opts(const char *str);
BlockNode *img_open_image_opts(const char *optstr, const char *fmt,
                               int flags);
/* getopt value of --image-opts in every command that has it. */
#define IMG_OPT_IMAGE_OPTS 0x4000
/* --object ARG: creates the object or prints why not and exits 1. */
void img_object_add(const char *arg);
#define IMG_OPT_OBJECT 0x4001

/* qemu-img's path_combine(): a relative backing file name is relative to
 * the directory of the image that names it.  Returns a malloc'd string,
 * or NULL when base_path is a json: filename (cannot be determined). */
char *img_path_combine(const char *base_path, const char *filename);

/* Prints a JSON value as qemu-img does (4-space indent, then "\n"). */
void img_print_json(json_t *value);

/* printf that does nothing when quiet (qemu-img -q). */
void img_qprintf(bool quiet, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a size argument for create/resize/convert -S; prints qemu-img's
 * "Invalid image size specified..." on failure.  Returns false then. */
bool img_parse_image_size(const char *str, uint64_t *out);

/* qemu-img's cvtnum_full(): a size with an optional suffix, between min
 * and max; prints qemu-img's two messages ("Invalid NAME specified. You
 * may use k, M, G, ..." or "... Must be between MIN and MAX.") and
 * returns false otherwise. */
bool img_cvtnum(const char *name, const char *value, int64_t min, int64_t max,
                int64_t *out);
/* convert -l: makes src[0] read the snapshot param names ("name or id",
 * or "snapshot.id=ID,snapshot.name=NAME"), with qemu-img's checks and
 * messages (cmd-snapshot.c).  False after printing an error. */
bool img_load_snapshot(BlockNode **src, int nsrc, const char *param);

/* One line of qemu-img's snapshot table (no newline); NULL prints the
 * column titles (cmd-snapshot.c). */
void img_dump_snapshot(const BlockSnapshotInfo *sn);

/* ---- progress (qemu-img -p): "    (42.00/100%)\r" ---- */
typedef struct ImgProgress ImgProgress;
/* enabled false gives a progress object that prints nothing.  Prints
 * the initial 0.00 line. */
ImgProgress *img_progress_new(bool enabled, double min_step);
/* Sets the done fraction to done/total (thread-safe). */
void img_progress_update(ImgProgress *p, uint64_t done, uint64_t total);
/* Adds done bytes of total (thread-safe). */
void img_progress_add(ImgProgress *p, uint64_t done, uint64_t total);
/* Prints the final newline and frees p.  NULL is fine. */
void img_progress_end(ImgProgress *p);
/* Whether p prints anything (work done only for the meter can be
 * skipped otherwise). */
bool img_progress_enabled(const ImgProgress *p);

/* ---- create options (img-options.c) ---- */
/* Parses -o strings (possibly given several times, joined with ',') into
 * a JSON object of option name -> string.  Understands "a=b,c=d" with
 * ",," escapes.  "help" / "?" set *help.  On error prints and returns
 * NULL. */
json_t *img_parse_create_opts(const char *optstr, bool *help,
                              const char *filename);
/* Fails ("Invalid parameter 'x'", prefixed with "filename: " unless
 * filename is NULL) if opts names an option the format (and its
 * protocol, file) does not know. */
bool img_check_create_opts(const char *fmt, json_t *opts, const char *filename);
/* "Supported <fmt> options:" list, as `qemu-img create -o help`. */
void img_print_create_help(const char *fmt, bool with_protocol);
/* Prints "  name=<type> - help" lines of list, then of extra's options
 * not in list, sorted by name, as qemu-img's -o help. */
void img_print_opts_sorted(const BlockCreateOpt *list,
                           const BlockCreateOpt *extra);
/* Converts the value of d's option in opts as qemu-img parses it (sizes
 * and numbers to integers; booleans checked), printing qemu-img's
 * message (prefixed with "filename: " when filename is given) and
 * returning false when it does not parse. */
bool img_normalize_opt(const BlockCreateOpt *d, json_t *opts,
                       const char *filename);
/* The "Formatting 'f', fmt=... " line. */
void img_print_formatting(const char *filename, const char *fmt,
                          json_t *opts);
/* Converts size-typed options to JSON numbers (as block_create wants)
 * and validates numbers; prints and returns false on a bad value. */
bool img_normalize_create_opts(const char *fmt, json_t *opts,
                               const char *filename);
/* The description of option name for fmt (its own table, then its
 * protocol's), or NULL when neither knows it. */
const BlockCreateOpt *img_lookup_create_opt(const char *fmt,
                                            const char *name);
/* True if fmt is a format strata can create (has a create callback). */
bool img_format_known(const char *fmt);

#endif
