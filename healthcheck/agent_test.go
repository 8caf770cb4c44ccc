package healthcheck

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-lb/tandem/pkg/config"
)

func TestParseAgentReply(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"37\n", 37, true},
		{" 100\r\n", 100, true},
		{"-1\n", -1, true},
		{"101", 0, false},
		{"-2", 0, false},
		{"", 0, false},
		{"75%", 0, false},
		{"up", 0, false},
		{"3 4", 0, false},
	} {
		got, err := ParseAgentReply([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAgentReply(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestAgentNotable(t *testing.T) {
	load := func(n int) AgentReading { return AgentReading{Answered: true, Load: n} }
	silent := AgentReading{}
	for _, tt := range []struct {
		name      string
		base      AgentReading
		had       bool
		cur       AgentReading
		want      bool
		rationale string
	}{
		{"first load", silent, false, load(30), false, "a plain load at start is no news"},
		{"first -1", silent, false, load(-1), true, "a server out from the start is"},
		{"first silence", silent, false, silent, true, "an agent that does not answer is"},
		{"small move", load(30), true, load(39), false, ""},
		{"step up", load(30), true, load(40), true, ""},
		{"step down", load(30), true, load(20), true, ""},
		{"drain", load(95), true, load(-1), true, ""},
		{"undrain", load(-1), true, load(0), true, ""},
		{"stops answering", load(30), true, silent, true, ""},
		{"answers again", silent, true, load(30), true, ""},
		{"still silent", silent, true, AgentReading{Detail: "other"}, false, ""},
	} {
		if got := AgentNotable(tt.base, tt.had, tt.cur); got != tt.want {
			t.Errorf("%s: AgentNotable = %v, want %v %s", tt.name, got, tt.want, tt.rationale)
		}
	}
}

// agentServer answers each connection by reply (called per connection).
func agentServer(t *testing.T, reply func(c net.Conn)) net.Listener {
	t.Helper()
	ln := listenTCP(t)
	serveTCP(t, ln, reply)
	return ln
}

func writes(s string) func(net.Conn) {
	return func(c net.Conn) { _, _ = io.WriteString(c, s) }
}

func TestQueryAgent(t *testing.T) {
	for _, tt := range []struct {
		name     string
		reply    func(net.Conn)
		answered bool
		load     int
		detail   string
	}{
		{"load and close", writes("37\n"), true, 37, "load 37"},
		{"no newline", writes("5"), true, 5, "load 5"},
		{"take me out", writes("-1\n"), true, -1, "-1: take me out"},
		{"newline, kept open", func(c net.Conn) { io.WriteString(c, "12\n"); time.Sleep(time.Second) }, true, 12, "load 12"},
		{"garbage", writes("busy\n"), false, 0, `bad reply "busy"`},
		{"too long", writes(strings.Repeat("9", 40)), false, 0, "too long"},
		{"silent", func(c net.Conn) { time.Sleep(3 * time.Second) }, false, 0, "timeout after"},
		{"closes at once", func(net.Conn) {}, false, 0, `bad reply ""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln := agentServer(t, tt.reply)
			// Long enough for a loaded machine, but for the silent
			// agent, whose poll must time out.
			timeout := 3 * time.Second
			if tt.name == "silent" {
				timeout = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			r := QueryAgent(ctx, addrOf(t, ln.Addr()))
			if r.Answered != tt.answered || r.Load != tt.load || !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("QueryAgent = %+v, want answered %v load %d detail ~%q", r, tt.answered, tt.load, tt.detail)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if r := QueryAgent(ctx, closedPort(t)); r.Answered || !strings.Contains(r.Detail, "refused") {
		t.Errorf("no agent listening: %+v, want connection refused", r)
	}
}

// TestAgentMonitorReportsChangesOnly: an agent polled every millisecond
// whose answer changes a few times reaches the consumer once per change
// (not once per poll), with Notable set as AgentNotable says. The polls
// are faked (QueryAgent is tested above), so a slow machine cannot turn
// one into a timeout.
func TestAgentMonitorReportsChangesOnly(t *testing.T) {
	var reply atomic.Value
	reply.Store(AgentReading{Answered: true, Load: 30})
	var polls atomic.Int64
	want := netip.MustParseAddrPort("198.18.0.21:1510")
	changes := make(chan AgentChange, 16)
	m := NewAgentMonitor(config.Agent{Port: 1510, Interval: time.Millisecond, Timeout: time.Millisecond},
		[]Target{{Cluster: "c", Server: "s1", Addr: netip.MustParseAddrPort("198.18.0.21:80")}},
		func(c AgentChange) { changes <- c }, nil)
	m.query = func(_ context.Context, addr netip.AddrPort) AgentReading {
		if addr != want {
			t.Errorf("polled %s, want the server's address on the agent's port, %s", addr, want)
		}
		polls.Add(1)
		return reply.Load().(AgentReading)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	next := func() AgentChange {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no agent change within 5 s")
		}
		return AgentChange{}
	}
	// waitPolls lets the monitor poll n more times, so an unchanged
	// answer had its chance to be (wrongly) reported.
	waitPolls := func(n int64) {
		t.Helper()
		target := polls.Load() + n
		for deadline := time.Now().Add(5 * time.Second); polls.Load() < target; {
			if time.Now().After(deadline) {
				t.Fatalf("the agent was polled %d times, want %d", polls.Load(), target)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if c := next(); !c.Initial || !c.Reading.Answered || c.Reading.Load != 30 || c.Notable {
		t.Fatalf("first change %+v, want initial load 30, not notable", c)
	}
	load := func(n int) AgentReading { return AgentReading{Answered: true, Load: n} }
	steps := []struct {
		reply   AgentReading
		notable bool
	}{
		{load(35), false},
		{load(45), true}, // 15 from the 30 last reported
		{load(-1), true},
		{AgentReading{Detail: "connect: connection refused"}, true},
		{AgentReading{Detail: "timeout after 1.0ms"}, false}, // still silent: no change at all
		{load(45), true},
	}
	for i, st := range steps {
		waitPolls(5)
		select {
		case c := <-changes:
			t.Fatalf("step %d: change %+v while the agent's answer did not change", i, c)
		default:
		}
		reply.Store(st.reply)
		if i == 4 { // the same verdict in other words: no change expected
			continue
		}
		c := next()
		if c.Initial || !c.Reading.same(st.reply) || c.Notable != st.notable {
			t.Errorf("step %d: after the agent says %+v: %+v, want notable %v", i, st.reply, c, st.notable)
		}
	}
	waitPolls(5)
	if r, ok := m.Last()["s1"]; !ok || r.Load != 45 {
		t.Errorf("Last = %+v", m.Last())
	}
}
