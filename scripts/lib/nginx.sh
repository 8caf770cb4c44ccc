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
