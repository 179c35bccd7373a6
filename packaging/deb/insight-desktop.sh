#!/bin/sh
# /usr/bin/insight-desktop: start the self-contained build installed under /opt.
exec /opt/insight-desktop/insight-desktop "$@"
