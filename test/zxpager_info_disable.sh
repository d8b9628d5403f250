#!/usr/bin/env bash
# zxpager info under ZXPAGER_DISABLE: the masked features show as absent, the fallback
# paths as taken, and an unknown name is reported once on stderr and otherwise ignored.
# Usage: zxpager_info_disable.sh ZXPAGER
set -euo pipefail
zxpager=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$(ZXPAGER_DISABLE=move "$zxpager" info)
grep -q '^  supply from anonymous aux    UFFDIO_COPY' <<<"$out" ||
  fail "ZXPAGER_DISABLE=move: anonymous aux not COPY: $out"
grep -q '^disabled (ZXPAGER_DISABLE)  move$' <<<"$out" || fail "disabled list: $out"
json=$(ZXPAGER_DISABLE=move "$zxpager" info --json)
grep -q '"anon_supply":"copy"' <<<"$json" || fail "json anon_supply: $json"
grep -q '"move":false' <<<"$json" || fail "json move: $json"

out=$(ZXPAGER_DISABLE=all "$zxpager" info)
for want in 'remote pager VMOs            refused (ZX_ERR_NOT_SUPPORTED)' \
            'unmapping a pager VMO        mremap, then a MAP_FIXED_NOREPLACE' \
            'zx_port_wait with a deadline epoll_wait, timeout rounded up' \
            'commit of an anonymous VMO   touch each page' \
            'zxp_vmo_evict                ZX_ERR_NOT_SUPPORTED' \
            'ZX_PAGER_OP_FAIL on mappings signal to the faulting thread'; do
  grep -qF "$want" <<<"$out" || fail "ZXPAGER_DISABLE=all: missing '$want' in: $out"
done
grep -q 'POISON  *no  (Linux 6.6+; remote VMOs depend on it)' <<<"$out" ||
  fail "POISON line: $out"

out=$(ZXPAGER_DISABLE=thread_id "$zxpager" info)
grep -qF 'ZX_PAGER_OP_FAIL on mappings poison marker' <<<"$out" || fail "thread_id: $out"

err=$(ZXPAGER_DISABLE=move,bogus "$zxpager" info 2>&1 >/dev/null)
[ "$(grep -c "unknown feature 'bogus'" <<<"$err")" -eq 1 ] || fail "unknown name: '$err'"
out=$(ZXPAGER_DISABLE=move,bogus "$zxpager" info 2>/dev/null)
grep -q '^disabled (ZXPAGER_DISABLE)  move$' <<<"$out" || fail "unknown name not ignored: $out"

out=$(env -u ZXPAGER_DISABLE "$zxpager" info)
grep -q '^disabled (ZXPAGER_DISABLE)  none$' <<<"$out" || fail "nothing disabled: $out"
echo ok
