# Shared by the bench scripts; source it.

# Build with `cargo build --release ARGS...` and print the path of the executable it made. The
# path depends on the build target (`.cargo/config.toml` builds for the host's tuple, statically
# linked), so it is read from cargo's own report instead of assumed.
release_binary() {
  local exe
  exe=$(cargo build --release -q --message-format=json "$@" | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
  [ -x "$exe" ] || { echo "bench: \`cargo build --release $*\` made no executable" >&2; return 1; }
  echo "$exe"
}
