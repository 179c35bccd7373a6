#!/usr/bin/env bash
# Build the installable app: dist/insight-desktop/ (PyInstaller one-folder build) and
# dist/insight-desktop_<version>_amd64.deb (dpkg-deb, offline). `make package` runs this.
#
#   PY=.venv/bin/python bash packaging/build.sh          # both
#   SKIP_PYINSTALLER=1 bash packaging/build.sh           # only the .deb, around an existing dist/insight-desktop
#
# The folder holds torch with its CUDA libraries (several GB), so the .deb is compressed with
# zstd at level 3: 20 s for 4.6 GB here, 2.6 GB out (dpkg >= 1.21.18 reads it: Debian 12, Ubuntu
# 24.04; the bundle needs glibc 2.36 anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
NAME=insight-desktop
VERSION=$("$PY" -c 'import insight_desktop; print(insight_desktop.__version__)')
APP=dist/$NAME
DEB=dist/${NAME}_${VERSION}_amd64.deb
STAGE=build/deb/${NAME}_${VERSION}_amd64

# 1. The one-folder build ------------------------------------------------------------------
if [ -z "${SKIP_PYINSTALLER:-}" ]; then
    t0=$SECONDS
    "$PY" -m PyInstaller --noconfirm --log-level "${PYINSTALLER_LOG_LEVEL:-WARN}" \
        --distpath dist --workpath build/pyinstaller packaging/$NAME.spec
    echo "PyInstaller: $((SECONDS - t0)) s"
fi
test -x "$APP/$NAME" || { echo "build.sh: $APP/$NAME missing (run without SKIP_PYINSTALLER)" >&2; exit 1; }
echo "folder: $(du -sh "$APP" | cut -f1) $APP"

# 2. Which system libraries the Qt xcb plugin needs that the bundle lacks (they must be in
#    the control file's Depends; packaging/deb/control.in lists them).
"$PY" packaging/deb/check_libs.py "$APP"

# 3. The package tree ------------------------------------------------------------------------
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications"
cp -al "$APP" "$STAGE/opt/$NAME"  # hard links: the folder is GBs, and dpkg-deb only reads it
install -m 0755 packaging/deb/$NAME.sh "$STAGE/usr/bin/$NAME"
install -m 0644 packaging/$NAME.desktop "$STAGE/usr/share/applications/$NAME.desktop"
for png in packaging/icons/hicolor/*/apps/$NAME.png; do
    dest="$STAGE/usr/share/icons/${png#packaging/icons/}"
    install -D -m 0644 "$png" "$dest"
done
install -D -m 0644 resources/icons/$NAME.svg "$STAGE/usr/share/icons/hicolor/scalable/apps/$NAME.svg"
# The icon cache and the desktop database are refreshed by the dpkg triggers of
# hicolor-icon-theme and desktop-file-utils: no maintainer scripts are needed.

installed_kb=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$installed_kb/" packaging/deb/control.in \
    > "$STAGE/DEBIAN/control"
chmod -R u+rwX,go+rX,go-w "$STAGE"

# 4. The .deb --------------------------------------------------------------------------------
t0=$SECONDS
rm -f "$DEB"
dpkg-deb --root-owner-group -Zzstd -z3 --build "$STAGE" "$DEB"
echo "dpkg-deb: $((SECONDS - t0)) s"
rm -rf "$STAGE"
echo "package: $(du -h "$DEB" | cut -f1) $DEB (installed size $((installed_kb / 1024)) MiB)"
