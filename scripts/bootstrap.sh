#!/usr/bin/env bash
# Idempotent set-up: virtual environment, Python packages, PortAudio. Seconds when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)

if ! ldconfig -p 2>/dev/null | grep -q libportaudio.so.2; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing libportaudio2 (needed by sounddevice) with apt-get"
    (apt-get install -y -q libportaudio2 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libportaudio2 >/dev/null; })
  else
    echo "bootstrap: libportaudio2 is missing; install it (e.g. 'sudo apt-get install libportaudio2') to use a microphone." >&2
  fi
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  "$PY" -m venv "$VENV"
fi
echo "bootstrap: installing packages (first time: a few minutes)"
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[train,test]' 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch, torchvision, cv2, av, onnxruntime, numba, yaml" \
  || { echo "bootstrap: the package install failed; see the pip output above." >&2; exit 1; }
echo "$want" > "$STAMP"
