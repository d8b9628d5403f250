#!/bin/bash
# lazy-cat over NBD (Unix socket and TCP, nbdkit) and HTTP (nginx on 127.0.0.1) prints the
# checksum `xxhsum -H3` prints for the file behind the URL, for files of awkward sizes,
# in every mode; the servers are real, started here and stopped on every exit path.
# usage: lazy_cat_remote.sh LAZY_CAT
set -u
lazy_cat=$1

# check URL FILE [lazy-cat options...]: one comparison; prints MISMATCH and fails on a
# difference. Also the script's inner mode, run by nbdkit --run once it listens.
check() {
  local url=$1 f=$2; shift 2
  local want got
  want=$(xxhsum -H3 "$f" 2>/dev/null | sed 's/.*= //')
  got=$("$lazy_cat" --quiet "$@" "$url" | sed 's/.*= //')
  if [ "$got" != "$want" ]; then
    echo "MISMATCH $url $*: got '$got' want '$want'"
    return 1
  fi
}
if [ "${2:-}" = --check-nbd ]; then
  # Under nbdkit --run: $3 is the URL, $4 the file; every mode.
  url=$3 f=$4 rc=0
  check "$url" "$f" || rc=1
  check "$url" "$f" --connections 1 || rc=1
  check "$url" "$f" --readahead 64K || rc=1
  check "$url" "$f" --copy || rc=1
  exit $rc
fi
for p in xxhsum nbdkit nginx curl; do
  command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] || { echo "$p missing: skipped"; exit 77; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
dir=$(mktemp -d /var/tmp/zxp-lazycat-remote-XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
  # (Grouped so that bash's "Killed" job notice goes to /dev/null too.)
  { for p in "${pids[@]}"; do kill -9 "$p"; wait "$p"; done; } 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir "$dir/www"
printf x > "$dir/www/one"
head -c 4097 /dev/urandom > "$dir/www/page+1"
head -c $((13 * 1024 * 1024 + 321)) /dev/urandom > "$dir/www/many-mib"
chmod 644 "$dir"/www/*

# A free port on 127.0.0.1: bind port 0 and read back what the kernel chose.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

fail=0
n=0
for f in "$dir"/www/*; do
  n=$((n + 1))
  # nbdkit --run starts the checks once the server listens and stops the server when
  # they end (and with this script: --exit-with-parent): no waiting for readiness.
  sock="$dir/nbd$n.sock"
  timeout 100 nbdkit -U "$sock" --exit-with-parent file "$f" \
    --run "'$0' '$lazy_cat' --check-nbd 'nbd+unix:///?socket=$sock' '$f'" || fail=1
  port=$(free_port)
  timeout 100 nbdkit -i 127.0.0.1 -p "$port" --exit-with-parent file "$f" \
    --run "'$0' '$lazy_cat' --check-nbd 'nbd://127.0.0.1:$port/' '$f'" || fail=1
done

# HTTP: nginx serving the files (ranges are nginx's default for static files).
port=$(free_port)
mkdir -p "$dir/nginx/logs"
cat > "$dir/nginx/nginx.conf" <<CONF
user root;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/logs/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  server { listen 127.0.0.1:$port; root $dir/www; }
}
CONF
[ "$(id -u)" = 0 ] || sed -i '/^user root;/d' "$dir/nginx/nginx.conf"
# One process (no master and workers): killing it stops the server whole; its output goes
# to files, never to the test runner's pipes.
"$nginx_bin" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g 'daemon off; master_process off;' \
  >"$dir/nginx/stderr" 2>&1 &
pids+=($!)
# curl retries a refused connection until nginx listens (bounded by --retry-max-time).
if curl -sf --retry 20 --retry-connrefused --retry-max-time 20 -o /dev/null \
     "http://127.0.0.1:$port/one"; then
  for f in "$dir"/www/*; do
    check "http://127.0.0.1:$port/$(basename "$f")" "$f" || fail=1
    check "http://127.0.0.1:$port/$(basename "$f")" "$f" --connections 1 --readahead 64K || fail=1
  done
  # A missing object is a clear error, not a hang or a checksum.
  if out=$("$lazy_cat" --quiet "http://127.0.0.1:$port/nope" 2>&1); then
    echo "a 404 URL succeeded: $out"; fail=1
  elif ! grep -q "NOT_FOUND" <<<"$out"; then
    echo "a 404 URL failed without ZX_ERR_NOT_FOUND: $out"; fail=1
  fi
else
  echo "nginx did not start:"; cat "$dir/nginx/stderr" "$dir/nginx/logs/error.log"; fail=1
fi

# No server at all: a clear error at once.
if out=$("$lazy_cat" --quiet "nbd+unix:///?socket=$dir/none.sock" 2>&1); then
  echo "a URL without a server succeeded: $out"; fail=1
fi
[ "$fail" = 0 ] && echo "lazy-cat over nbd+unix, nbd and http matches xxhsum -H3"
exit $fail
