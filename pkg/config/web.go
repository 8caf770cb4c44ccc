package config

import (
	"net"
	"os"
)

// web checks the console's keys (node.web_*): an address, a users file
// that can be read, TLS files in pairs, and no clear-text HTTP beyond
// loopback unless the config says so.
func (v *validator) web() {
	n := v.c.Node
	if n.WebListen == "" {
		for key, val := range map[string]string{"node.web_users_file": n.WebUsersFile,
			"node.web_cert_file": n.WebCertFile, "node.web_key_file": n.WebKeyFile} {
			if val != "" {
				v.add(key, "has no effect without node.web_listen (the console is off)")
			}
		}
		return
	}
	if err := checkHostPort(n.WebListen); err != nil {
		v.add("node.web_listen", "must be empty or host:port: %v", err)
	}
	switch {
	case n.WebUsersFile == "":
		v.add("node.web_listen", "needs node.web_users_file, the console's users (`tandem web passwd FILE USER` adds one)")
	default:
		if _, err := os.ReadFile(n.WebUsersFile); err != nil {
			v.add("node.web_users_file", "cannot read the console's users: %v", err)
		}
	}
	switch {
	case (n.WebCertFile == "") != (n.WebKeyFile == ""):
		// Reported at the key that is there, naming the one that is not.
		key, other := "node.web_cert_file", "node.web_key_file"
		if n.WebCertFile == "" {
			key, other = other, key
		}
		v.add(key, "needs %s too: TLS takes both, or set neither", other)
	case n.WebCertFile != "":
		for key, f := range map[string]string{"node.web_cert_file": n.WebCertFile, "node.web_key_file": n.WebKeyFile} {
			if _, err := os.ReadFile(f); err != nil {
				v.add(key, "cannot read it: %v", err)
			}
		}
	case !n.WebInsecureHTTP && !LoopbackListen(n.WebListen):
		v.add("node.web_listen", "%s is reachable from other machines: set node.web_cert_file and node.web_key_file (TLS), "+
			"or node.web_insecure_http: true to send passwords and session cookies in clear", n.WebListen)
	}
}

// LoopbackListen reports whether a host:port listens on loopback only: a
// loopback IP or the name localhost. An empty host listens everywhere.
func LoopbackListen(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
