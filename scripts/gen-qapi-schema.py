#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Writes src/qmp/qapi-schema.{c,h}: QEMU's QAPI types as QmpArgSpec tables.

stratad checks QMP arguments against descriptions of QEMU's schema
(qmp/qmp-args.h).  The big shared types -- BlockdevOptions with every
driver, ObjectOptions with every object type, BlockExportOptions,
SocketAddress... -- are transcribed here from QEMU's own schema files,
read with QEMU's own QAPI parser, so they are exactly QEMU's:

    scripts/gen-qapi-schema.py /path/to/qemu-7.2 src/qmp

The files are committed; the build does not need QEMU's sources.  Run it
again when moving to another QEMU version, or when a command is added to
COMMANDS (each one gets qapi_<command>_arg, its arguments, if they are
not a named type).  Conditional parts ('if': CONFIG_...) are kept unless
named in DISABLED, which matches Debian 12's qemu-storage-daemon 7.2;
tests/integration/test_qmp_arg_errors.py compares the result with that
daemon's query-qmp-schema (through the errors both give).
"""
import os
import sys

# The commands stratad implements (or is getting) that qsd also has.
COMMANDS = [
    'block-export-add', 'block-export-del', 'block-job-cancel',
    'block-job-complete', 'block-job-dismiss', 'block-job-finalize',
    'block-job-pause', 'block-job-resume', 'block-job-set-speed',
    'block-set-write-threshold', 'block-stream', 'block_resize',
    'blockdev-add', 'blockdev-create', 'blockdev-del', 'blockdev-snapshot',
    'blockdev-snapshot-sync', 'job-cancel', 'job-complete', 'job-dismiss',
    'job-finalize', 'job-pause', 'job-resume', 'nbd-server-start',
    'nbd-server-stop', 'object-add', 'object-del', 'qmp_capabilities',
    'qom-list', 'query-block-exports', 'query-block-jobs', 'query-blockstats',
    'query-commands', 'query-jobs', 'query-named-block-nodes',
    'query-version', 'quit', 'transaction',
]

# Types of command-line options, as qemu-storage-daemon parses them.
OPTION_TYPES = ['NbdServerOptions']

# Build options Debian's qemu-storage-daemon 7.2 is built without.
DISABLED = {'CONFIG_BLKIO'}

SCALARS = {
    'str': 'QMP_ARG_STR', 'bool': 'QMP_ARG_BOOL', 'int': 'QMP_ARG_INT',
    'int64': 'QMP_ARG_INT', 'int8': 'QMP_ARG_INT8', 'int16': 'QMP_ARG_INT16',
    'int32': 'QMP_ARG_INT32', 'uint8': 'QMP_ARG_UINT8',
    'uint16': 'QMP_ARG_UINT16', 'uint32': 'QMP_ARG_UINT32',
    'uint64': 'QMP_ARG_UINT64', 'size': 'QMP_ARG_SIZE',
    'number': 'QMP_ARG_NUMBER', 'null': 'QMP_ARG_NULL', 'any': 'QMP_ARG_ANY',
}


def main():
    qemu, outdir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.join(qemu, 'scripts'))
    from qapi.schema import (QAPISchema, QAPISchemaAlternateType,
                             QAPISchemaArrayType, QAPISchemaEnumType,
                             QAPISchemaObjectType)

    schema = QAPISchema(os.path.join(qemu, 'storage-daemon', 'qapi',
                                     'qapi-schema.json'))

    def on(ifcond):
        def ev(c):
            if isinstance(c, str):
                return c not in DISABLED
            if 'not' in c:
                return not ev(c['not'])
            if 'all' in c:
                return all(ev(x) for x in c['all'])
            return any(ev(x) for x in c['any'])
        return not ifcond.ifcond or ev(ifcond.ifcond)

    def cname(name):
        return 'qapi_' + name.replace('-', '_').replace('.', '_')

    def is_implicit(t):
        return t.name.startswith('q_')

    order = []     # named types to emit, dependencies first where possible
    seen = set()

    def walk(t):
        if t is None or t.name in seen or t.name in SCALARS:
            return
        seen.add(t.name)
        if isinstance(t, QAPISchemaObjectType):
            if t.base:
                walk(t.base)
            for m in t.local_members:
                if on(m.ifcond):
                    walk(m.type)
            if t.variants:
                for v in t.variants.variants:
                    if on(v.ifcond):
                        walk(v.type)
        elif isinstance(t, QAPISchemaAlternateType):
            for v in t.variants.variants:
                if on(v.ifcond):
                    walk(v.type)
        elif isinstance(t, QAPISchemaArrayType):
            walk(t.element_type)
            return      # arrays are written inline
        # Implicit union bases are written into their union; implicit
        # command arguments as qapi_<command>_arg.
        if t.name != 'q_empty' and not (is_implicit(t) and (
                t.name.endswith('-base') or t.name.endswith('-arg'))):
            order.append(t)

    commands = []
    for name in COMMANDS:
        cmd = schema.lookup_entity(name)
        assert cmd is not None, name
        commands.append(cmd)
        walk(cmd.arg_type)
    for name in OPTION_TYPES:
        walk(schema.lookup_type(name))

    def type_init(t, elem=False):
        """The initializer fields describing a value of type t."""
        p = 'elem' if elem else 'type'
        if t.name in SCALARS:
            return [f'.{p} = {SCALARS[t.name]}']
        if isinstance(t, QAPISchemaEnumType):
            return [f'.{p} = QMP_ARG_ENUM',
                    f'.{"elem_choices" if elem else "choices"} = {cname(t.name)}']
        if isinstance(t, QAPISchemaObjectType):
            return [f'.{p} = QMP_ARG_OBJECT',
                    f'.{"elem_nested" if elem else "nested"} = {cname(t.name)}']
        if isinstance(t, QAPISchemaAlternateType):
            return [f'.{p} = QMP_ARG_ALTERNATE',
                    f'.{"elem_alternate" if elem else "alternate"} = '
                    f'&{cname(t.name)}']
        if isinstance(t, QAPISchemaArrayType):
            assert not elem, 'lists of lists'
            return ['.type = QMP_ARG_ARRAY'] + type_init(t.element_type, True)
        raise Exception(t.name)

    def entry(fields):
        """An initializer, wrapped at 79 columns."""
        lines, cur = [], '    {'
        for i, f in enumerate(fields):
            piece = f' {f}' + (',' if i < len(fields) - 1 else ' },')
            if len(cur) + len(piece) > 79:
                lines.append(cur)
                cur = '     '
            cur += piece
        return '\n'.join(lines + [cur])

    def member_line(m):
        fields = [f'.name = "{m.name}"'] + type_init(m.type)
        if m.optional:
            fields.append('.optional = true')
        return entry(fields)

    def members_of(t):
        """Lines of t's member table: base, own members, branch."""
        lines = []
        if t.base:
            if is_implicit(t.base):
                lines += [member_line(m) for m in t.base.local_members
                          if on(m.ifcond)]
            else:
                lines.append(f'    QMP_ARG_INHERIT({cname(t.base.name)}),')
        lines += [member_line(m) for m in t.local_members if on(m.ifcond)]
        if t.variants:
            lines.append(f'    QMP_ARG_UNION("{t.variants.tag_member.name}", '
                         f'{cname(t.name)}_branches),')
        return lines

    decls = []
    body = []
    for t in order:
        c = cname(t.name)
        if isinstance(t, QAPISchemaEnumType):
            decls.append(f'extern const char *const {c}[];')
            body.append(f'/* enum {t.name} */')
            body.append(f'const char *const {c}[] = {{')
            for m in t.members:
                if on(m.ifcond):
                    body.append(f'    "{m.name}",')
            body.append('    NULL,\n};\n')
        elif isinstance(t, QAPISchemaAlternateType):
            decls.append(f'extern const QmpAlternate {c};')
            body.append(f'/* alternate {t.name} */')
            body.append(f'static const QmpArgSpec {c}_branches[] = {{')
            for v in t.variants.variants:
                if on(v.ifcond):
                    fields = [f'.name = "{v.name}"'] + type_init(v.type)
                    body.append(entry(fields))
            body.append('    { NULL },\n};')
            body.append(f'const QmpAlternate {c} = {{\n    "{t.name}", '
                        f'{c}_branches,\n}};\n')
        elif isinstance(t, QAPISchemaObjectType):
            if t.variants:
                decls.append(f'extern const QmpArgBranch {c}_branches[];')
                body.append(f'/* union {t.name}: branches */')
                body.append(f'const QmpArgBranch {c}_branches[] = {{')
                for v in t.variants.variants:
                    if on(v.ifcond) and v.type.name != 'q_empty':
                        body.append(entry([f'"{v.name}"',
                                           cname(v.type.name)]))
                body.append('    { NULL },\n};\n')
            what = 'union' if t.variants else 'struct'
            decls.append(f'extern const QmpArgSpec {c}[];')
            body.append(f'/* {what} {t.name} */')
            body.append(f'const QmpArgSpec {c}[] = {{')
            body += members_of(t)
            body.append('    { NULL },\n};\n')

    cmd_lines = []
    for cmd in commands:
        t = cmd.arg_type
        if t is None:
            what = 'no arguments'
        elif is_implicit(t):
            what = 'qapi_' + cmd.name.replace('-', '_') + '_arg'
        else:
            what = cname(t.name)
        cmd_lines.append(f' *   {cmd.name}: {what}')
    for cmd in commands:
        t = cmd.arg_type
        if t is not None and is_implicit(t):
            c = cname(cmd.name + '-arg')
            decls.append(f'extern const QmpArgSpec {c}[];')
            body.append(f'/* command {cmd.name} */')
            body.append(f'const QmpArgSpec {c}[] = {{')
            body += members_of(t)
            body.append('    { NULL },\n};\n')

    head = ('/* SPDX-License-Identifier: BSD-3-Clause */\n'
            '/* Generated by scripts/gen-qapi-schema.py from QEMU 7.2\'s '
            'QAPI schema\n * (the qemu-storage-daemon\'s); do not edit. '
            'Each QAPI type T is\n * qapi_T: a member table for structs and '
            'unions, a NULL-ended list of\n * values for enums, a '
            'QmpAlternate for alternates.\n *\n'
            ' * The arguments of the commands:\n' + '\n'.join(cmd_lines) + '\n */\n')
    with open(os.path.join(outdir, 'qapi-schema.h'), 'w') as f:
        f.write(head)
        f.write('#ifndef STRATA_QMP_QAPI_SCHEMA_H\n'
                '#define STRATA_QMP_QAPI_SCHEMA_H\n\n'
                '#include "qmp/qmp-args.h"\n\n')
        f.write('\n'.join(decls) + '\n\n#endif\n')
    with open(os.path.join(outdir, 'qapi-schema.c'), 'w') as f:
        f.write(head)
        f.write('#include "qmp/qapi-schema.h"\n\n#include <stddef.h>\n\n')
        f.write('\n'.join(body))


if __name__ == '__main__':
    main()
