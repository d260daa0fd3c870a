#!/bin/sh
# Installs into the image's /opt/venv (made without pip) with the pip of the Dockerfile's `pip`
# stage, which the RUN step mounts at /opt/pip (pip --python: pip itself never enters the
# image). The one place that says how the images install:
#
#   install.sh deps LOCK       the role's hashed lock: every package pinned, every file
#                              checked against its sha256, wheels only (no build tools)
#   install.sh app WHEELDIR    the project's wheel, without dependencies, then pip check
#
# PIP_FIND_LINKS / PIP_NO_INDEX, when the build passes them, point pip at a wheelhouse of the
# lock's files (tools/k8s/images.sh downloads it once per lock on the host).
set -eu
pip() { /opt/pip/bin/python -m pip --python /opt/venv/bin/python "$@"; }
case "$1" in
    deps) pip install --root-user-action=ignore --require-hashes --only-binary=:all: -r "$2" ;;
    app)
        pip install --root-user-action=ignore --no-deps --no-index "$2"/*.whl
        pip check
        ;;
    *) echo "usage: install.sh deps LOCK | app WHEELDIR" >&2; exit 2 ;;
esac
