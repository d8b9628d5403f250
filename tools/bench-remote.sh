#!/usr/bin/env bash
# The remote bench, ready to run from the repository after ./x build: a 1 GiB random file
# under /var/tmp (kept between runs, recreated if its size is wrong), served by nbdkit
# (file plugin, Unix socket) without delay and with the delay filter (rdelay 1 ms and
# 5 ms), and by nginx on 127.0.0.1 (loopback latency); `zxpager bench remote` against
# each. Servers are killed on every exit path.
#
# Usage: tools/bench-remote.sh [--size BYTES] [--delays "0 1 5"] [--no-http]
#                              [--zxpager PATH] [--out FILE] [-- BENCH-ARGS...]
#   --size     size of the object (default 1G; the file is /var/tmp/zxpager-bench-remote-SIZE.bin)
#   --delays   nbdkit rdelay values in ms, 0 for no delay filter (default "0 1 5")
#   --no-http  skip the nginx row
#   --out      also write every table (stdout of the bench) to FILE
#   BENCH-ARGS are passed to `zxpager bench remote` (e.g. --quick, --size-limit 64M)
set -euo pipefail

size=1G delays="0 1 5" http=1 out="" zxpager=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=${2:?--size needs a value}; shift 2 ;;
    --delays) delays=${2:?--delays needs a value}; shift 2 ;;
    --no-http) http=0; shift ;;
    --zxpager) zxpager=${2:?--zxpager needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-remote: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "$0")/.." && pwd)
zxpager=${zxpager:-$repo/build/tools/zxpager/zxpager}
[ -x "$zxpager" ] || { echo "bench-remote: $zxpager missing: run ./x build first" >&2; exit 2; }
command -v nbdkit >/dev/null || { echo "bench-remote: nbdkit missing (./x installs it)" >&2; exit 2; }

bytes=$(numfmt --from=iec "$size")
data=/var/tmp/zxpager-bench-remote-$size.bin
if [ "$(stat -c %s "$data" 2>/dev/null || echo 0)" != "$bytes" ]; then
  echo "bench-remote: creating $data ($size of random bytes)..." >&2
  head -c "$bytes" /dev/urandom >"$data.tmp"
  mv "$data.tmp" "$data"
fi
chmod 0644 "$data"

work=$(mktemp -d /tmp/zxpager-bench-remote.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until `test "$@"` holds, for at most 20 s.
wait_for() {
  local deadline=$((SECONDS + 20))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.05
  done
}

emit() { if [ -n "$out" ]; then tee -a "$out"; else cat; fi; }
[ -n "$out" ] && : >"$out"

exec 3>&2

status=0
for d in $delays; do
  sock=$work/nbd-$d.sock pidfile=$work/nbd-$d.pid
  if [ "$d" = 0 ]; then
    nbdkit -f -U "$sock" -P "$pidfile" --exit-with-parent file "$data" &
    note="nbdkit file plugin, Unix socket, no delay filter"
  else
    nbdkit -f -U "$sock" -P "$pidfile" --exit-with-parent --filter=delay file "$data" \
      rdelay=${d}ms &
    note="nbdkit file plugin, Unix socket, --filter=delay rdelay=${d}ms"
  fi
  pid=$!
  pids+=("$pid")
  wait_for test -s "$pidfile" -a -S "$sock" ||
    { echo "bench-remote: nbdkit did not start" >&2; exit 1; }
  url="nbd+unix:///?socket=$sock"
  "$zxpager" bench remote "$url" --rtt-note "$note" "${@}" 2>&3 | emit || status=1
  echo | emit
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

if [ "$http" = 1 ]; then
  if ! command -v nginx >/dev/null; then
    echo "bench-remote: nginx missing: no http row" >&2
  else
    mkdir -p "$work/www" "$work/nginx"
    ln "$data" "$work/www/object.bin" 2>/dev/null || cp "$data" "$work/www/object.bin"
    port=0
    for try in 1 2 3 4 5 6 7 8; do
      p=$((20000 + RANDOM % 20000))
      cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp;
  proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp;
  uwsgi_temp_path $work/nginx/tmp;
  scgi_temp_path $work/nginx/tmp;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$p;
    root $work/www;
  }
}
EOF
      nginx -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
      npid=$!
      if wait_for curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$p/object.bin"; then
        pids+=("$npid") port=$p
        break
      fi
      kill "$npid" 2>/dev/null || true
      wait "$npid" 2>/dev/null || true
    done
    if [ "$port" = 0 ]; then
      echo "bench-remote: nginx did not start: $(tail -n 3 "$work/nginx/error.log")" >&2
      status=1
    else
      "$zxpager" bench remote "http://127.0.0.1:$port/object.bin" \
        --rtt-note "nginx 1 worker on 127.0.0.1 (loopback latency)" "${@}" 2>&3 | emit || status=1
    fi
  fi
fi
exit $status
