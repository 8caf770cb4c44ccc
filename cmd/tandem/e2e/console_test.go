package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tandem-lb/tandem/pkg/api"
)

// consoleNode turns the console on, on every address of the box's
// namespace, in clear HTTP (the lab is a closed network).
func consoleNode(users string) string {
	return fmt.Sprintf("  web_listen: \":9111\"\n  web_users_file: %s\n  web_insecure_http: true\n", users)
}

// consoleCluster is a cluster on the VIP's port 8080 over the
// responders of be1 and be2, checked over TCP.
const consoleCluster = `clusters:
  - name: web
    vip: ` + vip + `
    port: 8080
    health_check: {type: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
    servers:
      - {name: be1, address: "198.18.0.21:8080"}
      - {name: be2, address: "198.18.0.22:8080"}
`

// browser starts headless Chromium inside the client's namespace (it can
// reach the lab and nothing else), driven over a pipe, and returns a tab.
func (l *lab) browser() context.Context {
	l.t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		l.t.Skip("needs chromium: run scripts/deps.sh")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		l.t.Skip("needs iproute2")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in a namespace
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-pings", true),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Args = append([]string{"ip", "netns", "exec", l.ns("client"), chromium}, cmd.Args[1:]...)
			cmd.Path = ip
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	l.t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	l.t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil {
		l.t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// tab opens another tab of the browser. It is opened here, with the
// tab's own context: chromedp ties a tab to the context of its first
// action, and do's contexts end when each step does.
func tab(t *testing.T, browser context.Context) context.Context {
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// do runs steps with a deadline, failing the test with what.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (the page: %s)", what, err, pageText(ctx))
	}
}

// pageText is where the tab is and what it shows, for a failure.
func pageText(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return err.Error()
	}
	return v
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitJS waits until the page's predicate holds.
func waitJS(t *testing.T, ctx context.Context, what, js string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func login(t *testing.T, ctx context.Context, url, user, password string) {
	t.Helper()
	do(t, ctx, "log in as "+user+" at "+url,
		chromedp.Navigate(url),
		chromedp.SendKeys(chromedp.CSS("#user"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#submit")),
		chromedp.WaitVisible(chromedp.CSS("#cluster-web")))
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

const stateOf = `(document.querySelector("#box-%s .state") || {}).textContent`

// TestConsoleInABrowser drives the console of a pair in headless
// Chromium: a log-in, both boxes on the page, a cable pull seen without
// a reload, a drain by an admin seen in `tandem status`, a viewer
// refused, a POST without the CSRF token refused, a switchover refused
// and then done, a lost page recovering. Screenshots go to the
// test's folder, and to the folder $TANDEM_CONSOLE_SCREENSHOTS when set
// (docs/console.png is console-failover.png).
func TestConsoleInABrowser(t *testing.T) {
	l := newLab(t)
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("needs chromium: run scripts/deps.sh")
	}
	users := filepath.Join(l.dir, "users")
	for _, u := range [][3]string{{"ann", "admin", "ann-secret-1"}, {"vic", "viewer", "vic-secret-1"}} {
		cmd := exec.Command(binDir+"/tandem", "web", "passwd", users, u[0], "--role", u[1])
		cmd.Stdin = strings.NewReader(u[2] + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tandem web passwd: %v\n%s", err, out)
		}
	}
	l.respond("be1")
	l.respond("be2")
	o := nodeOpts{node: consoleNode(users), extra: consoleCluster}
	l.start("lb1", o)
	l.waitFor("lb1 MASTER", 10*time.Second, func() bool { return l.state("lb1") == "MASTER" })
	l.start("lb2", o)
	l.waitFor("lb1 MASTER and lb2 BACKUP", 10*time.Second, func() bool {
		return l.state("lb1") == "MASTER" && l.state("lb2") == "BACKUP"
	})

	l.servedBy() // a few connections for the counters and the plots
	browser := l.browser()
	// The admin watches lb2's console, which sees both boxes and stays
	// reachable when lb1's cable is pulled.
	adm := tab(t, browser)
	login(t, adm, "http://198.18.0.12:9111/", "ann", "ann-secret-1")
	waitJS(t, adm, "both boxes on lb2's page", fmt.Sprintf(stateOf, "lb2")+` === "BACKUP" && `+
		fmt.Sprintf(stateOf, "lb1")+` === "MASTER"`, 5*time.Second)

	// A viewer on lb1's console sees no actions and is refused one.
	view := tab(t, browser)
	login(t, view, "http://198.18.0.11:9111/", "vic", "vic-secret-1")
	if n := eval[int](t, view, `document.querySelectorAll("button[data-action]").length`); n != 0 {
		t.Errorf("a viewer's page shows %d action buttons", n)
	}
	refused := eval[string](t, view, `fetch("/api/clusters/web/servers/be1/drain", {method: "POST",
		headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf"]').content}}).then(r => r.status + " " + r.statusText)`)
	if !strings.HasPrefix(refused, "403") {
		t.Errorf("a viewer's drain: %s, want 403", refused)
	}
	// A forged POST, without the session's token, even from an admin's
	// browser.
	forged := eval[string](t, adm, `fetch("/api/clusters/web/servers/be1/disable", {method: "POST"}).then(r => r.text().then(b => r.status + " " + b))`)
	if !strings.HasPrefix(forged, "403") || !strings.Contains(forged, "CSRF") {
		t.Errorf("a POST without the CSRF token: %s, want 403", forged)
	}
	for _, box := range []string{"lb1", "lb2"} {
		st, err := l.status(box)
		if err != nil {
			t.Fatal(err)
		}
		if a := st.Clusters[0].Servers[0].Admin; a != "enabled" {
			t.Fatalf("%s: be1 is %s after refused requests", box, a)
		}
	}

	// The admin drains be1 on lb2, confirming in the page.
	do(t, adm, "drain be1",
		chromedp.Click(chromedp.CSS(`button[data-action="drain"][data-cluster="web"][data-server="be1"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")))
	waitJS(t, adm, "be1 draining on the page", `(document.querySelector('#cluster-web tr[data-server="be1"] .admin') || {}).textContent === "draining"`, 5*time.Second)
	out, err := exec.Command(binDir+"/tandem", "status", "--json", "--socket", filepath.Join(l.dir, "lb2.sock")).Output()
	if err != nil {
		t.Fatalf("tandem status: %v", err)
	}
	var st api.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	if a := st.Clusters[0].Servers[0].Admin; a != "draining" {
		t.Errorf("tandem status of lb2: be1 is %s, want draining", a)
	}
	waitJS(t, adm, "the drain in the timeline with its user",
		`document.getElementById("timeline").textContent.includes("ann asked from the console: web/be1 draining")`, 5*time.Second)
	screenshot(t, adm, filepath.Join(l.dir, "console-drained.png"))

	// Pull lb1's cable: lb2's page shows it MASTER without a reload, and
	// lb1's page says its connection is lost.
	pulled := time.Now()
	if err := l.script("pull", "lb1"); err != nil {
		t.Fatal(err)
	}
	waitJS(t, adm, "lb2 MASTER on the open page", fmt.Sprintf(stateOf, "lb2")+` === "MASTER"`, 10*time.Second)
	seen := time.Now()
	st2, err := l.status("lb2")
	if err != nil || st2.State != "MASTER" {
		t.Fatalf("the page shows lb2 MASTER but its status says %+v (%v)", st2, err)
	}
	tr := st2.Transitions[len(st2.Transitions)-1]
	t.Logf("cable pull -> lb2 MASTER on the page: %v; lb2's transition -> on the page: %v",
		seen.Sub(pulled).Round(time.Millisecond), seen.Sub(tr.At).Round(time.Millisecond))
	weight := eval[int](t, adm, `performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource"))
		.reduce((a, e) => a + e.transferSize, 0)`)
	t.Logf("page weight (page, script, style, plots, events; transferred): %d bytes", weight)
	waitJS(t, view, "connection lost on lb1's page", `!document.getElementById("lost").hidden`, 10*time.Second)
	screenshot(t, adm, filepath.Join(l.dir, "console-failover.png"))
	// A switchover now is refused, in words: nobody to hand over to.
	do(t, adm, "switchover with lb1 silent",
		chromedp.Click(chromedp.CSS("#switchover")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")))
	waitJS(t, adm, "the refusal on the page", `document.getElementById("msg").textContent.includes("switchover refused: the peer is not alive")`, 5*time.Second)
	// Plugged back, lb1's page recovers by itself.
	if err := l.script("plug", "lb1"); err != nil {
		t.Fatal(err)
	}
	plugged := time.Now()
	waitJS(t, view, "lb1's page live again", `document.getElementById("lost").hidden && `+
		`document.getElementById("conn").textContent === "LIVE"`, 15*time.Second)
	t.Logf("plug -> lb1's page live again: %v", time.Since(plugged).Round(time.Millisecond))
	// lb1 is back as BACKUP (no preempting): the admin hands the VIPs
	// back from lb2's page, and the page shows it.
	l.waitFor("lb1 BACKUP again", 10*time.Second, func() bool { return l.state("lb1") == "BACKUP" })
	do(t, adm, "switchover to lb1",
		chromedp.Click(chromedp.CSS("#switchover")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")))
	waitJS(t, adm, "lb1 MASTER and lb2 BACKUP on lb2's page", fmt.Sprintf(stateOf, "lb2")+` === "BACKUP" && `+
		fmt.Sprintf(stateOf, "lb1")+` === "MASTER"`, 10*time.Second)
	if s := l.state("lb1"); s != "MASTER" {
		t.Errorf("after the switchover lb1 is %s", s)
	}

	cpu := l.consoleCPU("lb2", 20, 5*time.Second)
	t.Logf("lb2's CPU with 20 open live feeds: %.1f%% of a core (idle pair: %.1f%%)", cpu[1], cpu[0])

	// At a phone's width nothing but the tables' own boxes scrolls
	// sideways.
	do(t, adm, "a phone's viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if over := eval[int](t, adm, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
		t.Errorf("at 390 px the page is %d px too wide", over)
	}
	screenshot(t, adm, filepath.Join(l.dir, "console-phone.png"))
	t.Logf("screenshots in %s", l.dir)
	if dst := os.Getenv("TANDEM_CONSOLE_SCREENSHOTS"); dst != "" {
		for _, name := range []string{"console-drained.png", "console-failover.png", "console-phone.png"} {
			b, _ := os.ReadFile(filepath.Join(l.dir, name))
			if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
				t.Error(err)
			}
		}
	}
}

// consoleCPU measures box's node's CPU, as a share of one core, over d
// with no console open and then with n live feeds open (curl in the
// client's namespace, one session).
func (l *lab) consoleCPU(box string, n int, d time.Duration) [2]float64 {
	l.t.Helper()
	pid := l.nodes[box].cmd.Process.Pid
	ticks := func() float64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			l.t.Fatal(err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		var u, s float64
		fmt.Sscan(f[11], &u)
		fmt.Sscan(f[12], &s)
		return u + s // clock ticks, 100 a second
	}
	share := func(run func()) float64 {
		t0, c0 := time.Now(), ticks()
		run()
		return (ticks() - c0) / 100 / time.Since(t0).Seconds() * 100
	}
	idle := share(func() { time.Sleep(d) })
	jar := filepath.Join(l.dir, "curl-jar")
	base := "http://198.18.0.12:9111"
	script := fmt.Sprintf(`set -e
tok=$(curl -s -c %[1]s %[2]s/login | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
curl -s -o /dev/null -b %[1]s -c %[1]s --data-urlencode "csrf=$tok" -d user=vic -d password=vic-secret-1 %[2]s/login
for i in $(seq 1 %[3]d); do curl -s -N -m %[4]d -b %[1]s -o /dev/null -w '%%{size_download}\n' %[2]s/api/live & done
wait`, jar, base, n, int(d.Seconds()))
	var out []byte
	busy := share(func() {
		// curl -m ends each feed with exit 28 (timeout), which wait
		// does not report.
		var err error
		if out, err = exec.Command("ip", "netns", "exec", l.ns("client"), "sh", "-c", script).Output(); err != nil {
			l.t.Fatalf("console load: %v\n%s", err, out)
		}
	})
	got := strings.Fields(string(out))
	for _, f := range got {
		if f == "0" {
			got = nil
		}
	}
	if len(got) != n {
		l.t.Fatalf("console load: want %d feeds that received data, got sizes %q", n, out)
	}
	return [2]float64{idle, busy}
}
