package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keepAliveClient sends an HTTP/1.1 request every 100 ms on ONE
// connection to the VIP's port 80 until the duration ends; it prints
// "ok N" or "FAIL after N: reason" and exits 1 on the first failure.
const keepAliveClient = `
import socket, sys, time
end = time.time() + float(sys.argv[2])
s = socket.create_connection((sys.argv[1], 80), timeout=2)
n = 0
try:
    while time.time() < end:
        s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d: raise Exception("connection closed by the peer")
            buf += d
        head, body = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"): length = int(line.split(b":")[1])
        while len(body) < length:
            d = s.recv(4096)
            if not d: raise Exception("connection closed mid-answer")
            body += d
        if not head.startswith(b"HTTP/1.1 200"): raise Exception("status " + head.split(b"\r\n")[0].decode())
        n += 1
        time.sleep(0.1)
except Exception as e:
    print("FAIL after %d: %s" % (n, e)); sys.exit(1)
print("ok %d" % n)
`

// TestReloadKeepsConnections reloads both boxes under load: a changed
// cluster, an added cluster (which then answers), the same cluster
// removed again, and an invalid file (refused with FILE:LINE, nothing
// changes). One long-lived connection through the VIP and a loop of short
// connections see no failure throughout.
func TestReloadKeepsConnections(t *testing.T) {
	l := upWeb(t, "round_robin", "")
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 for the long-lived client")
	}
	script := filepath.Join(l.dir, "keepalive.py")
	if err := os.WriteFile(script, []byte(keepAliveClient), 0o644); err != nil {
		t.Fatal(err)
	}
	const dur = 14
	var longOut bytes.Buffer
	long := exec.Command("ip", "netns", "exec", l.ns("client"), python, script, vip, fmt.Sprint(dur))
	long.Stdout, long.Stderr = &longOut, &longOut
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	var shortOut bytes.Buffer
	short := exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c", fmt.Sprintf(
		`end=$(($(date +%%s)+%d)); while [ $(date +%%s) -lt $end ]; do curl -s -m 2 http://%s/ || echo FAIL; done`, dur-1, vip))
	short.Stdout = &shortOut
	if err := short.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)

	// write rewrites both boxes' config files with these clusters.
	write := func(clusters string) {
		for _, box := range []string{"lb1", "lb2"} {
			l.config(box, nodeOpts{preempt: true, extra: clusters})
		}
	}
	// reload runs `tandem reload` on both boxes, the backup first.
	reload := func(wantOK bool) string {
		t.Helper()
		var all string
		for _, box := range []string{"lb2", "lb1"} {
			out, err := exec.Command(binDir+"/tandem", "reload", "--socket", filepath.Join(l.dir, box+".sock")).CombinedOutput()
			t.Logf("tandem reload on %s: err=%v\n%s", box, err, out)
			if (err == nil) != wantOK {
				t.Fatalf("reload on %s: err=%v, want ok=%t\n%s", box, err, wantOK, out)
			}
			all += string(out)
		}
		return all
	}

	// (a) the web cluster changes: another algorithm, a weight.
	changed := strings.Replace(webCluster("weighted_round_robin", ""), `address: "198.18.0.22:80"}`, `address: "198.18.0.22:80", weight: 3}`, 1)
	write(changed)
	if out := reload(true); !strings.Contains(out, "cluster web changed") {
		t.Fatalf("reload did not report the changed cluster:\n%s", out)
	}
	st, err := l.status("lb1")
	if err != nil || len(st.Clusters) != 1 || st.Clusters[0].Algorithm != "weighted_round_robin" || !st.Clusters[0].Serving {
		t.Fatalf("after the change: status %+v, err %v", st, err)
	}
	for _, s := range st.Clusters[0].Servers {
		if !s.Healthy {
			t.Errorf("server %s lost its health verdict across the reload", s.Name)
		}
	}
	// The short-connection loop picks servers too, and its picks can
	// interleave with ours so that our 16 alternate be1, be2. So count
	// every pick in the window on the server counters, not our answers.
	picks := func() map[string]uint64 {
		st, err := l.status("lb1")
		if err != nil || len(st.Clusters) == 0 {
			t.Fatalf("status: %v", err)
		}
		m := map[string]uint64{}
		for _, s := range st.Clusters[0].Servers {
			m[s.Name] = s.TotalConns
		}
		return m
	}
	before := picks()
	if got := l.curl("http://"+vip+"/", 16); got["FAIL"] > 0 {
		t.Errorf("16 requests after the change: %v", got)
	}
	after := picks()
	be1, be2 := after["be1"]-before["be1"], after["be2"]-before["be2"]
	if be1+be2 < 16 || be2 < 2*be1 {
		t.Errorf("weights 1:3: the servers took be1 %d, be2 %d connections in the window; want about 1:3", be1, be2)
	} else {
		t.Logf("weights 1:3: be1 %d, be2 %d connections in the window", be1, be2)
	}

	// (b) a new cluster on port 81 answers.
	web81 := `  - name: web81
    vip: ` + vip + `
    port: 81
    servers:
      - {name: be1, address: "198.18.0.21:80"}
`
	write(changed + web81)
	if out := reload(true); !strings.Contains(out, "cluster web81 added") || strings.Contains(out, "cluster web changed") {
		t.Fatalf("reload: want only web81 added:\n%s", out)
	}
	if got := l.curl("http://"+vip+":81/", 4); got["be1"] != 4 {
		t.Errorf("the added cluster on port 81: %v, want be1 4 times", got)
	}

	// (c) and is removed again: port 81 refuses, port 80 carries on.
	write(changed)
	if out := reload(true); !strings.Contains(out, "cluster web81 removed") {
		t.Fatalf("reload did not report the removed cluster:\n%s", out)
	}
	if got := l.curl("http://"+vip+":81/", 2); got["FAIL"] != 2 {
		t.Errorf("port 81 after removing its cluster: %v, want refused", got)
	}

	// (d) an invalid file is refused with FILE:LINE and changes nothing.
	write(strings.Replace(changed, "weighted_round_robin", "fastest_guess", 1))
	out := reload(false)
	if !strings.Contains(out, filepath.Join(l.dir, "lb1.yaml")+":") || !strings.Contains(out, "algorithm") {
		t.Errorf("refused reload does not name FILE:LINE and the key:\n%s", out)
	}
	st, _ = l.status("lb1")
	if st == nil || st.Clusters[0].Algorithm != "weighted_round_robin" || st.State != "MASTER" {
		t.Errorf("after the refused reload: %+v", st)
	}
	write(changed)

	if err := long.Wait(); err != nil || !strings.HasPrefix(longOut.String(), "ok ") {
		t.Errorf("the long-lived connection did not survive the reloads: %v\n%s", err, longOut.String())
	} else {
		t.Logf("long-lived connection: %s", strings.TrimSpace(longOut.String()))
	}
	_ = short.Wait()
	lines := strings.Split(strings.TrimSpace(shortOut.String()), "\n")
	fails := strings.Count(shortOut.String(), "FAIL")
	t.Logf("short connections during the reloads: %d, failed %d", len(lines), fails)
	if fails > 0 || len(lines) < 50 {
		t.Errorf("short connections: %d, failed %d; want many and none failed", len(lines), fails)
	}
	ev, _ := exec.Command(binDir+"/tandem", "events", "--socket", filepath.Join(l.dir, "lb1.sock")).CombinedOutput()
	if !strings.Contains(string(ev), "reload") {
		t.Errorf("events show no reload:\n%s", ev)
	}
}
