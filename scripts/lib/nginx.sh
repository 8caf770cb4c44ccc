# Sourced by the lab scripts: a minimal nginx backend that answers every
# request with its own name, so a client can tell which server it reached.

# nginx_backend_conf DIR NAME: writes DIR/nginx.conf (foreground, one
# worker, everything kept in DIR, port 80, answers "NAME\n"). Start it with
# `nginx -c DIR/nginx.conf -p DIR` inside the backend's namespace.
nginx_backend_conf() {
    local d=$1 name=$2
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $d/nginx.pid; error_log $d/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d;
  uwsgi_temp_path $d; scgi_temp_path $d;
  server { listen 80; location / { default_type text/plain; return 200 "$name\n"; } } }
CONF
}

# nginx_bench_head DIR: the top of a benchmark's nginx.conf kept in DIR:
# one worker in the foreground, the open-file limit of this machine (20,000)
# and 8,000 connections.
nginx_bench_head() {
    cat <<CONF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 20000;
events {
    worker_connections 8000;
}
CONF
}
