/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests: Prometheus text writer, the /metrics HTTP server (fetched
 * with a hand-written HTTP GET) and promtool's verdict on what we serve. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/accounting.h"
#include "metrics/metrics-block.h"
#include "metrics/metrics.h"

static void test_format_value(void **state)
{
    char b[32];
    metrics_format_value(b, sizeof(b), 0);
    assert_string_equal(b, "0");
    metrics_format_value(b, sizeof(b), 123456789012.0);
    assert_string_equal(b, "123456789012");
    metrics_format_value(b, sizeof(b), 0.1);
    assert_string_equal(b, "0.1");
    metrics_format_value(b, sizeof(b), 1e-5);
    assert_string_equal(b, "1e-05");
    metrics_format_value(b, sizeof(b), 9007199254740993.0);
    assert_string_equal(b, "9007199254740992");
    metrics_format_value(b, sizeof(b), INFINITY);
    assert_string_equal(b, "+Inf");
    metrics_format_value(b, sizeof(b), -INFINITY);
    assert_string_equal(b, "-Inf");
    metrics_format_value(b, sizeof(b), NAN);
    assert_string_equal(b, "NaN");
}

static void test_writer_groups_and_escapes(void **state)
{
    MetricsWriter *w = metrics_writer_new();
    MetricLabel a[] = { { "export", "e\"1\\\n" } };
    MetricLabel b[] = { { "export", "e2" } };
    metrics_counter(w, "x_requests_total", "Requests.\nSecond \\ line", a, 1, 3);
    metrics_gauge(w, "x_in_flight", "In flight.", a, 1, 1);
    metrics_counter(w, "x_requests_total", "ignored", b, 1, 4);
    metrics_gauge(w, "x_in_flight", "In flight.", b, 1, 0);
    metrics_gauge(w, "x_plain", "No labels.", NULL, 0, 2.5);
    /* rejected: bad names, missing _total, type clash, reserved label */
    metrics_counter(w, "x_requests", "bad", NULL, 0, 1);
    metrics_gauge(w, "0bad", "bad", NULL, 0, 1);
    metrics_gauge(w, "x_requests_total", "clash", NULL, 0, 1);
    MetricLabel le[] = { { "le", "1" } };
    metrics_gauge(w, "x_le", "bad", le, 1, 1);
    MetricLabel dash[] = { { "a-b", "1" } };
    metrics_gauge(w, "x_dash", "bad", dash, 1, 1);

    size_t len;
    char *text = metrics_writer_finish(w, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_string_equal(text,
        "# HELP x_requests_total Requests.\\nSecond \\\\ line\n"
        "# TYPE x_requests_total counter\n"
        "x_requests_total{export=\"e\\\"1\\\\\\n\"} 3\n"
        "x_requests_total{export=\"e2\"} 4\n"
        "# HELP x_in_flight In flight.\n"
        "# TYPE x_in_flight gauge\n"
        "x_in_flight{export=\"e\\\"1\\\\\\n\"} 1\n"
        "x_in_flight{export=\"e2\"} 0\n"
        "# HELP x_plain No labels.\n"
        "# TYPE x_plain gauge\n"
        "x_plain 2.5\n");
    free(text);
}

static void test_writer_histogram(void **state)
{
    MetricsWriter *w = metrics_writer_new();
    MetricLabel l[] = { { "op", "read" } };
    const double bounds[] = { 0.001, 0.01 };
    const uint64_t counts[] = { 2, 0, 3 };
    metrics_histogram(w, "x_latency_seconds", "Latency.", l, 1, bounds, 2,
                      counts, 1.5);
    char *text = metrics_writer_finish(w, NULL);
    assert_string_equal(text,
        "# HELP x_latency_seconds Latency.\n"
        "# TYPE x_latency_seconds histogram\n"
        "x_latency_seconds_bucket{op=\"read\",le=\"0.001\"} 2\n"
        "x_latency_seconds_bucket{op=\"read\",le=\"0.01\"} 2\n"
        "x_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 5\n"
        "x_latency_seconds_sum{op=\"read\"} 1.5\n"
        "x_latency_seconds_count{op=\"read\"} 5\n");
    free(text);
}

/* ---- a fake collector and a real BlockAcct ---- */

static int64_t fake_now = 1000000000;

static int64_t fake_clock(void *opaque)
{
    return fake_now;
}

static void fake_collect(MetricsWriter *w, void *opaque)
{
    const char *name = opaque;
    MetricLabel l[] = { { "export", name } };
    metrics_counter(w, "fake_requests_total", "Fake requests.", l, 1, 42);
}

typedef struct AcctCollector {
    BlockAcct *acct;
} AcctCollector;

static void acct_collect(MetricsWriter *w, void *opaque)
{
    AcctCollector *c = opaque;
    MetricLabel l[] = { { "export", "exp0" }, { "node", "fmt0" } };
    metrics_write_block_acct(w, "strata_export", l, 2, c->acct);
    MetricLabel n[] = { { "node", "fmt0" } };
    metrics_write_block_acct(w, "strata_node", n, 1, c->acct);
    MetricsNodeSizes sz = { .capacity = 1 << 20, .allocation = 65536,
                            .physical = 200704, .write_threshold = 1 << 19 };
    metrics_write_node_sizes(w, n, 1, &sz);
}

static BlockAcct *busy_acct(void)
{
    BlockAcctOptions o;
    block_acct_options_init(&o);
    o.clock = fake_clock;
    BlockAcct *acct = block_acct_new(&o, NULL);
    BlockAcctCookie c;
    block_acct_start(acct, &c, BLOCK_ACCT_READ, 4096);
    fake_now += 250000;
    block_acct_done(acct, &c);
    block_acct_start(acct, &c, BLOCK_ACCT_WRITE, 8192);
    fake_now += 3000000;
    block_acct_failed(acct, &c);
    block_acct_invalid(acct, BLOCK_ACCT_UNMAP);
    return acct;
}

/* ---- HTTP by hand ---- */

static int connect_unix(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    return fd;
}

static int connect_tcp(int port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* Sends "METHOD path HTTP/1.0" and returns the whole response (status
 * code in *status, headers in *headers, body returned; caller frees). */
static char *http(int fd, const char *method, const char *path, int *status,
                  char **headers)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: test\r\n\r\n",
                     method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1024 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        assert_true(r >= 0);
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", status), 1);
    char *sep = strstr(buf, "\r\n\r\n");
    assert_non_null(sep);
    *sep = '\0';
    *headers = strdup(buf);
    char *body = strdup(sep + 4);
    free(buf);
    return body;
}

/* Runs promtool check metrics on text; returns its output ("" if clean),
 * or NULL when promtool is not installed. */
static char *promtool_check(const char *text, int *rc)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        return NULL;
    }
    char in[] = "/tmp/strata-acct-prom-XXXXXX";
    int fd = mkstemp(in);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", in);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *out = calloc(1, 65536);
    size_t n = fread(out, 1, 65535, p);
    out[n] = '\0';
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    unlink(in);
    return out;
}

static void test_server_unix(void **state)
{
    char dir[] = "/tmp/strata-acct-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/metrics.sock", dir);

    json_t *addr = json_pack("{s:s, s:s}", "type", "unix", "path", path);
    Error *err = NULL;
    assert_true(metrics_start(addr, &err));
    assert_int_equal(metrics_port(), -1);
    /* only one server per process */
    assert_false(metrics_start(addr, &err));
    assert_string_equal(error_get_pretty(err),
                        "the metrics server is already running");
    error_free(err);
    err = NULL;

    assert_true(metrics_register(fake_collect, "alpha"));
    assert_true(metrics_register(fake_collect, "beta"));

    int status;
    char *hdr;
    char *body = http(connect_unix(path), "GET", "/metrics", &status, &hdr);
    assert_int_equal(status, 200);
    assert_non_null(strstr(hdr, "text/plain; version=0.0.4"));
    assert_string_equal(body,
        "# HELP fake_requests_total Fake requests.\n"
        "# TYPE fake_requests_total counter\n"
        "fake_requests_total{export=\"alpha\"} 42\n"
        "fake_requests_total{export=\"beta\"} 42\n");
    free(body);
    free(hdr);

    body = http(connect_unix(path), "GET", "/", &status, &hdr);
    assert_int_equal(status, 404);
    free(body);
    free(hdr);
    body = http(connect_unix(path), "GET", "/metrics/x", &status, &hdr);
    assert_int_equal(status, 404);
    free(body);
    free(hdr);
    body = http(connect_unix(path), "DELETE", "/metrics", &status, &hdr);
    assert_int_equal(status, 405);
    free(body);
    free(hdr);

    metrics_unregister(fake_collect, "alpha");
    body = http(connect_unix(path), "GET", "/metrics", &status, &hdr);
    assert_int_equal(status, 200);
    assert_null(strstr(body, "alpha"));
    assert_non_null(strstr(body, "beta"));
    free(body);
    free(hdr);
    metrics_unregister(fake_collect, "beta");

    metrics_stop();
    assert_int_equal(access(path, F_OK), -1);   /* socket removed */
    metrics_stop();                             /* harmless */
    /* and it can start again */
    assert_true(metrics_start(addr, NULL));
    metrics_stop();
    json_decref(addr);
    rmdir(dir);
}

static void test_server_inet_and_promtool(void **state)
{
    json_t *addr = json_pack("{s:s, s:s, s:i}", "type", "inet", "host",
                             "127.0.0.1", "port", 0);
    Error *err = NULL;
    assert_true(metrics_start(addr, &err));
    json_decref(addr);
    int port = metrics_port();
    assert_true(port > 0);

    AcctCollector c = { busy_acct() };
    assert_true(metrics_register(acct_collect, &c));
    int status;
    char *hdr;
    char *body = http(connect_tcp(port), "GET", "/metrics", &status, &hdr);
    assert_int_equal(status, 200);
    metrics_unregister(acct_collect, &c);
    metrics_stop();

    /* A few exact samples (units: seconds and bytes). */
    assert_non_null(strstr(body,
        "strata_export_bytes_total{export=\"exp0\",node=\"fmt0\",op=\"read\"} 4096\n"));
    assert_non_null(strstr(body,
        "strata_export_request_time_seconds_total{export=\"exp0\",node=\"fmt0\",op=\"read\"} 0.00025\n"));
    assert_non_null(strstr(body,
        "strata_export_failed_requests_total{export=\"exp0\",node=\"fmt0\",op=\"write\"} 1\n"));
    assert_non_null(strstr(body,
        "strata_export_invalid_requests_total{export=\"exp0\",node=\"fmt0\",op=\"unmap\"} 1\n"));
    assert_non_null(strstr(body,
        "strata_export_latency_seconds_bucket{export=\"exp0\",node=\"fmt0\",op=\"read\",le=\"0.00025\"} 1\n"));
    assert_non_null(strstr(body,
        "strata_export_latency_seconds_bucket{export=\"exp0\",node=\"fmt0\",op=\"read\",le=\"0.0001\"} 0\n"));
    assert_non_null(strstr(body,
        "strata_export_window_latency_percentile_seconds{export=\"exp0\",node=\"fmt0\",op=\"read\",interval=\"60\",percentile=\"99.9\"} 0.00025\n"));
    assert_non_null(strstr(body,
        "strata_export_idle_seconds{export=\"exp0\",node=\"fmt0\"} 0\n"));
    assert_non_null(strstr(body, "strata_node_capacity_bytes{node=\"fmt0\"} 1048576\n"));
    assert_non_null(strstr(body,
        "strata_node_requests_total{node=\"fmt0\",op=\"flush\"} 0\n"));
    /* HELP and TYPE once per family */
    const char *first = strstr(body, "# TYPE strata_export_requests_total counter\n");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE strata_export_requests_total"));

    int rc = 0;
    char *out = promtool_check(body, &rc);
    if (out) {
        if (rc != 0 || *out) {
            fprintf(stderr, "promtool said (rc %d):\n%s\n", rc, out);
        }
        assert_int_equal(rc, 0);
        assert_string_equal(out, "");
        free(out);
    }
    free(body);
    free(hdr);
    block_acct_free(c.acct);
}

static void test_start_errors(void **state)
{
    Error *err = NULL;
    json_t *a = json_pack("{s:s}", "type", "vsock");
    assert_false(metrics_start(a, &err));
    assert_string_equal(error_get_pretty(err),
                        "Socket address type 'vsock' is not supported by "
                        "strata (use 'unix' or 'inet')");
    error_free(err);
    err = NULL;
    json_decref(a);

    a = json_pack("{s:s}", "type", "unix");
    assert_false(metrics_start(a, &err));
    assert_string_equal(error_get_pretty(err), "Parameter 'path' is missing");
    error_free(err);
    err = NULL;
    json_decref(a);

    a = json_pack("{s:s, s:s, s:s}", "type", "unix", "path", "/x", "port", "1");
    assert_false(metrics_start(a, &err));
    assert_string_equal(error_get_pretty(err), "Parameter 'port' is unexpected");
    error_free(err);
    err = NULL;
    json_decref(a);

    a = json_pack("{s:s, s:s}", "type", "unix", "path",
                  "/nonexistent-dir/metrics.sock");
    assert_false(metrics_start(a, &err));
    assert_non_null(strstr(error_get_pretty(err),
                           "Failed to bind socket to /nonexistent-dir/metrics.sock"));
    error_free(err);
    json_decref(a);
    assert_int_equal(metrics_port(), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_value),
        cmocka_unit_test(test_writer_groups_and_escapes),
        cmocka_unit_test(test_writer_histogram),
        cmocka_unit_test(test_server_unix),
        cmocka_unit_test(test_server_inet_and_promtool),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
