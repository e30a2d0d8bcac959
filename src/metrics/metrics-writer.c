/* SPDX-License-Identifier: BSD-3-Clause */
/* strata - Prometheus text exposition format 0.0.4 writer.
 *
 * Samples are kept per family and printed family by family at the end,
 * because the format wants each family's lines together under one HELP
 * and one TYPE, while collectors (one per export, say) each write a
 * sample of many families.
 */
#include "metrics/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

typedef enum FamilyType { FAMILY_COUNTER, FAMILY_GAUGE, FAMILY_HISTOGRAM } FamilyType;

static const char *const family_type_names[] = {
    [FAMILY_COUNTER] = "counter",
    [FAMILY_GAUGE] = "gauge",
    [FAMILY_HISTOGRAM] = "histogram",
};

typedef struct Buf {
    char *data;
    size_t len, cap;
    bool oom;
} Buf;

typedef struct Family {
    char *name;
    char *help;
    FamilyType type;
    Buf samples;
} Family;

struct MetricsWriter {
    Family *fam;
    size_t n, cap;
    bool oom;
};

static void buf_add(Buf *b, const char *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (!d) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_str(Buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static void buf_escaped(Buf *b, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\') {
            rep = "\\\\";
        } else if (*s == '\n') {
            rep = "\\n";
        } else if (quote && *s == '"') {
            rep = "\\\"";
        }
        if (rep) {
            buf_add(b, run, (size_t)(s - run));
            buf_str(b, rep);
            run = s + 1;
        }
    }
    buf_add(b, run, (size_t)(s - run));
}

void metrics_format_value(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    } else {
        /* %.15g is exact for every integer below 2^53 and reads better;
         * fall back to %.17g when it would not read back the same. */
        snprintf(buf, size, "%.15g", v);
        if (strtod(buf, NULL) != v) {
            snprintf(buf, size, "%.17g", v);
        }
    }
}

static bool name_valid(const char *s, bool colon_ok)
{
    if (!s || !*s) {
        return false;
    }
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon_ok && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool labels_valid(const char *metric, const MetricLabel *labels,
                         size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *ln = labels[i].name;
        if (!name_valid(ln, false) || strncmp(ln, "__", 2) == 0 ||
            strcmp(ln, "le") == 0 || !labels[i].value) {
            log_warn("metrics: %s: invalid label name '%s', sample dropped",
                     metric, ln ? ln : "(null)");
            return false;
        }
    }
    return true;
}

MetricsWriter *metrics_writer_new(void)
{
    return calloc(1, sizeof(MetricsWriter));
}

void metrics_writer_free(MetricsWriter *w)
{
    if (!w) {
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        free(w->fam[i].name);
        free(w->fam[i].help);
        free(w->fam[i].samples.data);
    }
    free(w->fam);
    free(w);
}

/* The family called name, created on first use; NULL (sample dropped)
 * when the name is invalid or already used with another type. */
static Family *family_get(MetricsWriter *w, const char *name, const char *help,
                          FamilyType type, const MetricLabel *labels,
                          size_t nlabels)
{
    if (!name_valid(name, true)) {
        log_warn("metrics: invalid metric name '%s', sample dropped",
                 name ? name : "(null)");
        return NULL;
    }
    size_t len = strlen(name);
    if (type == FAMILY_COUNTER &&
        (len < 6 || strcmp(name + len - 6, "_total") != 0)) {
        log_warn("metrics: counter '%s' does not end in _total, sample dropped",
                 name);
        return NULL;
    }
    if (!labels_valid(name, labels, nlabels)) {
        return NULL;
    }
    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->fam[i].name, name) == 0) {
            if (w->fam[i].type != type) {
                log_warn("metrics: '%s' written as %s and %s, sample dropped",
                         name, family_type_names[w->fam[i].type],
                         family_type_names[type]);
                return NULL;
            }
            return &w->fam[i];
        }
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        Family *f = realloc(w->fam, cap * sizeof(*f));
        if (!f) {
            w->oom = true;
            return NULL;
        }
        w->fam = f;
        w->cap = cap;
    }
    Family *f = &w->fam[w->n];
    *f = (Family){ .name = strdup(name), .help = strdup(help ? help : ""),
                   .type = type };
    if (!f->name || !f->help) {
        free(f->name);
        free(f->help);
        w->oom = true;
        return NULL;
    }
    w->n++;
    return f;
}

/* name{l1="v1",...,extra="x"} value\n */
static void write_sample(Buf *b, const char *name, const char *suffix,
                         const MetricLabel *labels, size_t nlabels,
                         const char *extra_name, const char *extra_value,
                         const char *value)
{
    buf_str(b, name);
    buf_str(b, suffix);
    if (nlabels || extra_name) {
        buf_str(b, "{");
        for (size_t i = 0; i < nlabels; i++) {
            buf_str(b, i ? "," : "");
            buf_str(b, labels[i].name);
            buf_str(b, "=\"");
            buf_escaped(b, labels[i].value, true);
            buf_str(b, "\"");
        }
        if (extra_name) {
            buf_str(b, nlabels ? "," : "");
            buf_str(b, extra_name);
            buf_str(b, "=\"");
            buf_escaped(b, extra_value, true);
            buf_str(b, "\"");
        }
        buf_str(b, "}");
    }
    buf_str(b, " ");
    buf_str(b, value);
    buf_str(b, "\n");
}

static void write_simple(MetricsWriter *w, FamilyType type, const char *name,
                         const char *help, const MetricLabel *labels,
                         size_t nlabels, double value)
{
    Family *f = family_get(w, name, help, type, labels, nlabels);
    if (!f) {
        return;
    }
    char v[32];
    metrics_format_value(v, sizeof(v), value);
    write_sample(&f->samples, name, "", labels, nlabels, NULL, NULL, v);
}

void metrics_counter(MetricsWriter *w, const char *name, const char *help,
                     const MetricLabel *labels, size_t nlabels, double value)
{
    write_simple(w, FAMILY_COUNTER, name, help, labels, nlabels, value);
}

void metrics_gauge(MetricsWriter *w, const char *name, const char *help,
                   const MetricLabel *labels, size_t nlabels, double value)
{
    write_simple(w, FAMILY_GAUGE, name, help, labels, nlabels, value);
}

void metrics_histogram(MetricsWriter *w, const char *name, const char *help,
                       const MetricLabel *labels, size_t nlabels,
                       const double *bounds, size_t nbounds,
                       const uint64_t *counts, double sum)
{
    Family *f = family_get(w, name, help, FAMILY_HISTOGRAM, labels, nlabels);
    if (!f) {
        return;
    }
    char le[32], v[32];
    uint64_t cum = 0;
    for (size_t i = 0; i <= nbounds; i++) {
        cum += counts[i];
        if (i < nbounds) {
            metrics_format_value(le, sizeof(le), bounds[i]);
        } else {
            snprintf(le, sizeof(le), "+Inf");
        }
        snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
        write_sample(&f->samples, name, "_bucket", labels, nlabels, "le", le, v);
    }
    metrics_format_value(v, sizeof(v), sum);
    write_sample(&f->samples, name, "_sum", labels, nlabels, NULL, NULL, v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)cum);
    write_sample(&f->samples, name, "_count", labels, nlabels, NULL, NULL, v);
}

char *metrics_writer_finish(MetricsWriter *w, size_t *len)
{
    Buf out = { 0 };
    bool oom = w->oom;

    buf_add(&out, "", 0);
    for (size_t i = 0; i < w->n; i++) {
        Family *f = &w->fam[i];
        oom |= f->samples.oom;
        buf_str(&out, "# HELP ");
        buf_str(&out, f->name);
        if (*f->help) {
            buf_str(&out, " ");
            buf_escaped(&out, f->help, false);
        }
        buf_str(&out, "\n# TYPE ");
        buf_str(&out, f->name);
        buf_str(&out, " ");
        buf_str(&out, family_type_names[f->type]);
        buf_str(&out, "\n");
        if (f->samples.data) {
            buf_add(&out, f->samples.data, f->samples.len);
        }
    }
    metrics_writer_free(w);
    if (oom || out.oom) {
        /* A partial scrape would look like vanished series; say nothing. */
        free(out.data);
        return NULL;
    }
    if (len) {
        *len = out.len;
    }
    return out.data;
}
