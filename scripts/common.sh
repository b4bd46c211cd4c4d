# Shared by the scripts in this folder: where the tools live and which versions we use.
# Source it; it changes no files.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

TRUNK_VERSION=0.22.1
BINARYEN_VERSION=132.0.0
SCHEMATHESIS_VERSION=4.32.5
AXE_CORE_VERSION=4.14.1
# Tools that are not cargo binaries (wasm-opt from npm) go here.
TOOLS_DIR=${CHAT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-tools}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export PATH="$TOOLS_DIR/binaryen/node_modules/.bin:$CARGO_BIN:$PATH"

# wasm-bindgen-cli must match the wasm-bindgen library exactly, or Trunk tries to download it.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$repo/Cargo.lock"
}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
