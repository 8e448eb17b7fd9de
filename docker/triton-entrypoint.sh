#!/bin/sh
# Start tritonserver with every TensorRT plugin library in $SPVIT_PLUGIN_DIR preloaded.
# Engines whose plugins were compiled ahead of time (TensorRT >= 10.9 AOT plugins) carry their
# kernels and need nothing here; plugins built as shared libraries must be loaded before the
# engine is deserialized, which is what LD_PRELOAD does (Triton's documented way).
set -eu
preload="${SPVIT_LD_PRELOAD:-}"
for lib in "${SPVIT_PLUGIN_DIR:-/opt/spvit/plugins}"/*.so; do
    [ -e "$lib" ] || continue
    preload="${preload:+${preload}:}${lib}"
done
if [ -n "$preload" ]; then
    echo "spvit: LD_PRELOAD=${preload}" >&2
    export LD_PRELOAD="${preload}${LD_PRELOAD:+:${LD_PRELOAD}}"
fi
exec tritonserver "$@"
