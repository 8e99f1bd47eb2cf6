# The test guests: name and the hook interfaces its component must export. Sourced by
# build.sh and regen-bindings.sh. Each has a world of the same name in wit/guests.wit and a
# source in src/<name>.c.
GUESTS=(
  "loop is-authenticated build-id-token-claims modify-request handle-unauthorized"
  "membomb is-authenticated"
  "trap is-authenticated"
  "bad-claims build-id-token-claims build-access-token-claims"
  "wrong-exports is-authorized"
  "wasi-import is-authenticated"
  "proxy-hooks is-authorized load-attributes create-headers is-authenticated authenticate backchannel-authenticate build-userinfo-claims build-access-token-claims modify-response modify-request handle-unauthorized"
  "c-isauth is-authenticated"
  "session-lifetime eval-max-lifetime eval-idle-timeout"
  "api-serve serve"
  "legacy-login upstream-login"
)
