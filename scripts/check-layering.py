#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Fails when a source file includes a header of a part it may not use.

The parts and their allowed arrows (docs/architecture.md):
    util <- crypto <- block <- {nbd, jobs} <- qmp <- stratad;
    metrics <- block;
    strata-img <- block;  strata-ctl, strata-thinp <- util + qmp-client.
block/block_int.h, block/block_core.h and block/drivers/ are private to
src/block/.  Run by the build (a forbidden include fails it) with the
source root as argument, and writes a stamp file when all is well.
"""
import os
import re
import sys

ALLOWED = {
    'util': {'util'},
    'crypto': {'util', 'crypto'},
    'block': {'util', 'crypto', 'block'},
    'nbd': {'util', 'crypto', 'block', 'nbd'},
    'jobs': {'util', 'block', 'jobs'},
    'metrics': {'util', 'block', 'metrics'},
    'qmp': {'util', 'crypto', 'block', 'nbd', 'jobs', 'qmp', 'metrics'},
    'stratad': {'util', 'crypto', 'block', 'nbd', 'jobs', 'qmp', 'metrics',
                'stratad'},
    'strata-img': {'util', 'block', 'strata-img'},
    'strata-ctl': {'util', 'strata-ctl'},
    'strata-thinp': {'util', 'strata-thinp'},
}
# The QMP client is its own small library inside src/qmp/: it and the
# programs that use it see only util and its own header.
QMP_CLIENT_FILES = {'qmp/qmp-client.c', 'qmp/qmp-client.h'}
QMP_CLIENT_HEADER = 'qmp/qmp-client.h'
PRIVATE_BLOCK = ('block/block_int.h', 'block/block_core.h', 'block/drivers/')
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def violations(root):
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(('.c', '.h')):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            part = rel.split(os.sep)[0]
            with open(path, encoding='utf-8') as f:
                text = f.read()
            for lineno, inc in includes(text):
                why = check(rel, part, inc)
                if why:
                    yield f'src/{rel}:{lineno}: #include "{inc}": {why}'


def includes(text):
    for m in INCLUDE.finditer(text):
        yield text.count('\n', 0, m.start()) + 1, m.group(1)


def check(rel, part, inc):
    target = inc.split('/')[0]
    if '/' not in inc:
        return None            # a header next to the file
    if inc.startswith(PRIVATE_BLOCK) and part != 'block':
        return 'private to src/block/ (use block/block.h)'
    if rel in QMP_CLIENT_FILES:
        ok = target == 'util' or inc == QMP_CLIENT_HEADER
        return None if ok else 'the QMP client library uses util only'
    if part in ('strata-ctl', 'strata-thinp') and inc == QMP_CLIENT_HEADER:
        return None
    allowed = ALLOWED.get(part)
    if allowed is None:
        return f'unknown part "{part}" (add it to scripts/check-layering.py)'
    if target not in allowed:
        return f'{part} may not use {target}'
    return None


def main():
    root = sys.argv[1]
    bad = list(violations(root))
    if bad:
        print('Layering violations (see docs/architecture.md):',
              file=sys.stderr)
        for line in bad:
            print('  ' + line, file=sys.stderr)
        return 1
    if len(sys.argv) > 2:
        with open(sys.argv[2], 'w') as f:
            f.write('ok\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
