# shellcheck shell=bash
# Sourced, not run: exports the defaults of project.env (the shared environment) for
# the script that sources it. A key the caller already set (the Makefile passes its
# own, a user's NAMESPACE=...) keeps its value.
_project_env=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/project.env
while IFS='=' read -r _key _value; do
  [[ $_key =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
  [[ -n ${!_key+set} ]] || export "$_key=$_value"
done <"$_project_env"
unset _project_env _key _value
