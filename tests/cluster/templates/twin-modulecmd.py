#!/usr/bin/python3
"""Stand-in for `module` on the site twins of the hpcjupyter test bed: Lmod on the HPE Cray EX
twins, Environment Modules on the Imperial CX3 twin (HPCJ_TWIN_MODULES=cx3).

`module` (a shell function from /etc/profile.d/hpcj-twin-modules.sh) runs
`eval "$(modulecmd bash ARGS...)"`. Supported: restore, load, unload, list, purge, avail.
Only cray-python changes the environment (it puts a Python 3.11 without Jupyter first in PATH);
the default Cray PE modules and the CX3 modules are names only. Messages go to stderr, as the
real commands' do.
"""
import os
import shlex
import sys

PE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = ["craype-x86-rome", "libfabric/1.12.1.2.2.0.0", "craype-network-ofi",
            "perftools-base/22.12.0", "xpmem/2.5.2-2.4_3.30__gd0f7936.shasta", "cray-mpich/8.1.23",
            "cray-libsci/22.12.1.1", "PrgEnv-cray/8.3.3", "craype/2.7.19", "cce/15.0.0",
            "bolt/0.8", "epcc-setup-env", "load-epcc-module"]
# name -> (full name, directories prepended to PATH)
KNOWN = {"cray-python": ("cray-python/3.11.2", [f"{PE}/python/3.11/bin"])}
KNOWN.update({d.split("/")[0]: (d, []) for d in DEFAULTS})
if os.environ.get("HPCJ_TWIN_MODULES") == "cx3":
    # CX3: no Cray PE; what its job scripts and the conda guide load (names only)
    DEFAULTS = []
    KNOWN = {"tools": ("tools/prod", []), "miniforge": ("miniforge/3", [])}


def main(argv):
    out = []
    loaded = [m for m in os.environ.get("LOADEDMODULES", "").split(":") if m]
    path = os.environ.get("PATH", "")
    owned = set()
    for full, dirs in KNOWN.values():
        owned.update(dirs)
    base = [p for p in path.split(":") if p and p not in owned]
    if not argv:
        print("Usage: module [options] sub-command [args ...]", file=sys.stderr)
        return "false"
    cmd, args = argv[0], argv[1:]
    if cmd == "restore":
        loaded = list(DEFAULTS)
        print("Resetting modules to system default. Resetting $MODULEPATH back to system default. "
              "All extra directories will be removed from $MODULEPATH.", file=sys.stderr)
    elif cmd == "purge":
        loaded = []
    elif cmd in ("load", "add"):
        for a in args:
            name = a.split("/")[0]
            if name not in KNOWN:
                print("Lmod has detected the following error: The following module(s) are "
                      f'unknown: "{a}"', file=sys.stderr)
                return "false"
            full = KNOWN[name][0]
            loaded = [m for m in loaded if m.split("/")[0] != name] + [full]
    elif cmd in ("unload", "rm"):
        names = {a.split("/")[0] for a in args}
        loaded = [m for m in loaded if m.split("/")[0] not in names]
    elif cmd == "list":
        if not loaded:
            print("No modules loaded", file=sys.stderr)
        else:
            print("\nCurrently Loaded Modules:", file=sys.stderr)
            print("\n".join(f"  {i}) {m}" for i, m in enumerate(loaded, 1)) + "\n", file=sys.stderr)
        return "true"
    elif cmd == "avail":
        print("\n".join(sorted(f for f, _ in KNOWN.values())), file=sys.stderr)
        return "true"
    else:
        print(f"Lmod has detected the following error: Invalid command: {cmd} "
              "(hpcjupyter test-bed shim: restore, load, unload, list, purge, avail)", file=sys.stderr)
        return "false"
    prepend = []
    for m in loaded:
        prepend += KNOWN[m.split("/")[0]][1]
    out.append(f"export LOADEDMODULES={shlex.quote(':'.join(loaded))}")
    out.append(f"export PATH={shlex.quote(':'.join(prepend + base))}")
    out.append("hash -r")
    return "; ".join(out)


if __name__ == "__main__":
    sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in ("bash", "sh") else None
    print(main(sys.argv[1:]))
