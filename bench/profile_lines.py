#!/usr/bin/env python3
"""Attribute a frame-pointer perf profile to watchpost's source lines, in samples per 1,000 of another profile's.

    profile_lines.py WATCHPOST.txt BINARY FLOOR.txt [TOP=30]

WATCHPOST.txt and FLOOR.txt are `perf script -F comm,tid,ip,sym` of the two processes recorded over the same
seconds (bench/profile.sh). Each sample's frames are resolved with `addr2line -i` (every inlined function, by
source line). perf prints user addresses as offsets into the file; the text segment's virtual addresses differ by
its LOAD header's vaddr - offset (0x1000 for this binary), which is added first: without it addr2line names the
wrong functions, and perf's own symbol names are unreliable for inlined and merged code.

Prints, per 1,000 samples of the floor: the total; by thread; by the first watchpost source line a sample's stack
reaches from its leaf (where the time is spent, with the system call it is in, if any); and inclusive by
watchpost function (what a call costs with all it calls). THREAD=name (a prefix of the thread's name) counts that
thread's samples only.
"""
import collections
import os
import re
import subprocess
import sys


def samples(path):
    """(comm, [(address, symbol)] leaf first) per sample."""
    comm, frames = None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line.startswith(("\t", " ")):
            comm, frames = line.split()[0], []
        else:
            parts = line.strip().split(None, 1)
            frames.append((parts[0], parts[1] if len(parts) > 1 else ""))
    if comm is not None:
        yield comm, frames


def text_delta(binary):
    """vaddr - file offset of the executable LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[2], 16) - int(f[1], 16)
    return 0


def resolve(binary, addresses):
    """address -> [(function, file:line)] innermost first."""
    res, todo = {}, sorted(addresses)
    for k in range(0, len(todo), 4000):
        out = subprocess.run(
            ["addr2line", "-a", "-i", "-f", "-C", "-e", binary] + ["0x%x" % a for a in todo[k:k + 4000]],
            capture_output=True, text=True, check=True).stdout.splitlines()
        cur, fr = None, []
        for line in out:
            if re.fullmatch(r"0x[0-9a-f]+", line):
                if cur is not None:
                    res[cur] = list(zip(fr[0::2], fr[1::2]))
                cur, fr = int(line, 16), []
            else:
                fr.append(line)
        if cur is not None:
            res[cur] = list(zip(fr[0::2], fr[1::2]))
    return res


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    wp, binary, floor = sys.argv[1:4]
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    norm = sum(1 for _ in samples(floor)) / 1000.0
    delta = text_delta(binary)
    data = [d for d in samples(wp) if d[0].startswith(os.environ.get("THREAD", ""))]
    # A return address (every frame but the leaf) points after its call: look up the byte before it.
    wanted = {int(a, 16) + delta - (1 if i else 0)
              for _, fr in data for i, (a, s) in enumerate(fr)
              if not a.startswith("ffffffff") and "libc" not in s}
    res = resolve(binary, wanted)
    # The repository's own sources (dependencies' and the standard library's paths have a src/ too).
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    src = re.compile(re.escape(root) + r"(src/[\w/]+\.rs:\d+)")
    threads, lines, funcs = collections.Counter(), collections.Counter(), collections.Counter()
    for comm, fr in data:
        threads[comm] += 1
        syscall, where, seen = "", None, set()
        for i, (a, s) in enumerate(fr):
            if a.startswith("ffffffff"):
                if s.startswith(("__x64_sys_", "__arm64_sys_", "__do_sys_")):
                    syscall = s
                continue
            for fn, loc in res.get(int(a, 16) + delta - (1 if i else 0), []):
                m = src.search(loc)
                if not m:
                    continue
                where = where or m.group(1)
                name = re.sub(r"::\{\{closure\}\}|\{closure#\d+\}", "", fn)
                name = f"{name or '?'} ({m.group(1).rsplit(':', 1)[0]})"
                if name not in seen:
                    seen.add(name)
                    funcs[name] += 1
        lines[(where or "(no watchpost frame)") + ("  " + syscall if syscall else "")] += 1
    print(f"watchpost: {len(data) / norm:.0f} samples per 1,000 of the floor's")
    for title, c in (("by thread", threads), ("where (leaf-most source line)", lines), ("inclusive, by function", funcs)):
        print(f"\n{title}:")
        for k, v in c.most_common(top):
            print(f"{v / norm:7.1f}  {k[:150]}")


if __name__ == "__main__":
    main()
