/* strata - QMP wire formatting of JSON values. */
#include "qmp/qmp-internal.h"

#include <stdlib.h>
#include <string.h>

char *qmp_format_json(json_t *v, bool pretty, size_t *len)
{
    /* Without JSON_COMPACT and with no indentation jansson writes ", "
     * and ": " on one line, which is exactly QEMU's layout. */
    size_t flags = JSON_ENCODE_ANY | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII
                   | JSON_REAL_PRECISION(17)
                   | (pretty ? JSON_INDENT(4) : JSON_INDENT(0));
    char *s = json_dumps(v, flags);
    if (!s) {
        return NULL;
    }
    size_t n = strlen(s);
    /* QEMU escapes with upper-case hex digits; jansson with lower. */
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') {
            in_string = !in_string;
        } else if (in_string && s[i] == '\\') {
            if (s[i + 1] == 'u') {
                for (size_t k = i + 2; k < i + 6 && k < n; k++) {
                    if (s[k] >= 'a' && s[k] <= 'f') {
                        s[k] = (char)(s[k] - 'a' + 'A');
                    }
                }
                i += 5;
            } else {
                i++;
            }
        }
    }
    char *line = realloc(s, n + 3);
    if (!line) {
        free(s);
        return NULL;
    }
    memcpy(line + n, "\r\n", 3);
    *len = n + 2;
    return line;
}
