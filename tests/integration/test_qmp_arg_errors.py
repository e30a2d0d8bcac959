# SPDX-License-Identifier: BSD-3-Clause
"""QEMU's argument errors, for every command stratad and qsd both have,
from bad arguments derived from qemu-storage-daemon's own schema.

qemu-storage-daemon and stratad run side by side with the same command
line.  query-qmp-schema (qsd) describes each command's arguments;
query-commands (stratad) says which commands to try.  For each command
the generator builds valid minimal arguments (every branch of a flat
union at the top, a few branches of nested unions) and breaks them one
way at a time: a required member dropped, each member given each JSON
type it does not take, an unknown member, enum values that do not exist
(the discriminator's included), integers at and past every integer
width's bounds (introspection calls them all "int"), and the same inside
nested objects, list elements and alternates; plus variants with many
defects at once, which show the order of QEMU's checks.

Every variant also carries an unknown top-level member: QEMU reports
unknown members after everything else, so no variant can be accepted
(nothing is created, quit cannot quit) and every reply is an argument
error, compared as (class, desc) -- nothing is stripped.  The test fails
on any difference not in ALLOWED.
"""
import copy
import json
import re

from conftest import require
from qmp_util import Daemon

# Differences kept on purpose: {(command, request JSON): reason}.
ALLOWED = {}

SENTINEL = "zzz-sentinel"
UNKNOWN = "zzz-unknown"
BAD_ENUM = "no-such-value"
# Integers at and past the bounds of int8 ... uint64, and past int64 in
# both directions (QEMU keeps those as doubles or as uint64).
INTS = [-2**63 - 1, -2**63, -2**31 - 1, -2**31, -32769, -129, -1, 0, 127,
        128, 255, 256, 32767, 32768, 65535, 65536, 2**31 - 1, 2**31,
        2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64]
# One value of each JSON type, as (label, value).
SAMPLES = [("string", "x"), ("int", 1), ("float", 1.5), ("bool", True),
           ("null", None), ("object", {}), ("array", [])]
# Nested objects deeper than this are left alone; nested unions try at
# most this many of their branches (all of them at the top).
MAX_DEPTH = 3
NESTED_BRANCHES = 3
# Variants of a nested type met again in the same command.
AGAIN = 4
ARG_ERROR = re.compile(
    r"^(Parameter '[^']*' is missing"
    r"|Invalid parameter type for '[^']*', expected: \S+"
    r"|Parameter '[^']*' expects .*"
    r"|Parameter '[^']*' does not accept value '.*'"
    r"|Parameters? '[^']*' (is|are) unexpected)$")


class Schema:
    def __init__(self, entities):
        self.by = {e["name"]: e for e in entities}
        # Nested types broken in full once per command; where they come
        # again (BlockdevRef under every driver), only a few variants.
        self.explored = set()

    def meta(self, t):
        return self.by[t]["meta-type"]

    def json_type(self, t):
        """The JSON type of a builtin type."""
        return self.by[t]["json-type"]

    def takes(self, t, value):
        """Whether a value of value's JSON type gets past t's type check
        (an alternate: whether a branch is there for that type)."""
        m = self.meta(t)
        if m == "builtin":
            jt = self.json_type(t)
            return {
                "string": isinstance(value, str),
                "int": isinstance(value, int) and not isinstance(value, bool),
                "number": isinstance(value, (int, float))
                and not isinstance(value, bool),
                "boolean": isinstance(value, bool),
                "null": value is None,
                "value": True,
            }[jt]
        if m == "enum":
            return isinstance(value, str)
        if m == "object":
            return isinstance(value, dict)
        if m == "array":
            return isinstance(value, list)
        # An alternate: int and float both go to a numeric branch.
        for b in self.by[t]["members"]:
            bt = b["type"]
            if self.meta(bt) == "builtin" and self.json_type(bt) == "int":
                if isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    return True
            elif self.takes(bt, value):
                return True
        return False

    def members(self, t, obj):
        """An object type's members (a union's: with the branch obj's
        discriminator selects), as (name, type, required)."""
        e = self.by[t]
        out = [(m["name"], m["type"], "default" not in m)
               for m in e["members"]]
        tag = e.get("tag")
        if tag and isinstance(obj, dict) and tag in obj:
            for v in e.get("variants", []):
                if v["case"] == obj[tag]:
                    out += [(m["name"], m["type"], "default" not in m)
                            for m in self.by[v["type"]]["members"]]
        return out

    def branches(self, t):
        return [v["case"] for v in self.by[t].get("variants", [])]

    def minimal(self, t, depth=0, case=None):
        """Valid arguments of type t, with required members only."""
        m = self.meta(t)
        if m == "builtin":
            return {"string": "x", "int": 0, "number": 0, "boolean": False,
                    "null": None, "value": "x"}[self.json_type(t)]
        if m == "enum":
            return self.by[t]["values"][0]
        if m == "array":
            return []
        if m == "alternate":
            # A scalar branch if there is one: it ends the recursion.
            branches = [b["type"] for b in self.by[t]["members"]]
            for b in branches:
                if self.meta(b) != "object":
                    return self.minimal(b, depth)
            return self.minimal(branches[0], depth)
        e = self.by[t]
        obj = {}
        tag = e.get("tag")
        if tag:
            cases = self.branches(t)
            if case is None:
                case = cases[0] if cases else \
                    self.minimal(dict((x["name"], x["type"])
                                      for x in e["members"])[tag])
            obj[tag] = case
        for name, mt, required in self.members(t, obj):
            if required and name not in obj:
                obj[name] = self.minimal(mt, depth + 1)
        return obj

    def wrong(self, t):
        """(label, value) of values t's type check refuses."""
        out = [(label, v) for label, v in SAMPLES if not self.takes(t, v)]
        if self.meta(t) == "enum":
            out.append(("bad value", BAD_ENUM))
        return out

    def nested(self, t, value, depth):
        """(label, value): value of type t broken inside (or at its
        bounds, for integers)."""
        m = self.meta(t)
        if m == "builtin":
            if self.json_type(t) == "int":
                for i in INTS:
                    yield f"= {i}", i
            return
        if depth > MAX_DEPTH:
            return
        if t in self.explored:
            for i, lv in enumerate(self.nested_once(t, value, depth)):
                if i == AGAIN:
                    return
                yield lv
            return
        self.explored.add(t)
        yield from self.nested_once(t, value, depth)

    def nested_once(self, t, value, depth):
        m = self.meta(t)
        if m == "object":
            cases = self.branches(t)
            if cases and depth > 0 and len(cases) > NESTED_BRANCHES:
                step = (len(cases) - 1) / (NESTED_BRANCHES - 1)
                cases = [cases[round(i * step)]
                         for i in range(NESTED_BRANCHES)]
            for case in cases or [None]:
                base = self.minimal(t, depth, case)
                if case is not None and base != value:
                    yield f"<{case}>", base     # another branch, valid
                yield from self.object_variants(t, base, depth)
        elif m == "array":
            elem = self.by[t]["element-type"]
            good = self.minimal(elem, depth + 1)
            for label, w in self.wrong(elem):
                yield f"[0] {label}", [w]
                yield f"[1] {label}", [good, w]
            for label, w in self.nested(elem, good, depth + 1):
                yield f"[0] {label}", [w]
        elif m == "alternate":
            for b in self.by[t]["members"]:
                bt = b["type"]
                bm = self.meta(bt)
                if bm == "enum":
                    yield "bad value", BAD_ENUM
                elif bm == "builtin" and self.json_type(bt) == "int":
                    yield "float", 1.5
                elif bm in ("object", "array"):
                    v = self.minimal(bt, depth + 1)
                    yield from self.nested(bt, v, depth)

    def object_variants(self, t, obj, depth):
        """(label, object): obj (valid, of object type t) broken once,
        then in many ways at once."""
        tag = self.by[t].get("tag")
        members = self.members(t, obj)
        for name, mt, required in members:
            if required:
                yield f"no {name}", {k: v for k, v in obj.items()
                                     if k != name}
            for label, w in self.wrong(mt):
                yield f"{name} {label}", dict(obj, **{name: w})
            if name != tag:
                cur = obj.get(name, self.minimal(mt, depth + 1))
                for label, v in self.nested(mt, cur, depth + 1):
                    yield f"{name} {label}", dict(obj, **{name: v})
        if depth > 0:
            yield f"unknown {UNKNOWN}", dict(obj, **{UNKNOWN: 1})
        # Several defects: the first in QEMU's visit order wins.
        broken = dict(obj)
        for name, mt, required in members:
            w = self.wrong(mt)
            if name != tag and w:
                broken[name] = w[0][1]
        yield "all members wrong", broken
        yield "all members wrong, reversed", \
            dict(reversed(list(broken.items())))
        if depth > 0:
            yield "only unknown", {UNKNOWN: 1}


def variants(schema, command):
    """Every variant of command's arguments, deduplicated."""
    t = schema.by[command]["arg-type"]
    schema.explored = set()
    seen = set()
    cases = schema.branches(t) or [None]
    for case in cases:
        base = schema.minimal(t, 0, case)
        for label, args in [("empty", {})] + list(
                schema.object_variants(t, base, 0)):
            args = dict(args)
            args.setdefault(SENTINEL, 0)
            text = json.dumps({"execute": command, "arguments": args})
            if text not in seen:
                seen.add(text)
                yield f"{case or ''} {label}".strip(), text


def exchange(client, requests):
    """Sends the requests in batches and returns their replies."""
    replies = []
    batch = 64
    for i in range(0, len(requests), batch):
        chunk = requests[i:i + batch]
        client.send_raw("".join(r + "\n" for r in chunk))
        for _ in chunk:
            while True:
                msg = client.recv(30)
                if "event" not in msg:
                    break
            replies.append(msg)
    return replies


def outcome(reply):
    if "error" in reply:
        return (reply["error"]["class"], reply["error"]["desc"])
    return ("return", json.dumps(reply.get("return")))


def test_argument_errors_match_qsd(stratad_bin, tmp_path):
    require("qemu-storage-daemon")
    # Same command line; each runs in the test's directory, so a path a
    # variant names could only ever be made there.
    qsd = Daemon("qemu-storage-daemon", tmp_path, name="qsd", cwd=tmp_path)
    strata = Daemon(stratad_bin, tmp_path, name="strata", cwd=tmp_path)
    try:
        q = qsd.connect()
        s = strata.connect()
        schema = Schema(q.cmd("query-qmp-schema"))
        have = {c["name"] for c in s.cmd("query-commands")}
        commands = sorted(n for n, e in schema.by.items()
                          if e["meta-type"] == "command" and n in have)
        # quit last: were a variant wrongly taken, nothing else is lost.
        commands.sort(key=lambda n: n == "quit")
        assert len(commands) >= 30, commands

        cases = []
        for command in commands:
            for label, text in variants(schema, command):
                cases.append((command, label, text))
        requests = [text for _, _, text in cases]
        want = exchange(q, requests)
        got = exchange(s, requests)

        diffs = []
        not_arg = 0
        for (command, label, text), w, g in zip(cases, want, got):
            ow, og = outcome(w), outcome(g)
            if not ARG_ERROR.match(ow[1]):
                # Cannot happen with the sentinel; counted, not hidden.
                not_arg += 1
            if ow != og and (command, text) not in ALLOWED:
                diffs.append(f"{command} [{label}]\n  request: {text}\n"
                             f"  qsd:     {ow}\n  stratad: {og}")
        print(f"\n{len(commands)} commands, {len(cases)} variants compared "
              f"({not_arg} not argument errors in qsd), "
              f"{len(diffs)} differences")
        assert not diffs, f"{len(diffs)} differences:\n" + \
            "\n".join(diffs[:40])
        assert not_arg == 0
    finally:
        try:
            qsd.stop()
        finally:
            strata.stop()
