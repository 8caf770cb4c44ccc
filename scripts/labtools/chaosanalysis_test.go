package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// t0 is outage_test.go's; atMS is a time ms after it.
func atMS(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func iv(a, b int) Interval { return Interval{From: atMS(a), To: atMS(b)} }

func ev(ms int, box, op string) AddrEvent {
	return AddrEvent{At: atMS(ms), Box: box, Addr: "198.18.0.100/24", Op: op}
}

func TestHoldIntervals(t *testing.T) {
	evs := []AddrEvent{
		ev(0, "lb1", "add"),
		ev(5, "lb1", "add"), // a refresh: ignored
		ev(100, "lb1", "del"),
		ev(150, "lb1", "del"), // not held: ignored
		ev(200, "lb1", "add"),
		{At: atMS(210), Box: "lb1", Addr: "198.18.0.101/24", Op: "del"}, // another address
	}
	got := HoldIntervals(evs, "lb1", "198.18.0.100/24", atMS(500))
	want := []Interval{iv(0, 100), iv(200, 500)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDualHolds(t *testing.T) {
	// lb1 holds 0-100 and 300-; lb2 takes over at 90 (before lb1 let go)
	// and releases at 320 (after lb1 took it back): 10 ms and 20 ms of
	// dual hold.
	evs := []AddrEvent{
		ev(0, "lb1", "add"), ev(100, "lb1", "del"), ev(300, "lb1", "add"),
		ev(90, "lb2", "add"), ev(320, "lb2", "del"),
	}
	got := DualHolds(evs, "lb1", "lb2", []string{"198.18.0.100/24", "198.18.0.101/24"}, atMS(1000))
	want := []Interval{iv(90, 100), iv(300, 320)}
	if !reflect.DeepEqual(got["198.18.0.100/24"], want) {
		t.Fatalf("got %v, want %v", got["198.18.0.100/24"], want)
	}
	if len(got["198.18.0.101/24"]) != 0 {
		t.Fatalf("no dual hold of .101 expected: %v", got["198.18.0.101/24"])
	}
	if d := Total(Clip(want, atMS(95), atMS(310))); d != 15*time.Millisecond {
		t.Fatalf("clipped total %v, want 15ms", d)
	}
}

func TestOverlapDisjoint(t *testing.T) {
	if got := Overlap([]Interval{iv(0, 10)}, []Interval{iv(10, 20)}); len(got) != 0 {
		t.Fatalf("touching intervals do not overlap: %v", got)
	}
	got := Overlap([]Interval{iv(0, 100)}, []Interval{iv(10, 20), iv(30, 40), iv(90, 200)})
	want := []Interval{iv(10, 20), iv(30, 40), iv(90, 100)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDualAfterHeard(t *testing.T) {
	hear := HearIntervals([]HearSample{
		{At: atMS(0), Hear: true}, {At: atMS(100), Hear: false}, {At: atMS(400), Hear: true},
	}, atMS(1000))
	if want := []Interval{iv(0, 100), iv(400, 1000)}; !reflect.DeepEqual(hear, want) {
		t.Fatalf("hear intervals %v, want %v", hear, want)
	}
	cases := []struct {
		name string
		dual []Interval
		want time.Duration
	}{
		{"while deaf only", []Interval{iv(150, 350)}, 0},
		// began deaf (a partition), went on 30 ms after they heard again
		{"outlived the heal", []Interval{iv(200, 430)}, 30 * time.Millisecond},
		// began while hearing: all of it counts
		{"while hearing", []Interval{iv(20, 90)}, 70 * time.Millisecond},
		// hearing stopped inside it: measured from its first hearing instant
		{"hearing lost inside", []Interval{iv(50, 300)}, 250 * time.Millisecond},
		{"worst of several", []Interval{iv(20, 30), iv(500, 560)}, 60 * time.Millisecond},
	}
	for _, c := range cases {
		if got := DualAfterHeard(c.dual, hear); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestStickyChanges(t *testing.T) {
	recs := []LoadRec{
		{At: atMS(0), Client: "198.18.2.1", Proto: "tcp", Server: "be1"},
		{At: atMS(0), Client: "198.18.2.1", Proto: "udp", Server: "be2"}, // its own UDP server
		{At: atMS(100), Client: "198.18.2.1", Proto: "tcp", Server: ""},  // a failure is no change
		{At: atMS(200), Client: "198.18.2.1", Proto: "tcp", Server: "be1"},
		{At: atMS(300), Client: "198.18.2.1", Proto: "tcp", Server: "be2"}, // lost
		{At: atMS(400), Client: "198.18.2.1", Proto: "tcp", Server: "be2"}, // its new own
		{At: atMS(50), Client: "198.18.2.2", Proto: "tcp", Server: "be2"},
		{At: atMS(1100), Client: "198.18.2.2", Proto: "tcp", Server: "be1"}, // be2 dead: excused
		{At: atMS(2500), Client: "198.18.2.2", Proto: "tcp", Server: "be2"}, // back after revive: lost
		// Last answered by be2 before it died, failed meanwhile, moved
		// and seen only after the revive: excused.
		{At: atMS(900), Client: "198.18.2.3", Proto: "udp", Server: "be2"},
		{At: atMS(1500), Client: "198.18.2.3", Proto: "udp", Server: ""},
		{At: atMS(2600), Client: "198.18.2.3", Proto: "udp", Server: "be1"},
	}
	dead := DeadWindows{"be2": {iv(1000, 2000)}}
	ch := StickyChanges(recs, dead.Dead)
	if len(ch) != 4 {
		t.Fatalf("changes %+v, want 4", ch)
	}
	if !ch[3].Excused || ch[3].Client != "198.18.2.3" {
		t.Errorf("late-seen move %+v, want excused", ch[3])
	}
	if ch[0].Client != "198.18.2.1" || ch[0].From != "be1" || ch[0].To != "be2" || ch[0].Excused {
		t.Errorf("first change %+v", ch[0])
	}
	if !ch[1].Excused || ch[1].From != "be2" {
		t.Errorf("second change %+v, want excused", ch[1])
	}
	if ch[2].Excused {
		t.Errorf("third change %+v, want a loss", ch[2])
	}
	lost, exc := LostClients(ch, atMS(0), atMS(3000))
	if lost != 2 || exc != 2 {
		t.Errorf("lost %d excused %d, want 2 and 2", lost, exc)
	}
	if lost, _ := LostClients(ch, atMS(0), atMS(1000)); lost != 1 {
		t.Errorf("lost in the first second %d, want 1", lost)
	}
}

func TestProbeOutagesInWindow(t *testing.T) {
	var rs []Result
	for i := range 100 { // a probe every 10 ms; 300-340 and 700-790 fail
		ok := !(i >= 30 && i < 35) && !(i >= 70 && i < 80)
		rs = append(rs, Result{Seq: i, At: atMS(10 * i), OK: ok, Server: "x"})
	}
	outs, failed := ProbeOutages(rs, atMS(500), atMS(1000))
	if len(outs) != 1 || failed != 10 {
		t.Fatalf("outs %+v failed %d", outs, failed)
	}
	if m, open := MaxOutage(outs); m != 100*time.Millisecond || open {
		t.Fatalf("max %v open %v, want 100ms closed", m, open)
	}
	rs[60].At = atMS(640) // launched 40 ms late: 50 ms after the one before
	if g := MaxLaunchGap(rs, atMS(500), atMS(1000)); g != 50*time.Millisecond {
		t.Fatalf("max launch gap %v, want 50ms", g)
	}
}

func TestJudge(t *testing.T) {
	g := Goals{MaxOutage: 300 * time.Millisecond, MaxPullOutage: 20 * time.Millisecond, MaxDualHeard: 50 * time.Millisecond}
	r := Row{Event: "pull", TCPOutMS: 30, Moves: 2, Expected: 2, Settled: true}
	r.Judge(g, true)
	if len(r.Missed) != 1 || !strings.Contains(r.Missed[0], "outage 30ms > 20ms") {
		t.Fatalf("pull with the second path: %v", r.Missed)
	}
	r.Judge(g, false)
	if len(r.Missed) != 0 {
		t.Fatalf("pull without the second path: %v", r.Missed)
	}
	r = Row{Event: "partition", Moves: 1, Expected: 0, DualHeard: 80, Lost: 3, Settled: false}
	r.Judge(g, true)
	if len(r.Missed) != 4 || r.Spurious() != 1 {
		t.Fatalf("missed %v spurious %d", r.Missed, r.Spurious())
	}
}

func TestExpectedMoves(t *testing.T) {
	for _, c := range []struct {
		ev, role string
		want     int
	}{
		{"pull", "MASTER", 2}, {"pull", "BACKUP", 0}, {"kill", "MASTER", 2}, {"kill", "BACKUP", 0},
		{"flap", "MASTER", 2}, {"partition", "", 0}, {"hbcut", "", 0}, {"isolate", "MASTER", 2},
		{"isolate", "BACKUP", 0}, {"backend", "", 0}, {"baseline", "", 0},
	} {
		if got := ExpectedMoves(c.ev, c.role); got != c.want {
			t.Errorf("%s of %s: %d, want %d", c.ev, c.role, got, c.want)
		}
	}
}

func TestPlanIsSeeded(t *testing.T) {
	a, b := Plan(7, 20, 2, 2), Plan(7, 20, 2, 2)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different plans")
	}
	if reflect.DeepEqual(a, Plan(8, 20, 2, 2)) {
		t.Fatal("another seed, same plan")
	}
	n := map[string]int{}
	for _, s := range a {
		n[s.Event]++
		if s.Event == "flap" {
			if len(s.Flaps) != 10 || s.Flaps[9] > 5*time.Second {
				t.Errorf("flap %v: want 10 changes within 5s", s.Flaps)
			}
			for i := 1; i < len(s.Flaps); i++ {
				if s.Flaps[i] <= s.Flaps[i-1] {
					t.Errorf("flap changes out of order: %v", s.Flaps)
				}
			}
		}
	}
	if want := map[string]int{"pull": 20, "kill": 2, "flap": 1, "partition": 1, "hbcut": 1, "isolate": 2, "backend": 1}; !reflect.DeepEqual(n, want) {
		t.Fatalf("plan counts %v, want %v", n, want)
	}
}

func TestParseHTTPName(t *testing.T) {
	if got := parseHTTPName([]byte("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbe1\n")); got != "be1" {
		t.Errorf("got %q", got)
	}
	if got := parseHTTPName([]byte("HTTP/1.1 502 Bad Gateway\r\n\r\nbe1\n")); got != "" {
		t.Errorf("non-200: got %q", got)
	}
	if got := parseHTTPName([]byte("be1\n")); got != "" {
		t.Errorf("not HTTP: got %q", got)
	}
}
