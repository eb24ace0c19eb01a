#!/bin/bash
# Stand-in for conda (Miniforge) on the Imperial CX3 twin of the hpcjupyter test bed: only what
# batch scripts use. `conda shell.bash hook` prints a `conda` shell function whose
# `activate NAME` activates ROOT/envs/NAME (a venv; base = ROOT), `deactivate`, and
# `conda info --envs` / `conda env list` / `conda --version`.
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
envs() {
  echo "# conda environments:"
  echo "#"
  printf '%-22s %s\n' base "$ROOT"
  local d
  for d in "$ROOT"/envs/*/; do [ -d "$d/conda-meta" ] && printf '%-22s %s\n' "$(basename "$d")" "${d%/}"; done
}
case "${1:-}" in
  shell.bash|shell.posix)
    [ "${2:-}" = hook ] || { echo "usage: conda shell.bash hook" >&2; exit 2; }
    cat <<HOOK
export CONDA_EXE='$ROOT/bin/conda'
export CONDA_PYTHON_EXE='$ROOT/bin/python'
__conda_exe() { "\$CONDA_EXE" "\$@"; }
__conda_deactivate() {
  if [ -n "\${CONDA_PREFIX:-}" ]; then
    PATH=":\$PATH:"; PATH="\${PATH//:\$CONDA_PREFIX\/bin:/:}"; PATH="\${PATH#:}"; PATH="\${PATH%:}"
    export PATH
    unset CONDA_PREFIX CONDA_DEFAULT_ENV CONDA_PROMPT_MODIFIER
    export CONDA_SHLVL=0
  fi
}
__conda_activate() {
  local name="\${1:-base}" prefix
  case "\$name" in
    base) prefix='$ROOT' ;;
    */*) prefix="\$name" ;;
    *) prefix='$ROOT/envs/'"\$name" ;;
  esac
  if [ ! -d "\$prefix/conda-meta" ]; then
    echo "EnvironmentNameNotFound: Could not find conda environment: \$name" >&2
    echo "You can list all discoverable environments with \\\`conda info --envs\\\`." >&2
    return 1
  fi
  __conda_deactivate
  export PATH="\$prefix/bin:\$PATH" CONDA_PREFIX="\$prefix" CONDA_DEFAULT_ENV="\$name"
  export CONDA_SHLVL=1 CONDA_PROMPT_MODIFIER="(\$name) "
  hash -r
}
conda() {
  case "\${1:-}" in
    activate) shift; __conda_activate "\$@" ;;
    deactivate) __conda_deactivate ;;
    *) __conda_exe "\$@" ;;
  esac
}
if [ -z "\${CONDA_SHLVL+x}" ]; then export CONDA_SHLVL=0; fi
conda activate base
HOOK
    ;;
  --version|-V) echo "conda 24.11.3" ;;
  info) if [ "${2:-}" = --envs ] || [ "${2:-}" = -e ]; then envs; else echo "     active environment : ${CONDA_DEFAULT_ENV:-None}"; echo "    base environment : $ROOT"; fi ;;
  env) if [ "${2:-}" = list ]; then envs; else echo "conda env: only 'list' (test-bed shim)" >&2; exit 2; fi ;;
  activate|deactivate)
    echo "CondaError: Run 'conda init' before 'conda ${1}'" >&2; exit 1 ;;
  *) echo "conda: '${1:-}' is not supported by the hpcjupyter test-bed shim" >&2; exit 2 ;;
esac
