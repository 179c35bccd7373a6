"""Which system libraries the frozen Qt GUI needs that the one-folder build does not bundle.

    .venv/bin/python packaging/deb/check_libs.py dist/insight-desktop

PyInstaller bundles most shared libraries, but by design leaves out the ones that must match the
user's system (glibc, libGL/libEGL, libxcb, libdrm, libwayland-*), and it cannot bundle the ones
missing on the build machine (libxcb-cursor, libxkbcommon-x11, …). Those must be in the .deb's
Depends. This script runs ``ldd`` on the executable and the Qt plugins a desktop start loads
(xcb, its GL integrations, image formats, icon engines, input contexts), maps every library
found outside the bundle (or not found at all) to its Debian package, and fails when a package is
missing from ``Depends:`` in packaging/deb/control.in, or a library is not in :data:`SONAME_PACKAGES`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONTROL = HERE / "control.in"

#: soname → Debian package (Debian 12 / Ubuntu 22.04 names) for every library that the checked
#: files may take from the system
SONAME_PACKAGES: dict[str, str] = {
    # glibc
    "libc.so.6": "libc6", "libm.so.6": "libc6", "libdl.so.2": "libc6", "libpthread.so.0": "libc6",
    "librt.so.1": "libc6", "libutil.so.1": "libc6", "libresolv.so.2": "libc6", "ld-linux-x86-64.so.2": "libc6",
    "/lib64/ld-linux-x86-64.so.2": "libc6", "linux-vdso.so.1": "libc6",
    # graphics stack (never bundled: must match the system's driver)
    "libGL.so.1": "libgl1", "libGLX.so.0": "libglx0", "libOpenGL.so.0": "libopengl0", "libEGL.so.1": "libegl1",
    "libGLdispatch.so.0": "libglvnd0", "libdrm.so.2": "libdrm2",
    # X11 / xcb (the xcb platform plugin)
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6", "libX11-xcb.so.1": "libx11-xcb1", "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6", "libXext.so.6": "libxext6", "libXrender.so.1": "libxrender1",
    # fonts, D-Bus, GLib (usually bundled; listed in case a build machine lacks them)
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6", "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0", "libgobject-2.0.so.0": "libglib2.0-0",
    "libz.so.1": "zlib1g", "libstdc++.so.6": "libstdc++6", "libgcc_s.so.1": "libgcc-s1",
}

#: packages that a package of Depends pulls in itself (no need to name them)
PULLED_IN: dict[str, str] = {"libglx0": "libgl1", "libglvnd0": "libgl1"}

#: the files a desktop start loads, relative to the build's _internal/ (globs)
CHECKED = (
    "PySide6/Qt/plugins/platforms/libqxcb.so",
    "PySide6/Qt/plugins/xcbglintegrations/*.so",
    "PySide6/Qt/plugins/platforms/libqoffscreen.so",
    "PySide6/Qt/plugins/imageformats/*.so",
    "PySide6/Qt/plugins/iconengines/*.so",
    "PySide6/Qt/plugins/platforminputcontexts/*.so",
    "PySide6/Qt*.so",
)

_LINE = re.compile(r"^\s*(\S+)\s*(?:=>\s*(not found|\S+))?")


def depends_packages(control: Path = CONTROL) -> set[str]:
    """Package names in the ``Depends:`` field (version constraints and alternatives dropped)."""
    text = control.read_text()
    m = re.search(r"^Depends:(.*(?:\n[ \t].*)*)", text, flags=re.M)
    if not m:
        return set()
    names = set()
    for item in m.group(1).replace("\n", " ").split(","):
        for alt in item.split("|"):
            name = re.sub(r"\(.*?\)|:any", "", alt).strip()
            if name and not name.startswith("@"):
                names.add(name)
    return names


def outside_libraries(app: Path) -> dict[str, set[str]]:
    """soname → the checked files that take it from outside the bundle (or cannot find it)."""
    internal = app / "_internal"
    files = [app / app.name]
    for pattern in CHECKED:
        files += sorted(internal.glob(pattern))
    # The frozen app's loader path: the bootloader puts _internal on LD_LIBRARY_PATH; Qt's
    # libraries and plugins find each other through their $ORIGIN run paths.
    env = dict(os.environ, LD_LIBRARY_PATH=f"{internal}:{internal / 'PySide6' / 'Qt' / 'lib'}")
    found: dict[str, set[str]] = {}
    for f in files:
        out = subprocess.run(["ldd", str(f)], capture_output=True, text=True, env=env).stdout
        for line in out.splitlines():
            m = _LINE.match(line)
            if not m or m.group(1) in ("statically", "linux-vdso.so.1"):
                continue
            soname, where = m.group(1), m.group(2)
            if where is None:  # the dynamic loader itself, listed by its path
                where = soname
            if where != "not found" and Path(where).resolve().is_relative_to(internal.resolve()):
                continue
            found.setdefault(Path(soname).name if soname.startswith("/") else soname, set()).add(
                str(f.relative_to(app)))
    return found


def main(argv: list[str]) -> int:
    app = Path(argv[0] if argv else "dist/insight-desktop")
    libs = outside_libraries(app)
    depends = depends_packages()
    unknown, undeclared = [], []
    for soname in sorted(libs):
        package = SONAME_PACKAGES.get(soname) or SONAME_PACKAGES.get(f"/lib64/{soname}")
        state = "ok"
        if package is None:
            unknown.append(soname)
            state = "UNKNOWN (add it to SONAME_PACKAGES)"
        elif package not in depends and PULLED_IN.get(package) not in depends:
            undeclared.append(package)
            state = "NOT IN Depends"
        elif package not in depends:
            state = f"ok (comes with {PULLED_IN[package]})"
        print(f"  system library {soname:28} {package or '?':22} {state}")
    if unknown or undeclared:
        print(f"check_libs: the bundle lacks {unknown + sorted(set(undeclared))}: install them on the build machine "
              "(PyInstaller then bundles them) or add their packages to Depends in packaging/deb/control.in",
              file=sys.stderr)
        return 1
    print(f"check_libs: every library the GUI takes from the system is in Depends ({len(libs)} libraries)")
    needed, declared = glibc_needed(app), libc6_minimum()
    print(f"check_libs: the bundle needs glibc {'.'.join(map(str, needed))}; Depends says libc6 (>= "
          f"{'.'.join(map(str, declared))})")
    if needed > declared:
        print("check_libs: raise the libc6 version in packaging/deb/control.in", file=sys.stderr)
        return 1
    return 0


def glibc_needed(app: Path) -> tuple[int, ...]:
    """The newest GLIBC_x.y symbol version any bundled ELF file refers to (the bundled libraries
    come from the build machine, so this is about its glibc)."""
    newest = (2, 17)
    for path in app.rglob("*"):
        if path.is_file() and (".so" in path.name or path == app / app.name):
            for m in re.finditer(rb"GLIBC_(2\.\d+)", path.read_bytes()):
                newest = max(newest, tuple(int(x) for x in m.group(1).split(b".")))
    return newest


def libc6_minimum(control: Path = CONTROL) -> tuple[int, ...]:
    m = re.search(r"libc6 \(>= ([\d.]+)\)", control.read_text())
    return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
